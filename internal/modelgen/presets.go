package modelgen

import (
	"cmp"
	"fmt"
	"sort"

	"github.com/wanda-go/wanda/format/config"
	"github.com/wanda-go/wanda/model/arch"
)

// HFShardBytes is the shard size Hugging Face's save_pretrained uses by
// default ("5GB", decimal), which the presets use.
const HFShardBytes = 5_000_000_000

// presets are the shapes of released LLaMA-family checkpoints, as in their
// config.json files, in bf16 and sharded as save_pretrained does. Only the
// shapes and hyper-parameters are real: the weights are random (see the
// package documentation) and the tokenizer is the fixture's tiny one, whose
// 563 tokens are a prefix of every vocabulary here.
var presets = map[string]Options{
	// Llama-2-7b-hf: 6,738,415,616 parameters, 13.5 GB in bf16.
	"llama-7b": {Arch: config.TypeLlama, Layers: 32, Hidden: 4096, Intermediate: 11008, Heads: 32, KVHeads: 32,
		Vocab: 32000, MaxPos: 4096, RMSNormEps: 1e-5},
	// Llama-2-13b-hf: 13,015,864,320 parameters.
	"llama-13b": {Arch: config.TypeLlama, Layers: 40, Hidden: 5120, Intermediate: 13824, Heads: 40, KVHeads: 40,
		Vocab: 32000, MaxPos: 4096, RMSNormEps: 1e-5},
	// Llama-3.1-8B: 8,030,261,248 parameters; GQA 32/8, rope_theta 500000,
	// llama3 rope scaling (factor 8, low 1, high 4, original 8192).
	"llama3-8b": {Arch: config.TypeLlama, Layers: 32, Hidden: 4096, Intermediate: 14336, Heads: 32, KVHeads: 8,
		Vocab: 128256, MaxPos: 131072, RMSNormEps: 1e-5, RopeTheta: 500000, RopeScaling: "llama3", RopeOriginalMaxPos: 8192},
	// Mistral-7B-v0.1: 7,241,732,096 parameters; GQA 32/8, sliding window 4096.
	"mistral-7b": {Arch: config.TypeMistral, Layers: 32, Hidden: 4096, Intermediate: 14336, Heads: 32, KVHeads: 8,
		Vocab: 32000, MaxPos: 32768, RMSNormEps: 1e-5, RopeTheta: 10000, SlidingWindow: 4096},
	// Qwen2-7B: 7,615,616,512 parameters; GQA 28/4, q/k/v biases, rope_theta 1e6.
	"qwen2-7b": {Arch: config.TypeQwen2, Layers: 28, Hidden: 3584, Intermediate: 18944, Heads: 28, KVHeads: 4,
		Vocab: 152064, MaxPos: 131072, RMSNormEps: 1e-6, RopeTheta: 1000000},
}

// Presets returns the names Preset accepts, sorted.
func Presets() []string {
	names := make([]string, 0, len(presets))
	for n := range presets {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Preset returns the Options of a full-size model shape: "llama-7b",
// "llama-13b", "llama3-8b", "mistral-7b" or "qwen2-7b" (see Presets), in
// bf16, untied, sharded into HFShardBytes files with an index, seed 0.
// Fields may be changed before Write (e.g. fewer Layers for a quicker run).
// Write streams such models in chunks, using a few tens of MiB of memory
// whatever their size.
func Preset(name string) (Options, error) {
	o, ok := presets[name]
	if !ok {
		return Options{}, fmt.Errorf("%w: unknown preset %q (want one of %v)", ErrOptions, name, Presets())
	}
	o.DType = "bf16"
	o.RopeScaling = cmp.Or(o.RopeScaling, "none")
	o.MaxShardBytes = HFShardBytes
	return o, nil
}

// NumParams is the number of weights (elements of all tensors) of the model
// opt describes.
func NumParams(opt Options) (int64, error) {
	o, err := opt.resolve()
	if err != nil {
		return 0, err
	}
	cfg, a, err := o.parsedConfig()
	if err != nil {
		return 0, err
	}
	var n int64
	for _, e := range a.Tensors(cfg) {
		k := int64(1)
		for _, d := range e.Shape {
			k *= d
		}
		n += k
	}
	return n, nil
}

func (o Options) parsedConfig() (*config.Config, *arch.Arch, error) {
	b, err := o.configJSON()
	if err != nil {
		return nil, nil, fmt.Errorf("gen: config.json: %w", err)
	}
	cfg, a, err := arch.Parse(b)
	if err != nil {
		return nil, nil, fmt.Errorf("gen: generated config.json does not parse: %w", err)
	}
	return cfg, a, nil
}
