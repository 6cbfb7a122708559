package config

import (
	"fmt"
	"strconv"
	"strings"
)

// Names of the tensors outside the decoder layers.
const (
	EmbedTokens = "model.embed_tokens.weight" // [vocab, hidden]
	FinalNorm   = "model.norm.weight"         // [hidden]
	LMHead      = "lm_head.weight"            // [vocab, hidden]; absent when embeddings are tied
)

// Part is one tensor of a decoder layer.
type Part int

// The parts of a decoder layer. The first seven are the prunable linears in the
// reference order (q, k, v, o, gate, up, down).
const (
	PartQ Part = iota
	PartK
	PartV
	PartO
	PartGate
	PartUp
	PartDown
	PartInputNorm
	PartPostAttnNorm
	PartQBias
	PartKBias
	PartVBias
	numParts
)

// Linears are the prunable linear layers of a decoder layer, in reference order.
var Linears = []Part{PartQ, PartK, PartV, PartO, PartGate, PartUp, PartDown}

// partInfo: module path inside the layer, parameter ("weight"/"bias"), String().
var partInfo = [numParts]struct{ module, param, name string }{
	PartQ:            {"self_attn.q_proj", "weight", "q_proj"},
	PartK:            {"self_attn.k_proj", "weight", "k_proj"},
	PartV:            {"self_attn.v_proj", "weight", "v_proj"},
	PartO:            {"self_attn.o_proj", "weight", "o_proj"},
	PartGate:         {"mlp.gate_proj", "weight", "gate_proj"},
	PartUp:           {"mlp.up_proj", "weight", "up_proj"},
	PartDown:         {"mlp.down_proj", "weight", "down_proj"},
	PartInputNorm:    {"input_layernorm", "weight", "input_layernorm"},
	PartPostAttnNorm: {"post_attention_layernorm", "weight", "post_attention_layernorm"},
	PartQBias:        {"self_attn.q_proj", "bias", "q_proj.bias"},
	PartKBias:        {"self_attn.k_proj", "bias", "k_proj.bias"},
	PartVBias:        {"self_attn.v_proj", "bias", "v_proj.bias"},
}

const layerPrefix = "model.layers."

func (p Part) valid() bool { return p >= 0 && p < numParts }

// String is the part's short name: "q_proj", ..., "down_proj",
// "input_layernorm", "post_attention_layernorm", "q_proj.bias", ...
func (p Part) String() string {
	if !p.valid() {
		return "Part(" + strconv.Itoa(int(p)) + ")"
	}
	return partInfo[p].name
}

// Module is the part's module path inside a layer, e.g. "self_attn.q_proj"
// (the same for a projection's weight and bias).
func (p Part) Module() string {
	if !p.valid() {
		panic(fmt.Sprintf("config: invalid Part %d", int(p)))
	}
	return partInfo[p].module
}

// IsLinear reports whether p is one of the seven prunable linear weights.
func (p Part) IsLinear() bool { return p >= PartQ && p <= PartDown }

// LayerTensor is the Hugging Face name of part p of decoder layer layer, e.g.
// LayerTensor(3, PartQ) == "model.layers.3.self_attn.q_proj.weight". It panics
// on a negative layer or an invalid part (programmer errors).
func LayerTensor(layer int, p Part) string {
	if layer < 0 || !p.valid() {
		panic(fmt.Sprintf("config: LayerTensor(%d, %d): invalid argument", layer, int(p)))
	}
	in := partInfo[p]
	return layerPrefix + strconv.Itoa(layer) + "." + in.module + "." + in.param
}

// ParseLayerTensor is the inverse of LayerTensor; ok is false for any name
// LayerTensor cannot produce (including non-canonical layer numbers like "03").
func ParseLayerTensor(name string) (layer int, p Part, ok bool) {
	rest, found := strings.CutPrefix(name, layerPrefix)
	if !found {
		return 0, 0, false
	}
	num, rest, found := strings.Cut(rest, ".")
	if !found || num == "" || len(num) > 9 || (len(num) > 1 && num[0] == '0') {
		return 0, 0, false
	}
	for _, ch := range num {
		if ch < '0' || ch > '9' {
			return 0, 0, false
		}
	}
	layer, _ = strconv.Atoi(num)
	for q := Part(0); q < numParts; q++ {
		if rest == partInfo[q].module+"."+partInfo[q].param {
			return layer, q, true
		}
	}
	return 0, 0, false
}

// LinearShape is the [out, in] shape of linear part p (PartQ..PartDown).
// It panics for other parts.
func (c *Config) LinearShape(p Part) (out, in int) {
	q := c.NumHeads * c.HeadDim
	kv := c.NumKVHeads * c.HeadDim
	switch p {
	case PartQ:
		return q, c.HiddenSize
	case PartK, PartV:
		return kv, c.HiddenSize
	case PartO:
		return c.HiddenSize, q
	case PartGate, PartUp:
		return c.IntermediateSize, c.HiddenSize
	case PartDown:
		return c.HiddenSize, c.IntermediateSize
	}
	panic(fmt.Sprintf("config: LinearShape(%v): not a linear part", p))
}

// PartShape is the shape of any part: [out, in] for linears, [hidden] for the
// norms, [out] for the biases.
func (c *Config) PartShape(p Part) []int64 {
	switch p {
	case PartInputNorm, PartPostAttnNorm:
		return []int64{int64(c.HiddenSize)}
	case PartQBias:
		return []int64{int64(c.NumHeads * c.HeadDim)}
	case PartKBias, PartVBias:
		return []int64{int64(c.NumKVHeads * c.HeadDim)}
	}
	out, in := c.LinearShape(p)
	return []int64{int64(out), int64(in)}
}

// LayerParts are the parts a decoder layer of this model has, in the order
// transformers registers them (q, [q bias], k, [k bias], v, [v bias], o,
// gate, up, down, input norm, post-attention norm).
func (c *Config) LayerParts() []Part {
	parts := make([]Part, 0, numParts)
	if c.AttentionBias {
		parts = append(parts, PartQ, PartQBias, PartK, PartKBias, PartV, PartVBias)
	} else {
		parts = append(parts, PartQ, PartK, PartV)
	}
	return append(parts, PartO, PartGate, PartUp, PartDown, PartInputNorm, PartPostAttnNorm)
}

// TensorSpec is a tensor's name and shape.
type TensorSpec struct {
	Name  string
	Shape []int64
}

// ExpectedTensors is every tensor the model's weights must contain, in the
// order transformers registers them: embeddings, each layer's LayerParts,
// the final norm, and lm_head unless TieWordEmbeddings (a tied checkpoint may
// still carry lm_head.weight; callers should tolerate it).
func (c *Config) ExpectedTensors() []TensorSpec {
	parts := c.LayerParts()
	specs := make([]TensorSpec, 0, 3+c.NumLayers*len(parts))
	vh := []int64{int64(c.VocabSize), int64(c.HiddenSize)}
	specs = append(specs, TensorSpec{EmbedTokens, vh})
	for l := 0; l < c.NumLayers; l++ {
		for _, p := range parts {
			specs = append(specs, TensorSpec{LayerTensor(l, p), c.PartShape(p)})
		}
	}
	specs = append(specs, TensorSpec{FinalNorm, []int64{int64(c.HiddenSize)}})
	if !c.TieWordEmbeddings {
		specs = append(specs, TensorSpec{LMHead, append([]int64(nil), vh...)})
	}
	return specs
}
