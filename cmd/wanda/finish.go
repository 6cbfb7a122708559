package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/wanda-go/wanda/format/config"
	"github.com/wanda-go/wanda/format/peft"
	"github.com/wanda-go/wanda/format/safetensors"
	"github.com/wanda-go/wanda/format/sparse"
	"github.com/wanda-go/wanda/model/arch"
	"github.com/wanda-go/wanda/pipeline"
	"github.com/wanda-go/wanda/transform"
)

// finishOutput adds the LoRA-ready extras to a pruned output directory before it is moved
// into place: sparsity_masks.safetensors (one bit-packed mask per pruned tensor: 1 = the
// weight is exactly zero), lora-template/adapter_config.json (PEFT LoRA settings for the
// pruned modules), and with --pack the compressed-tensors layout.
func finishOutput(c *cli.Context, cfg *config.Config, dir string, rep *pipeline.Report) error {
	if err := writeMasks(dir, rep); err != nil {
		return err
	}
	base, _ := filepath.Abs(c.String("out"))
	a, err := arch.Complete(cfg)
	if err != nil {
		return err
	}
	if err := peft.WriteTemplate(dir, a.LoRATargets(cfg), base); err != nil {
		return err
	}
	if !c.Bool("pack") {
		return nil
	}
	f, err := transform.ParseFormat(c.String("pack-format"))
	if err != nil {
		return fmt.Errorf("%w: --pack-format: %w", errUsage, err)
	}
	maxShard, err := parseSize(c.String("max-shard-size"))
	if err != nil {
		return err
	}
	packed := dir + ".packed"
	res, err := transform.PackInto(dir, packed, transform.Options{Format: f, MaxShardBytes: maxShard})
	if err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.Rename(packed, dir); err != nil {
		return err
	}
	if rep.Extra == nil {
		rep.Extra = map[string]any{}
	}
	rep.Extra["packed_format"] = string(res.Format)
	rep.Extra["packed_bytes"] = res.PackedBytes
	rep.Extra["packed_dense_bytes"] = res.DenseBytes
	return nil
}

// writeMasks writes sparsity_masks.safetensors from the pruned tensors' exact zeros.
func writeMasks(dir string, rep *pipeline.Report) error {
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		return err
	}
	defer set.Close()
	shapes := make([]sparse.MaskShape, len(rep.Tensors))
	for i, t := range rep.Tensors {
		shapes[i] = sparse.MaskShape{Name: t.Name, Rows: t.Shape[0], Cols: t.Shape[1]}
	}
	mw, err := sparse.CreateMaskWriter(filepath.Join(dir, sparse.MaskFileName), shapes)
	if err != nil {
		return err
	}
	for _, t := range rep.Tensors {
		tt, err := set.Get(t.Name)
		if err != nil {
			mw.Abort()
			return err
		}
		m, err := sparse.MaskFromZeros(tt.Bytes(), tt.DType, t.Shape[0], t.Shape[1])
		if err != nil {
			mw.Abort()
			return fmt.Errorf("%s: %w", t.Name, err)
		}
		if err := mw.Write(t.Name, m); err != nil {
			mw.Abort()
			return err
		}
		set.Release(t.Name)
	}
	return mw.Close()
}
