package main

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/wanda-go/wanda/format/config"
	"github.com/wanda-go/wanda/format/dtype"
	"github.com/wanda-go/wanda/format/safetensors"
	"github.com/wanda-go/wanda/format/sparse"
	"github.com/wanda-go/wanda/model/arch"
	"github.com/wanda-go/wanda/transform"
)

func init() {
	register(&cli.Command{
		Name:      "inspect",
		Usage:     "summarise a model: architecture, every tensor, and the sparsity of the prunable linears",
		UsageText: "wanda inspect --model DIR [--json]",
		Description: `Reads config.json and the safetensors weights (single file or sharded) of DIR and prints
the architecture (from the architecture table: every supported model_type, mixtures of experts
included), every tensor (name, dtype, shape, shard), one line per decoder layer (attention kind,
dense MLP or experts, its routers, its prunable linears' totals), and for every linear: the
fraction of exact zeros (+0.0 and -0.0), the number of negative zeros (-0.0, which some 2:4
kernels mishandle) and whether the tensor satisfies 2:4 and 4:8 (its column count is a multiple
of M and every aligned group of M consecutive inputs in each row holds at least N zeros). The
check is the one "wanda pack" decides with, and --json says why a pattern fails in the words
pack refuses with. Routers (and Qwen2-MoE's shared-expert gate) are listed but never pruned; the
prunable totals leave them out. Tensors are scanned one at a time from the memory map, on their
raw bytes, and their pages are released afterwards.

Every float tensor is also scanned for NaN and ±Inf. The command exits with status 1 when it
finds a problem (each printed on a "problem:" line, and listed under "problems" with --json):
missing, unexpected or misshapen tensors, NaN or ±Inf values, a linear whose dtype is not a
float dtype.

A packed directory (compressed-tensors sparse-24-bitmask or sparse-bitmask, as written by
"wanda pack" or "wanda prune --pack") is read through its dense view: tensors are listed by
their dense names, each packed one is unpacked for the scan, and the report names the format
(from config.json's sparsity_config) and which tensors are stored packed.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "model", Usage: "model directory (config.json + safetensors), dense or packed", Required: true},
			&cli.BoolFlag{Name: "json", Usage: "print a JSON document instead of tables"},
		},
		Action: func(c *cli.Context) error {
			rep, err := inspectModel(c.String("model"))
			if err != nil {
				return err
			}
			if c.Bool("json") {
				enc := json.NewEncoder(c.App.Writer)
				enc.SetIndent("", "  ")
				err = enc.Encode(rep)
			} else {
				err = rep.writeText(c.App.Writer)
			}
			if err == nil && len(rep.Problems) > 0 {
				err = fmt.Errorf("%w: %d in %s", errInspectProblems, len(rep.Problems), c.String("model"))
			}
			return err
		},
	})
}

// errInspectProblems: inspect found problems (it printed them; the exit status says so).
var errInspectProblems = errors.New("inspect: problems found")

// inspectReport is the --json document. Field names are part of the CLI's
// stable output; add fields, do not rename them.
type inspectReport struct {
	Model        string          `json:"model"`
	Architecture inspectArch     `json:"architecture"`
	Shards       []string        `json:"shards"` // file names, in shard order
	NumTensors   int             `json:"num_tensors"`
	NumParams    int64           `json:"num_params"`
	Tensors      []inspectTensor `json:"tensors"` // architecture order (embeddings, layers, norm, lm_head), then extras by name
	Prunable     inspectTotals   `json:"prunable"`
	// Layers: per decoder layer, its attention, its MLP or experts, its routers and
	// its prunable linears' totals.
	Layers   []inspectLayer `json:"layers"`
	Problems []string       `json:"problems"` // missing/unexpected tensors, shape mismatches, NaN/±Inf, non-float linears; empty when sound
	// Format is "dense", or the compressed-tensors format of a packed
	// directory ("sparse-24-bitmask", "sparse-bitmask").
	Format         string                 `json:"format"`
	SparsityConfig *sparse.SparsityConfig `json:"sparsity_config,omitempty"` // config.json's, packed directories only
	PackedTensors  int                    `json:"packed_tensors"`            // tensors stored packed
}

type inspectArch struct {
	ModelType             string              `json:"model_type"`
	Architectures         []string            `json:"architectures"`
	NumLayers             int                 `json:"num_layers"`
	HiddenSize            int                 `json:"hidden_size"`
	IntermediateSize      int                 `json:"intermediate_size"`
	NumHeads              int                 `json:"num_heads"`
	NumKVHeads            int                 `json:"num_kv_heads"`
	HeadDim               int                 `json:"head_dim"`
	VocabSize             int                 `json:"vocab_size"`
	MaxPositionEmbeddings int                 `json:"max_position_embeddings"`
	TorchDType            string              `json:"torch_dtype"`
	RMSNormEps            float64             `json:"rms_norm_eps"`
	RopeTheta             float64             `json:"rope_theta"`
	RopeScaling           *config.RopeScaling `json:"rope_scaling"`
	TieWordEmbeddings     bool                `json:"tie_word_embeddings"`
	AttentionBias         bool                `json:"attention_bias"`
	// Mixture of experts (absent for a dense model).
	NumExperts                   int  `json:"num_experts,omitempty"`
	NumExpertsPerTok             int  `json:"num_experts_per_tok,omitempty"`
	MoEIntermediateSize          int  `json:"moe_intermediate_size,omitempty"`
	SharedExpertIntermediateSize int  `json:"shared_expert_intermediate_size,omitempty"`
	NormTopKProb                 bool `json:"norm_topk_prob,omitempty"`
	SparseLayers                 int  `json:"sparse_layers,omitempty"` // layers with experts
}

type inspectTensor struct {
	Name   string  `json:"name"`
	DType  string  `json:"dtype"`
	Shape  []int64 `json:"shape"`
	Shard  string  `json:"shard"`            // file name of the shard (of the first packed part when packed)
	Packed bool    `json:"packed,omitempty"` // stored packed; Name, DType and Shape are the dense tensor's
	// Role is "linear" for a prunable linear, "router" for a router or shared-expert
	// gate (a linear wanda never prunes), "" for anything else.
	Role     string          `json:"role,omitempty"`
	Layer    *int            `json:"layer,omitempty"`    // the decoder layer of a linear
	Expert   *int            `json:"expert,omitempty"`   // the expert of an expert linear
	Sparsity *tensorSparsity `json:"sparsity,omitempty"` // linears (prunable and routers)
	NaN      int64           `json:"nan,omitempty"`      // NaN values (float tensors)
	Inf      int64           `json:"inf,omitempty"`      // +Inf and -Inf values (float tensors)
}

// tensorSparsity: exact zeros of a weight matrix [out, in] (rows = out), from
// sparse.Scan, the scanner pack uses.
type tensorSparsity struct {
	Numel         int64   `json:"numel"`
	Zeros         int64   `json:"zeros"` // +0.0 and -0.0
	ZeroFraction  float64 `json:"zero_fraction"`
	NegativeZeros int64   `json:"negative_zeros"` // -0.0 only (included in Zeros)
	Is2of4        bool    `json:"satisfies_2_4"`
	Is4of8        bool    `json:"satisfies_4_8"`
	// Why2of4 and Why4of8 say why the pattern does not hold, in the words
	// "wanda pack" refuses with (sparse.Stat.Why).
	Why2of4 string `json:"why_not_2_4,omitempty"`
	Why4of8 string `json:"why_not_4_8,omitempty"`
}

type inspectTotals struct {
	Tensors       int     `json:"tensors"`
	Numel         int64   `json:"numel"`
	Zeros         int64   `json:"zeros"`
	ZeroFraction  float64 `json:"zero_fraction"`
	NegativeZeros int64   `json:"negative_zeros"`
	All2of4       bool    `json:"all_satisfy_2_4"`
	All4of8       bool    `json:"all_satisfy_4_8"`
	// First2of4 names the first prunable linear that breaks 2:4 and why
	// ("<tensor>: <why>"); empty when all satisfy it.
	First2of4 string `json:"first_not_2_4,omitempty"`
}

func (tot *inspectTotals) add(name string, sp *tensorSparsity) {
	tot.Tensors++
	tot.Numel += sp.Numel
	tot.Zeros += sp.Zeros
	tot.NegativeZeros += sp.NegativeZeros
	if !sp.Is2of4 && tot.All2of4 {
		tot.First2of4 = name + ": " + sp.Why2of4
	}
	tot.All2of4 = tot.All2of4 && sp.Is2of4
	tot.All4of8 = tot.All4of8 && sp.Is4of8
}

func (tot *inspectTotals) finish() {
	if tot.Numel > 0 {
		tot.ZeroFraction = float64(tot.Zeros) / float64(tot.Numel)
	}
	if tot.Tensors == 0 {
		tot.All2of4, tot.All4of8 = false, false
	}
}

// inspectLayer is one decoder layer as the architecture table resolves it.
type inspectLayer struct {
	Index     int    `json:"index"`
	Attention string `json:"attention"`        // "full" or "sliding"
	Window    int    `json:"window,omitempty"` // sliding-window span
	// MLP is "dense" or "experts".
	MLP          string `json:"mlp"`
	Experts      int    `json:"experts,omitempty"`
	TopK         int    `json:"experts_per_token,omitempty"`
	SharedExpert bool   `json:"shared_expert,omitempty"`
	// Routers are the layer's routers and shared-expert gate: linears wanda never prunes.
	Routers []string `json:"routers,omitempty"`
	// Prunable totals the layer's prunable linears (experts included).
	Prunable inspectTotals `json:"prunable"`
}

// inspectModel scans the model in dir (dense or packed).
func inspectModel(dir string) (*inspectReport, error) {
	cfg, a, err := arch.LoadDir(dir)
	if err != nil {
		return nil, err
	}
	r, err := transform.Open(dir)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	// The stored files, for the shard each tensor (or its packed parts) lives in.
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		return nil, err
	}
	defer set.Close()

	rep := &inspectReport{
		Model: dir,
		Architecture: inspectArch{
			ModelType: cfg.ModelType, Architectures: cfg.Architectures, NumLayers: cfg.NumLayers,
			HiddenSize: cfg.HiddenSize, IntermediateSize: cfg.IntermediateSize, NumHeads: cfg.NumHeads,
			NumKVHeads: cfg.NumKVHeads, HeadDim: cfg.HeadDim, VocabSize: cfg.VocabSize,
			MaxPositionEmbeddings: cfg.MaxPositionEmbeddings, TorchDType: cfg.TorchDType,
			RMSNormEps: cfg.RMSNormEps, RopeTheta: cfg.RopeTheta, RopeScaling: cfg.RopeScaling,
			TieWordEmbeddings: cfg.TieWordEmbeddings, AttentionBias: cfg.AttentionBias,
		},
		Shards:         []string{},
		Problems:       []string{},
		Layers:         []inspectLayer{},
		Prunable:       inspectTotals{All2of4: true, All4of8: true},
		Format:         string(r.Format()),
		SparsityConfig: r.SparsityConfig(),
	}
	if rep.Architecture.Architectures == nil {
		rep.Architecture.Architectures = []string{}
	}
	for _, s := range r.Shards() {
		rep.Shards = append(rep.Shards, filepath.Base(s))
	}

	// The layers and their linears, from the architecture table.
	type layerLinear struct {
		arch.Linear
		layer int
	}
	linears := map[string]layerLinear{}
	for l := range cfg.NumLayers {
		L := a.Layer(cfg, l)
		il := inspectLayer{Index: l, Attention: "full", MLP: "dense", Prunable: inspectTotals{All2of4: true, All4of8: true}}
		if L.Window > 0 {
			il.Attention, il.Window = "sliding", L.Window
		}
		if m := L.MoE; m != nil {
			il.MLP, il.Experts, il.TopK, il.SharedExpert = "experts", len(m.Experts), m.TopK, m.Shared != nil
			rep.Architecture.SparseLayers++
		}
		for _, lin := range L.Linears {
			linears[lin.Name] = layerLinear{lin, l}
			if lin.Router {
				il.Routers = append(il.Routers, lin.Name)
			}
		}
		rep.Layers = append(rep.Layers, il)
	}
	if rep.Architecture.SparseLayers > 0 {
		ar := &rep.Architecture
		ar.NumExperts, ar.NumExpertsPerTok, ar.MoEIntermediateSize = cfg.NumExperts, cfg.NumExpertsPerTok, cfg.MoEIntermediateSize
		ar.SharedExpertIntermediateSize, ar.NormTopKProb = cfg.SharedExpertIntermediateSize, cfg.NormTopKProb
		if !a.SharedExpert {
			ar.SharedExpertIntermediateSize = 0
		}
	}

	// Order: the architecture's tensors, then anything else by name.
	expected := a.Tensors(cfg)
	want := make(map[string][]int64, len(expected))
	var names []string
	for _, e := range expected {
		want[e.Name] = e.Shape
		if _, ok := r.Shape(e.Name); ok {
			names = append(names, e.Name)
		} else {
			rep.Problems = append(rep.Problems, fmt.Sprintf("missing tensor %s (shape %s)", e.Name, shapeString(e.Shape)))
		}
	}
	var extra []string
	for _, n := range r.Names() {
		if _, ok := want[n]; !ok {
			extra = append(extra, n)
		}
	}
	sort.Strings(extra)
	for _, n := range extra {
		// A tied checkpoint may still carry lm_head.weight.
		if !(n == config.LMHead && cfg.TieWordEmbeddings) {
			rep.Problems = append(rep.Problems, "unexpected tensor "+n)
		}
	}
	names = append(names, extra...)

	for _, name := range names {
		dt, _ := r.DType(name)
		shape, _ := r.Shape(name)
		packed := r.Packed(name)
		file := ""
		if t, ok := set.Tensor(storedName(r, name)); ok {
			file = t.File
		}
		it := inspectTensor{Name: name, DType: dt.String(), Shape: shape, Shard: filepath.Base(file), Packed: packed}
		if it.Shape == nil {
			it.Shape = []int64{}
		}
		if packed {
			rep.PackedTensors++
		}
		numel := int64(1)
		for _, d := range shape {
			numel *= d
		}
		rep.NumParams += numel
		if ws, ok := want[name]; ok && !equalShape(ws, shape) {
			rep.Problems = append(rep.Problems, fmt.Sprintf("%s: shape %s, config implies %s", name, shapeString(shape), shapeString(ws)))
		}
		lin, linear := linears[name]
		if linear {
			it.Layer, it.Role = &lin.layer, "linear"
			if lin.Router {
				it.Role = "router"
			}
			if lin.Expert >= 0 {
				e := lin.Expert
				it.Expert = &e
			}
			if !dt.IsFloat() {
				rep.Problems = append(rep.Problems, fmt.Sprintf("%s: dtype %s is not a float dtype (a prunable linear must be F32, F16 or BF16)", name, dt))
			}
		}
		if !dt.IsFloat() {
			rep.Tensors = append(rep.Tensors, it)
			continue
		}
		data, err := r.Bytes(name)
		if err != nil {
			return nil, fmt.Errorf("%s: tensor %q: %w", file, name, err)
		}
		var first int64
		it.NaN, it.Inf, first = countNonFinite(dt, data)
		if it.NaN+it.Inf > 0 {
			at := fmt.Sprintf("[%d]", first)
			if len(shape) > 1 && shape[len(shape)-1] > 0 {
				cols := shape[len(shape)-1]
				at = fmt.Sprintf("[%d, %d]", first/cols, first%cols)
			}
			rep.Problems = append(rep.Problems, fmt.Sprintf("%s: %d NaN and %d ±Inf values (the first at %s)", name, it.NaN, it.Inf, at))
		}
		if linear {
			sp, err := scanSparsity(dt, shape, data)
			if err != nil {
				r.Release(name)
				return nil, fmt.Errorf("%s: tensor %q: %w", file, name, err)
			}
			it.Sparsity = sp
			if !lin.Router {
				rep.Prunable.add(name, sp)
				rep.Layers[*it.Layer].Prunable.add(name, sp)
			}
		}
		r.Release(name)
		rep.Tensors = append(rep.Tensors, it)
	}
	rep.NumTensors = len(rep.Tensors)
	rep.Prunable.finish()
	for i := range rep.Layers {
		rep.Layers[i].Prunable.finish()
	}
	return rep, nil
}

func equalShape(a, b []int64) bool { return slices.Equal(a, b) }

// storedName is the stored tensor that holds name: name itself, or for a packed
// tensor its first part (as the registered layout names it).
func storedName(r transform.Reader, name string) string {
	if !r.Packed(name) {
		return name
	}
	l, _ := sparse.LayoutOf(r.Format())
	p, _ := sparse.Prefix(name)
	return p + l.Parts[0]
}

// countNonFinite counts the NaN and ±Inf elements of the raw little-endian
// bytes of a float dtype (all exponent bits set) and returns the index of the
// first one (-1 if none).
func countNonFinite(dt dtype.DType, data []byte) (nan, inf, first int64) {
	first = -1
	size := dt.Size()
	for k := 0; (k+1)*size <= len(data); k++ {
		e := data[k*size:]
		var expAll, mant bool
		switch dt {
		case dtype.BF16:
			h := binary.LittleEndian.Uint16(e)
			expAll, mant = h&0x7f80 == 0x7f80, h&0x007f != 0
		case dtype.F16:
			h := binary.LittleEndian.Uint16(e)
			expAll, mant = h&0x7c00 == 0x7c00, h&0x03ff != 0
		case dtype.F32:
			u := binary.LittleEndian.Uint32(e)
			expAll, mant = u&0x7f800000 == 0x7f800000, u&0x007fffff != 0
		case dtype.F64:
			u := binary.LittleEndian.Uint64(e)
			expAll, mant = u&0x7ff0000000000000 == 0x7ff0000000000000, u&0x000fffffffffffff != 0
		default:
			return 0, 0, -1
		}
		if !expAll {
			continue
		}
		if first < 0 {
			first = int64(k)
		}
		if mant {
			nan++
		} else {
			inf++
		}
	}
	return nan, inf, first
}

// scanSparsity scans a float weight [out, in...] (rows = the first dimension,
// columns = the product of the rest) with sparse.Scan, the scanner "wanda pack"
// decides with: zeros, -0.0, 2:4 and 4:8.
func scanSparsity(dt dtype.DType, shape []int64, data []byte) (*tensorSparsity, error) {
	if len(shape) < 1 {
		return nil, fmt.Errorf("a scalar is not a weight matrix")
	}
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	rows, cols := shape[0], int64(0)
	if rows > 0 {
		cols = n / rows
	}
	st, err := sparse.Scan(data, dt, int(rows), int(cols), sparse.Pattern24, sparse.Pattern48)
	if err != nil {
		return nil, err
	}
	sp := &tensorSparsity{Numel: n, Zeros: st.Zeros, NegativeZeros: st.NegZeros,
		Is2of4: st.Satisfies(sparse.Pattern24), Is4of8: st.Satisfies(sparse.Pattern48),
		Why2of4: st.Why(sparse.Pattern24), Why4of8: st.Why(sparse.Pattern48)}
	if n > 0 {
		sp.ZeroFraction = float64(sp.Zeros) / float64(n)
	}
	return sp, nil
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func shapeString(s []int64) string {
	parts := make([]string, len(s))
	for i, d := range s {
		parts[i] = fmt.Sprint(d)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// writeText prints the human-readable report.
func (r *inspectReport) writeText(w io.Writer) error {
	a := r.Architecture
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	rope := fmt.Sprintf("theta %g, no scaling", a.RopeTheta)
	if rs := a.RopeScaling; rs != nil {
		rope = fmt.Sprintf("theta %g, %s scaling factor %g", a.RopeTheta, rs.Type, rs.Factor)
		if rs.Type == "llama3" {
			rope += fmt.Sprintf(" (low %g, high %g, original %d positions)", rs.LowFreqFactor, rs.HighFreqFactor, rs.OriginalMaxPositionEmbeddings)
		}
	}
	dt := a.TorchDType
	if dt == "" {
		dt = "(not given)"
	}
	fmt.Fprintf(tw, "model\t%s\n", r.Model)
	fmt.Fprintf(tw, "architecture\t%s %s\n", a.ModelType, strings.Join(a.Architectures, ","))
	fmt.Fprintf(tw, "layers\t%d\n", a.NumLayers)
	fmt.Fprintf(tw, "hidden / intermediate\t%d / %d\n", a.HiddenSize, a.IntermediateSize)
	fmt.Fprintf(tw, "heads / kv heads / head_dim\t%d / %d / %d\n", a.NumHeads, a.NumKVHeads, a.HeadDim)
	fmt.Fprintf(tw, "vocab\t%d\n", a.VocabSize)
	fmt.Fprintf(tw, "max positions\t%d\n", a.MaxPositionEmbeddings)
	fmt.Fprintf(tw, "dtype\t%s\n", dt)
	fmt.Fprintf(tw, "rope\t%s\n", rope)
	fmt.Fprintf(tw, "rms_norm_eps\t%g\n", a.RMSNormEps)
	fmt.Fprintf(tw, "tied embeddings\t%s\n", yesNo(a.TieWordEmbeddings))
	fmt.Fprintf(tw, "attention bias\t%s\n", yesNo(a.AttentionBias))
	if a.SparseLayers > 0 {
		moe := fmt.Sprintf("%d per sparse layer, top %d", a.NumExperts, a.NumExpertsPerTok)
		if a.NormTopKProb {
			moe += " renormalised"
		}
		moe += fmt.Sprintf(", intermediate %d", a.MoEIntermediateSize)
		if a.SharedExpertIntermediateSize > 0 {
			moe += fmt.Sprintf("; shared expert %d (sigmoid gate)", a.SharedExpertIntermediateSize)
		}
		fmt.Fprintf(tw, "experts\t%s\n", moe)
		fmt.Fprintf(tw, "sparse layers\t%d of %d (routers are never pruned)\n", a.SparseLayers, a.NumLayers)
	}
	files := strings.Join(r.Shards, ", ")
	if len(r.Shards) > 3 {
		files = r.Shards[0] + " … " + r.Shards[len(r.Shards)-1]
	}
	fmt.Fprintf(tw, "weights\t%d tensors, %d parameters in %d file(s): %s\n", r.NumTensors, r.NumParams, len(r.Shards), files)
	packed := r.Format != "" && r.Format != string(sparse.FormatDense)
	if packed {
		f := r.Format
		if sc := r.SparsityConfig; sc != nil {
			f += fmt.Sprintf(" (structure %s, global sparsity %.4f)", sc.SparsityStructure, sc.GlobalSparsity)
		}
		fmt.Fprintf(tw, "packed\t%s; %d tensors stored packed, shown here unpacked\n", f, r.PackedTensors)
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	// A packed directory gets a STORED column (packed or dense) before SHARD.
	stored := func(t inspectTensor) string {
		if !packed {
			return ""
		}
		if t.Packed {
			return "packed\t"
		}
		return "dense\t"
	}
	head := "TENSOR\tDTYPE\tSHAPE\tZEROS\t-0.0\t2:4\t4:8\tSHARD"
	if packed {
		head = "TENSOR\tDTYPE\tSHAPE\tZEROS\t-0.0\t2:4\t4:8\tSTORED\tSHARD"
	}
	fmt.Fprintln(tw, head)
	for _, t := range r.Tensors {
		if sp := t.Sparsity; sp != nil {
			p24, p48 := yesNo(sp.Is2of4), yesNo(sp.Is4of8)
			if t.Role == "router" { // never pruned: its patterns are not a question
				p24, p48 = "-", "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%.2f%%\t%d\t%s\t%s\t%s%s\n", t.Name, t.DType, shapeString(t.Shape),
				100*sp.ZeroFraction, sp.NegativeZeros, p24, p48, stored(t), t.Shard)
		} else {
			fmt.Fprintf(tw, "%s\t%s\t%s\t\t\t\t\t%s%s\n", t.Name, t.DType, shapeString(t.Shape), stored(t), t.Shard)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if err := r.writeLayers(w); err != nil {
		return err
	}
	p := r.Prunable
	fmt.Fprintf(w, "\nprunable linears: %d tensors, %d weights, %d zeros (%.2f%%), %d negative zeros; all 2:4: %s; all 4:8: %s\n",
		p.Tensors, p.Numel, p.Zeros, 100*p.ZeroFraction, p.NegativeZeros, yesNo(p.All2of4), yesNo(p.All4of8))
	if p.First2of4 != "" && p.Zeros > 0 {
		fmt.Fprintf(w, "not 2:4: %s\n", p.First2of4)
	}
	if p.NegativeZeros > 0 {
		fmt.Fprintln(w, "warning: negative zeros (-0.0) present; some 2:4 kernels treat them as non-zero")
	}
	for _, pr := range r.Problems {
		fmt.Fprintln(w, "problem:", pr)
	}
	return nil
}

// writeLayers prints one line per decoder layer: attention, MLP or experts, the
// prunable linears' zeros and patterns, and the routers (never pruned).
func (r *inspectReport) writeLayers(w io.Writer) error {
	if len(r.Layers) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "LAYER\tATTENTION\tMLP\tPRUNABLE\tZEROS\t2:4\t4:8\tROUTERS (never pruned)")
	for _, l := range r.Layers {
		att := l.Attention
		if l.Window > 0 {
			att += fmt.Sprintf(" %d", l.Window)
		}
		mlp := l.MLP
		if l.Experts > 0 {
			mlp = fmt.Sprintf("%d experts, top %d", l.Experts, l.TopK)
			if l.SharedExpert {
				mlp += " + shared"
			}
		}
		routers := strings.Join(l.Routers, ", ")
		if routers == "" {
			routers = "-"
		}
		p := l.Prunable
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%.2f%%\t%s\t%s\t%s\n", l.Index, att, mlp, p.Tensors, 100*p.ZeroFraction,
			yesNo(p.All2of4), yesNo(p.All4of8), routers)
	}
	return tw.Flush()
}
