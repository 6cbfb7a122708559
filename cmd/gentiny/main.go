// Command gentiny writes a random model of any architecture in the table (model/arch)
// in Hugging Face layout (see package github.com/wanda-go/wanda/internal/modelgen): a
// tiny one by default, or a full-size shape with -preset (see -help for the list:
// LLaMA 2/3 up to llama3-405b, Mistral, Qwen2/3, Phi-3, Gemma 2/3, Mixtral, Qwen MoE):
//
//	go run ./cmd/gentiny -out DIR [-preset NAME] [-arch TYPE] [-layers N] [-hidden H] [-intermediate I] [-heads A]
//	    [-kv-heads K] [-head-dim D] [-vocab V] [-max-pos P] [-dtype bf16|f16|f32] [-tied]
//	    [-rope-scaling none|linear|llama3] [-rope-theta T] [-rms-norm-eps E]
//	    [-max-shard-bytes N] [-seed S] [-workers W] [-v]
//
// Without -preset, unset flags take the values of modelgen.Default(); with it, the
// preset's (modelgen.Preset), and the flags given override single fields (e.g.
// -preset llama-7b -layers 2). -v prints the size written and the time taken
// to stderr.
package main

import (
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/wanda-go/wanda/internal/modelgen"
	"github.com/wanda-go/wanda/model/arch"
)

func main() {
	d := modelgen.Default()
	var f modelgen.Options // the flags' values; copied over the base for the flags given
	out := flag.String("out", "", "output directory (created if needed; required)")
	preset := flag.String("preset", "", "start from a full-size shape: "+strings.Join(modelgen.Presets(), ", "))
	verbose := flag.Bool("v", false, "print the bytes written and the time taken")
	flag.StringVar(&f.Arch, "arch", d.Arch, "model_type: "+strings.Join(arch.Supported(), ", "))
	flag.IntVar(&f.Experts, "experts", 0, "experts per sparse layer (mixtral, qwen2_moe, qwen3_moe; 0: 4, or the preset's)")
	flag.IntVar(&f.Layers, "layers", d.Layers, "number of decoder layers")
	flag.IntVar(&f.Hidden, "hidden", d.Hidden, "hidden size")
	flag.IntVar(&f.Intermediate, "intermediate", d.Intermediate, "MLP intermediate size")
	flag.IntVar(&f.Heads, "heads", d.Heads, "attention heads")
	flag.IntVar(&f.KVHeads, "kv-heads", d.KVHeads, "key/value heads (must divide -heads; default: -heads when -heads is given)")
	flag.IntVar(&f.HeadDim, "head-dim", 0, "head dimension (0: hidden/heads)")
	flag.IntVar(&f.Vocab, "vocab", d.Vocab, fmt.Sprintf("vocab_size (at least the tokenizer's %d)", modelgen.TokenizerSize()))
	flag.IntVar(&f.MaxPos, "max-pos", d.MaxPos, "max_position_embeddings")
	flag.StringVar(&f.DType, "dtype", d.DType, "weight dtype: bf16, f16 or f32")
	flag.BoolVar(&f.Tied, "tied", false, "tie lm_head to the embeddings")
	flag.StringVar(&f.RopeScaling, "rope-scaling", d.RopeScaling, "none, linear or llama3")
	flag.Float64Var(&f.RopeTheta, "rope-theta", 0, "rope_theta (0: 10000, or the preset's)")
	flag.Float64Var(&f.RMSNormEps, "rms-norm-eps", 0, "rms_norm_eps (0: 1e-5, or the preset's)")
	flag.Int64Var(&f.MaxShardBytes, "max-shard-bytes", 0, "shard size limit in bytes (0: one model.safetensors; presets: 5000000000)")
	flag.Uint64Var(&f.Seed, "seed", 0, "random seed")
	flag.IntVar(&f.Workers, "workers", 0, "generating goroutines (0: GOMAXPROCS); the output does not depend on it")
	flag.Parse()
	if *out == "" || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "gentiny: -out DIR is required and no positional arguments are accepted")
		flag.Usage()
		os.Exit(2)
	}
	o := d
	if *preset != "" {
		var err error
		if o, err = modelgen.Preset(*preset); err != nil {
			fmt.Fprintln(os.Stderr, "gentiny:", err)
			os.Exit(2)
		}
	}
	set := map[string]bool{}
	flag.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	copyIf := func(name string, dst, src any) {
		if !set[name] {
			return
		}
		switch dst := dst.(type) {
		case *string:
			*dst = *src.(*string)
		case *int:
			*dst = *src.(*int)
		case *int64:
			*dst = *src.(*int64)
		case *uint64:
			*dst = *src.(*uint64)
		case *float64:
			*dst = *src.(*float64)
		case *bool:
			*dst = *src.(*bool)
		}
	}
	copyIf("arch", &o.Arch, &f.Arch)
	copyIf("experts", &o.Experts, &f.Experts)
	copyIf("layers", &o.Layers, &f.Layers)
	copyIf("hidden", &o.Hidden, &f.Hidden)
	copyIf("intermediate", &o.Intermediate, &f.Intermediate)
	copyIf("heads", &o.Heads, &f.Heads)
	copyIf("kv-heads", &o.KVHeads, &f.KVHeads)
	copyIf("head-dim", &o.HeadDim, &f.HeadDim)
	copyIf("vocab", &o.Vocab, &f.Vocab)
	copyIf("max-pos", &o.MaxPos, &f.MaxPos)
	copyIf("dtype", &o.DType, &f.DType)
	copyIf("tied", &o.Tied, &f.Tied)
	copyIf("rope-scaling", &o.RopeScaling, &f.RopeScaling)
	copyIf("rope-theta", &o.RopeTheta, &f.RopeTheta)
	copyIf("rms-norm-eps", &o.RMSNormEps, &f.RMSNormEps)
	copyIf("max-shard-bytes", &o.MaxShardBytes, &f.MaxShardBytes)
	copyIf("seed", &o.Seed, &f.Seed)
	copyIf("workers", &o.Workers, &f.Workers)
	if set["heads"] && !set["kv-heads"] {
		o.KVHeads = o.Heads // -heads alone means multi-head attention
	}
	start := time.Now()
	if err := modelgen.Write(*out, o); err != nil {
		fmt.Fprintln(os.Stderr, "gentiny:", err)
		os.Exit(1)
	}
	if *verbose {
		el := time.Since(start)
		var size int64
		filepath.WalkDir(*out, func(_ string, e fs.DirEntry, err error) error {
			if err == nil && !e.IsDir() {
				if fi, err := e.Info(); err == nil {
					size += fi.Size()
				}
			}
			return nil
		})
		params, _ := modelgen.NumParams(o)
		fmt.Fprintf(os.Stderr, "gentiny: wrote %s: %d parameters, %d bytes in %.1f s (%.0f MB/s)\n",
			*out, params, size, el.Seconds(), float64(size)/1e6/el.Seconds())
	}
}
