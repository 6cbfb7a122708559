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

// presets are the shapes of released checkpoints, as in their config.json files, in bf16 and sharded as save_pretrained does. Only the
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

	// Llama-3.1-70B: 70,553,706,496 parameters (the memory benchmarks' 70B layer shape).
	"llama3-70b": {Arch: config.TypeLlama, Layers: 80, Hidden: 8192, Intermediate: 28672, Heads: 64, KVHeads: 8,
		Vocab: 128256, MaxPos: 131072, RMSNormEps: 1e-5, RopeTheta: 500000, RopeScaling: "llama3", RopeOriginalMaxPos: 8192},
	// Llama-3.1-405B: 405,853,388,800 parameters (the memory benchmarks' 405B layer shape).
	"llama3-405b": {Arch: config.TypeLlama, Layers: 126, Hidden: 16384, Intermediate: 53248, Heads: 128, KVHeads: 8,
		Vocab: 128256, MaxPos: 131072, RMSNormEps: 1e-5, RopeTheta: 500000, RopeScaling: "llama3", RopeOriginalMaxPos: 8192},
	// Qwen3-8B: 8,190,735,360 parameters; head_dim 128, q/k norms, untied.
	"qwen3-8b": {Arch: config.TypeQwen3, Layers: 36, Hidden: 4096, Intermediate: 12288, Heads: 32, KVHeads: 8, HeadDim: 128,
		Vocab: 151936, MaxPos: 40960, RMSNormEps: 1e-6, RopeTheta: 1000000},
	// Phi-3-medium-4k: 13,960,238,080 parameters; fused qkv_proj and gate_up_proj, GQA 40/10.
	"phi3-medium": {Arch: config.TypePhi3, Layers: 40, Hidden: 5120, Intermediate: 17920, Heads: 40, KVHeads: 10,
		Vocab: 32064, MaxPos: 4096, RMSNormEps: 1e-5, RopeTheta: 10000, SlidingWindow: 2047},
	// Gemma-2-27B: 27,227,128,320 parameters; head_dim 128, query_pre_attn_scalar 144,
	// soft-caps 50/30, sliding window 4096 on even layers, tied embeddings.
	"gemma2-27b": {Arch: config.TypeGemma2, Layers: 46, Hidden: 4608, Intermediate: 36864, Heads: 32, KVHeads: 16, HeadDim: 128,
		Vocab: 256000, MaxPos: 8192, RMSNormEps: 1e-6, RopeTheta: 10000, Tied: true, SlidingWindow: 4096,
		QueryPreAttnScalar: 144, AttnSoftcap: 50, FinalSoftcap: 30},
	// Gemma-3-27B (the text model, about 27.0 B parameters): head_dim 128,
	// query_pre_attn_scalar 168, window 1024 on 5 of every 6 layers, linear rope scaling 8
	// on the global ones, tied embeddings.
	"gemma3-27b": {Arch: config.TypeGemma3Text, Layers: 62, Hidden: 5376, Intermediate: 21504, Heads: 32, KVHeads: 16, HeadDim: 128,
		Vocab: 262208, MaxPos: 131072, RMSNormEps: 1e-6, RopeTheta: 1000000, RopeScaling: "linear", RopeFactor: 8, Tied: true,
		SlidingWindow: 1024, SlidingPattern: 6, RopeLocalBaseFreq: 10000, QueryPreAttnScalar: 168},
	// Mixtral-8x7B: 46,702,792,704 parameters; 8 experts of width 14336, 2 per token.
	"mixtral-8x7b": {Arch: config.TypeMixtral, Layers: 32, Hidden: 4096, Intermediate: 14336, Heads: 32, KVHeads: 8,
		Vocab: 32000, MaxPos: 32768, RMSNormEps: 1e-5, RopeTheta: 1000000, Experts: 8, ExpertsPerTok: 2},
	// Mixtral-8x22B: 140,620,634,112 parameters; a layer holds 2.4 B expert weights.
	"mixtral-8x22b": {Arch: config.TypeMixtral, Layers: 56, Hidden: 6144, Intermediate: 16384, Heads: 48, KVHeads: 8,
		Vocab: 32000, MaxPos: 65536, RMSNormEps: 1e-5, RopeTheta: 1000000, Experts: 8, ExpertsPerTok: 2},
	// Qwen3-30B-A3B: 30,532,122,624 parameters; 128 experts of width 768, 8 per token
	// (renormalised), head_dim 128.
	"qwen3-30b-a3b": {Arch: config.TypeQwen3MoE, Layers: 48, Hidden: 2048, Intermediate: 6144, Heads: 32, KVHeads: 4, HeadDim: 128,
		Vocab: 151936, MaxPos: 40960, RMSNormEps: 1e-6, RopeTheta: 1000000, Experts: 128, ExpertsPerTok: 8, MoEIntermediate: 768,
		NormTopK: true},
	// Qwen2-57B-A14B (about 57.4 B parameters): 64 experts of width 2560, 8 per token,
	// a shared expert of width 20480.
	"qwen2-57b-a14b": {Arch: config.TypeQwen2MoE, Layers: 28, Hidden: 3584, Intermediate: 18944, Heads: 28, KVHeads: 4,
		Vocab: 151936, MaxPos: 131072, RMSNormEps: 1e-6, RopeTheta: 1000000, Experts: 64, ExpertsPerTok: 8, MoEIntermediate: 2560,
		SharedIntermediate: 20480},
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

// Preset returns the Options of a full-size model shape (see Presets: LLaMA 2/3
// up to 405B, Mistral, Qwen2/3, Phi-3, Gemma 2/3, Mixtral, Qwen MoE), in bf16,
// sharded into HFShardBytes files with an index, seed 0.
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
		return nil, nil, fmt.Errorf("modelgen: config.json: %w", err)
	}
	cfg, a, err := arch.Parse(b)
	if err != nil {
		return nil, nil, fmt.Errorf("modelgen: generated config.json does not parse: %w", err)
	}
	return cfg, a, nil
}
