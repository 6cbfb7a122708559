package transform

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/wanda-go/wanda/format/safetensors"
	"github.com/wanda-go/wanda/format/sparse"
	"github.com/wanda-go/wanda/internal/regfile"
)

// ErrNotPacked: Unpack was given a model without a sparsity_config.
var ErrNotPacked = errors.New("pack: not a packed model")

// Unpack writes the dense model of the packed model in dir to out: every
// packed weight is restored bit-exactly under its dense name, every other
// tensor copied, and config.json written without its quantization_config.
// opt.Format is ignored.
func Unpack(dir, out string, opt Options) error {
	if err := checkOut("unpack", out, opt.Force, dir); err != nil {
		return err
	}
	r, err := Open(dir)
	if err != nil {
		return err
	}
	defer r.Close()
	if _, ok := sparse.LayoutOf(r.Format()); !ok {
		return fmt.Errorf("%s: %w (config.json has no compressed-tensors sparsity_config)", dir, ErrNotPacked)
	}
	cfgPath := filepath.Join(dir, ConfigName)
	cfgBytes, err := regfile.ReadFile(cfgPath)
	if err != nil {
		return err
	}
	dense, _, err := sparse.StripSparsityConfig(cfgBytes)
	if err != nil {
		return fmt.Errorf("%s: %w", cfgPath, err)
	}
	n := 0
	err = buildDir(out, opt.Force, func(tmp string) error {
		if err := writeDense(r, tmp, opt.MaxShardBytes, func(name string, data []byte) ([]byte, error) {
			if r.Packed(name) {
				n++
			}
			return data, nil
		}); err != nil {
			return err
		}
		if err := writeFileSync(filepath.Join(tmp, ConfigName), dense); err != nil {
			return err
		}
		return copyOtherFiles(dir, tmp, skipper(r.Shards()))
	})
	if err != nil {
		return err
	}
	slog.Info("unpack: done", "out", out, "unpacked", n)
	return nil
}

// writeDense writes every tensor of r densely into dir, passing each tensor's
// bytes through edit (which may return them unchanged or a replacement of the
// same length), releasing each tensor after it is written.
func writeDense(r Reader, dir string, maxShard int64, edit func(name string, data []byte) ([]byte, error)) error {
	names := r.Names()
	specs := make([]safetensors.Spec, len(names))
	for i, n := range names {
		dt, _ := r.DType(n)
		sh, _ := r.Shape(n)
		specs[i] = safetensors.Spec{Name: n, DType: dt, Shape: sh}
	}
	w, err := safetensors.Create(dir, specs, safetensors.WriterOptions{MaxShardBytes: maxShard, Metadata: r.Metadata()})
	if err != nil {
		return err
	}
	for _, n := range names {
		data, err := r.Bytes(n)
		if err == nil {
			data, err = edit(n, data)
		}
		if err == nil {
			err = w.Write(n, data)
		}
		r.Release(n)
		if err != nil {
			w.Abort()
			return err
		}
	}
	return w.Close()
}
