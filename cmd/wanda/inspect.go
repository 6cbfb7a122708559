package main

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
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
the architecture, every tensor (name, dtype, shape, shard), and for each of the seven prunable
linears of every layer: the fraction of exact zeros (+0.0 and -0.0), the number of negative
zeros (-0.0, which some 2:4 kernels mishandle) and whether the tensor satisfies 2:4 and 4:8
(every aligned group of M consecutive inputs in each row holds at least N zeros; a trailing
partial group must hold min(N, its size)). Tensors are scanned one at a time from the memory
map, on their raw bytes, and their pages are released afterwards.

Every float tensor is also scanned for NaN and ±Inf. The command exits with status 1 when it
finds a problem (each printed on a "problem:" line, and listed under "problems" with --json):
missing, unexpected or misshapen tensors, NaN or ±Inf values, a prunable linear whose dtype is
not a float dtype.

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
	Tensors      []inspectTensor `json:"tensors"` // config order (embeddings, layers, norm, lm_head), then extras by name
	Prunable     inspectTotals   `json:"prunable"`
	Problems     []string        `json:"problems"` // missing/unexpected tensors, shape mismatches, NaN/±Inf, non-float linears; empty when sound
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
}

type inspectTensor struct {
	Name     string          `json:"name"`
	DType    string          `json:"dtype"`
	Shape    []int64         `json:"shape"`
	Shard    string          `json:"shard"`              // file name of the shard (of the .compressed part when packed)
	Packed   bool            `json:"packed,omitempty"`   // stored packed; Name, DType and Shape are the dense tensor's
	Sparsity *tensorSparsity `json:"sparsity,omitempty"` // prunable linears only
	NaN      int64           `json:"nan,omitempty"`      // NaN values (float tensors)
	Inf      int64           `json:"inf,omitempty"`      // +Inf and -Inf values (float tensors)
}

// tensorSparsity: exact zeros of a weight matrix [out, in] (rows = out).
type tensorSparsity struct {
	Numel         int64   `json:"numel"`
	Zeros         int64   `json:"zeros"` // +0.0 and -0.0
	ZeroFraction  float64 `json:"zero_fraction"`
	NegativeZeros int64   `json:"negative_zeros"` // -0.0 only (included in Zeros)
	Is2of4        bool    `json:"satisfies_2_4"`
	Is4of8        bool    `json:"satisfies_4_8"`
}

type inspectTotals struct {
	Tensors       int     `json:"tensors"`
	Numel         int64   `json:"numel"`
	Zeros         int64   `json:"zeros"`
	ZeroFraction  float64 `json:"zero_fraction"`
	NegativeZeros int64   `json:"negative_zeros"`
	All2of4       bool    `json:"all_satisfy_2_4"`
	All4of8       bool    `json:"all_satisfy_4_8"`
}

// inspectModel scans the model in dir (dense or packed).
func inspectModel(dir string) (*inspectReport, error) {
	cfg, _, err := arch.LoadDir(dir)
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

	// Order: the config's expected tensors, then anything else by name.
	expected := cfg.ExpectedTensors()
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
		stored := name
		if packed {
			p, _ := sparse.Prefix(name)
			stored = p + sparse.SuffixCompressed
		}
		file := ""
		if t, ok := set.Tensor(stored); ok {
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
		_, p, isLayer := config.ParseLayerTensor(name)
		linear := isLayer && p.IsLinear()
		if linear && !dt.IsFloat() {
			rep.Problems = append(rep.Problems, fmt.Sprintf("%s: dtype %s is not a float dtype (a prunable linear must be F32, F16 or BF16)", name, dt))
		}
		if !dt.IsFloat() && !linear {
			rep.Tensors = append(rep.Tensors, it)
			continue
		}
		data, err := r.Bytes(name)
		if err != nil {
			return nil, fmt.Errorf("%s: tensor %q: %w", file, name, err)
		}
		if dt.IsFloat() {
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
		}
		if linear {
			sp, err := scanSparsity(dt, shape, data)
			if err != nil {
				r.Release(name)
				return nil, fmt.Errorf("%s: tensor %q: %w", file, name, err)
			}
			it.Sparsity = sp
			tot := &rep.Prunable
			tot.Tensors++
			tot.Numel += sp.Numel
			tot.Zeros += sp.Zeros
			tot.NegativeZeros += sp.NegativeZeros
			tot.All2of4 = tot.All2of4 && sp.Is2of4
			tot.All4of8 = tot.All4of8 && sp.Is4of8
		}
		r.Release(name)
		rep.Tensors = append(rep.Tensors, it)
	}
	rep.NumTensors = len(rep.Tensors)
	if rep.Prunable.Numel > 0 {
		rep.Prunable.ZeroFraction = float64(rep.Prunable.Zeros) / float64(rep.Prunable.Numel)
	}
	if rep.Prunable.Tensors == 0 {
		rep.Prunable.All2of4, rep.Prunable.All4of8 = false, false
	}
	return rep, nil
}

func equalShape(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
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

// Zero codes of one element, see classifyRow.
const (
	notZero uint8 = iota
	posZero
	negZero
)

// classifyRow writes the zero code of each element of row (raw little-endian
// bytes of dtype d) into codes.
func classifyRow(codes []uint8, row []byte, d dtype.DType) {
	switch d {
	case dtype.BF16, dtype.F16:
		for i := range codes {
			h := binary.LittleEndian.Uint16(row[2*i:])
			codes[i] = zeroCode(h&0x7fff == 0, h == 0x8000)
		}
	case dtype.F32:
		for i := range codes {
			u := binary.LittleEndian.Uint32(row[4*i:])
			codes[i] = zeroCode(u&0x7fffffff == 0, u == 0x80000000)
		}
	case dtype.F64:
		for i := range codes {
			u := binary.LittleEndian.Uint64(row[8*i:])
			codes[i] = zeroCode(u&(1<<63-1) == 0, u == 1<<63)
		}
	default: // integers and bool: zero when every byte is zero
		size := d.Size()
		for i := range codes {
			z := true
			for _, x := range row[size*i : size*(i+1)] {
				z = z && x == 0
			}
			codes[i] = zeroCode(z, false)
		}
	}
}

func zeroCode(isZero, isNeg bool) uint8 {
	switch {
	case isNeg:
		return negZero
	case isZero:
		return posZero
	}
	return notZero
}

// satisfiesNM reports whether every aligned group of m consecutive codes holds
// at least n zeros (a trailing partial group at least min(n, its length)).
func satisfiesNM(codes []uint8, n, m int) bool {
	for g := 0; g < len(codes); g += m {
		grp := codes[g:min(g+m, len(codes))]
		z := 0
		for _, c := range grp {
			if c != notZero {
				z++
			}
		}
		if z < min(n, len(grp)) {
			return false
		}
	}
	return true
}

// scanSparsity counts the zeros of a weight [out, in...] (dtype dt) straight
// from its raw little-endian bytes data (rows = first dimension, columns = the
// product of the rest), one row at a time, and checks the 2:4 and 4:8 patterns.
func scanSparsity(dt dtype.DType, shape []int64, data []byte) (*tensorSparsity, error) {
	if len(shape) < 1 {
		return nil, fmt.Errorf("a scalar is not a weight matrix")
	}
	if dt == dtype.Invalid || dt.Size() <= 0 {
		return nil, fmt.Errorf("cannot scan dtype %v", dt)
	}
	size := int64(dt.Size())
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	if int64(len(data)) != n*size {
		return nil, fmt.Errorf("%d data bytes for %d elements of %v", len(data), n, dt)
	}
	sp := &tensorSparsity{Numel: n, Is2of4: true, Is4of8: true}
	rows := shape[0]
	if rows == 0 || n == 0 {
		return sp, nil
	}
	cols := n / rows
	codes := make([]uint8, cols)
	for r := int64(0); r < rows; r++ {
		classifyRow(codes, data[r*cols*size:(r+1)*cols*size], dt)
		for _, c := range codes {
			if c != notZero {
				sp.Zeros++
				if c == negZero {
					sp.NegativeZeros++
				}
			}
		}
		sp.Is2of4 = sp.Is2of4 && satisfiesNM(codes, 2, 4)
		sp.Is4of8 = sp.Is4of8 && satisfiesNM(codes, 4, 8)
	}
	sp.ZeroFraction = float64(sp.Zeros) / float64(n)
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
			fmt.Fprintf(tw, "%s\t%s\t%s\t%.2f%%\t%d\t%s\t%s\t%s%s\n", t.Name, t.DType, shapeString(t.Shape),
				100*sp.ZeroFraction, sp.NegativeZeros, yesNo(sp.Is2of4), yesNo(sp.Is4of8), stored(t), t.Shard)
		} else {
			fmt.Fprintf(tw, "%s\t%s\t%s\t\t\t\t\t%s%s\n", t.Name, t.DType, shapeString(t.Shape), stored(t), t.Shard)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	p := r.Prunable
	fmt.Fprintf(w, "\nprunable linears: %d tensors, %d weights, %d zeros (%.2f%%), %d negative zeros; all 2:4: %s; all 4:8: %s\n",
		p.Tensors, p.Numel, p.Zeros, 100*p.ZeroFraction, p.NegativeZeros, yesNo(p.All2of4), yesNo(p.All4of8))
	if p.NegativeZeros > 0 {
		fmt.Fprintln(w, "warning: negative zeros (-0.0) present; some 2:4 kernels treat them as non-zero")
	}
	for _, pr := range r.Problems {
		fmt.Fprintln(w, "problem:", pr)
	}
	return nil
}
