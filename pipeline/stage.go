package pipeline

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/wanda-go/wanda/format/sparse"
	"github.com/wanda-go/wanda/tensor"
)

// Matrix is a dense row-major float32 matrix. For a linear layer's weight it is [out, in]:
// Rows = output features, Cols = input features, element (i, j) at Data[i*Cols+j].
type Matrix struct {
	Rows, Cols int
	Data       []float32
}

// NewMatrix allocates a zeroed rows×cols matrix.
func NewMatrix(rows, cols int) Matrix {
	return Matrix{Rows: rows, Cols: cols, Data: make([]float32, rows*cols)}
}

// Row returns row i as a slice aliasing m.Data.
func (m Matrix) Row(i int) []float32 { return m.Data[i*m.Cols : (i+1)*m.Cols] }

// Stats are the calibration statistics of one linear layer's input, accumulated from the
// dense forward pass of its decoder block.
type Stats struct {
	// SumSq[j] = (1/N) · Σ_samples Σ_tokens x_j², the reference's scaler_row (fp32): the divisor
	// is the number of sequences N, not the number of tokens.
	SumSq []float32
	// Sum[j] = (1/N)·Σ_seq Σ_tok x_j: the sum over all tokens divided by the number of
	// sequences (DSnoT's sum_metric_row); present when a stage asked for StatsSum.
	Sum []float32
	// Var[j] = Σ_seq Σ_tok (x_j − mean_seq,j)² / Tokens: the token-weighted average over
	// sequences of each sequence's biased variance around its own mean (DSnoT's var; not the
	// variance around the overall mean); present when a stage asked for StatsVar.
	Var []float32
	// N is the number of calibration sequences, Tokens the number of token rows seen.
	N, Tokens int
	// Hessian is (2/N) · Σ x xᵀ ([in, in], row-major), present only when a stage asked for it
	// (SparseGPT). Float64 to keep the Cholesky stable.
	Hessian []float64
}

// StatsKind is a set of per-input-channel statistics a stage reads.
type StatsKind uint8

// The statistics the dense pass can gather (see Stats for their definitions).
const (
	StatsSumSq StatsKind = 1 << iota // Stats.SumSq: Wanda's scaler_row
	StatsSum                         // Stats.Sum
	StatsVar                         // Stats.Var
)

// Has reports whether k includes every statistic of x.
func (k StatsKind) Has(x StatsKind) bool { return k&x == x }

func (k StatsKind) String() string {
	var parts []string
	for _, c := range []struct {
		k    StatsKind
		name string
	}{{StatsSumSq, "sumsq"}, {StatsSum, "sum"}, {StatsVar, "var"}} {
		if k.Has(c.k) {
			parts = append(parts, c.name)
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, "+")
}

// Group is the set of weights whose scores are compared against each other.
type Group int

const (
	GroupRow    Group = iota // each output row separately (Wanda)
	GroupMatrix              // the whole matrix (the reference's magnitude baseline)
	GroupColumn              // each input column separately
)

func (g Group) String() string {
	switch g {
	case GroupRow:
		return "row"
	case GroupMatrix:
		return "matrix"
	case GroupColumn:
		return "column"
	}
	return fmt.Sprintf("Group(%d)", int(g))
}

// ParseGroup parses "row", "matrix" or "column".
func ParseGroup(s string) (Group, error) {
	switch s {
	case "row":
		return GroupRow, nil
	case "matrix", "layer":
		return GroupMatrix, nil
	case "column":
		return GroupColumn, nil
	}
	return 0, fmt.Errorf("%w: group %q (want row, matrix or column)", ErrBadTarget, s)
}

// Target says how much to prune and in what pattern.
type Target struct {
	// Sparsity is the fraction pruned for unstructured patterns, in [0, 1).
	Sparsity float64
	// N:M, when M > 0: N of every M consecutive input columns of each row are pruned
	// (the reference's prune_n:prune_m; "2:4" prunes 2 of every 4).
	N, M int
	// Group is the comparison group for unstructured patterns.
	Group Group
	// Variant selects Wanda's adaptive-alpha variant (unstructured only, REFERENCE-NOTES §1.7).
	Variant bool
}

// Structured reports whether t is an N:M pattern.
func (t Target) Structured() bool { return t.M > 0 }

// String formats t as "unstructured 50%" or "2:4".
func (t Target) String() string {
	if t.Structured() {
		return fmt.Sprintf("%d:%d", t.N, t.M)
	}
	return fmt.Sprintf("unstructured %g%%", t.Sparsity*100)
}

// Validate checks t against a matrix with cols input columns.
func (t Target) Validate(cols int) error {
	if t.Structured() {
		if t.N <= 0 || t.N >= t.M {
			return fmt.Errorf("%w: N:M = %d:%d needs 0 < N < M", ErrBadTarget, t.N, t.M)
		}
		if cols%t.M != 0 {
			return fmt.Errorf("%w: input width %d is not divisible by M = %d", ErrBadTarget, cols, t.M)
		}
		return nil
	}
	if !(t.Sparsity >= 0 && t.Sparsity < 1) {
		return fmt.Errorf("%w: sparsity %g out of range [0, 1)", ErrBadTarget, t.Sparsity)
	}
	return nil
}

// Mask is a bitset over a [Rows, Cols] matrix, row-major; a set bit means "pruned" (set to
// +0.0). It is format/sparse's mask: the one mask type of the project, from the stages to the
// mask files.
type Mask = sparse.Mask

// NewMask returns an all-kept mask.
func NewMask(rows, cols int) *Mask { return sparse.NewMask(rows, cols) }

// ApplyMask zeroes the pruned entries of w with +0.0.
func ApplyMask(m *Mask, w Matrix) {
	if w.Rows != m.Rows || w.Cols != m.Cols {
		panic(fmt.Sprintf("pipeline: mask %dx%d applied to matrix %dx%d", m.Rows, m.Cols, w.Rows, w.Cols))
	}
	m.Zero(w.Data)
}

// LayerInfo identifies the tensor a stage works on.
type LayerInfo struct {
	Layer  int    // decoder layer index
	Tensor string // HF tensor name, e.g. "model.layers.3.self_attn.q_proj.weight"
	Part   string // the module's last name: "q_proj", ..., "down_proj", "w1", "qkv_proj"
	// Expert is the mixture-of-experts expert the tensor belongs to, -1 if none.
	Expert int
	// ModelType, Hidden and Intermediate describe the model (for metrics that need them).
	ModelType            string
	Hidden, Intermediate int
	NumLayers            int
}

func (li LayerInfo) String() string { return fmt.Sprintf("layer %d %s", li.Layer, li.Tensor) }

// Metric scores every weight of one linear layer; a low score means "prune first".
type Metric interface {
	Name() string
	// NeedsStats reports whether Score uses calibration statistics (false for magnitude).
	NeedsStats() bool
	// Score returns scores [out, in] for W [out, in]. It must not modify W.
	Score(ctx context.Context, w Matrix, st *Stats, info LayerInfo) (Matrix, error)
}

// Pattern turns scores into a mask.
type Pattern interface {
	Name() string
	Select(ctx context.Context, scores Matrix, t Target, info LayerInfo) (*Mask, error)
}

// Solver replaces metric + pattern + apply: it chooses the mask and updates the kept weights
// in place (SparseGPT). W is modified; the returned mask's entries are zero in W afterwards.
type Solver interface {
	Name() string
	// NeedsHessian reports whether Stats.Hessian must be accumulated.
	NeedsHessian() bool
	Solve(ctx context.Context, w Matrix, st *Stats, t Target, info LayerInfo) (*Mask, error)
}

// Refiner changes a mask chosen by a metric and a pattern (DSnoT), keeping the number pruned
// in each row (and, for N:M targets, in each group of M). Rows are independent: Refine may
// be called on any block of a tensor's rows (w, mask and the row's statistics), so that it
// streams with the rest of PruneTensor.
type Refiner interface {
	Name() string
	// NeedsStats says which statistics Refine reads.
	NeedsStats() StatsKind
	// Applies reports whether Refine changes the tensor at all; statistics are gathered only
	// for the inputs of the tensors it applies to.
	Applies(info LayerInfo) bool
	// Refine updates mask in place for the dense weights w ([rows, in], the weights the mask
	// was chosen on; not modified) and the layer input's statistics st.
	Refine(ctx context.Context, w Matrix, mask *Mask, st *Stats, t Target, info LayerInfo) error
}

// Allocator chooses each decoder layer's sparsity from the dense model (OWL). A pre-pass
// runs the dense model layer by layer (dense outputs feed the next layer; nothing is
// pruned) and shows the allocator every layer's prunable linears with the statistics of
// their inputs; Allocate then turns every layer's summary into the layers' sparsities, which
// the pruning pass uses instead of Target.Sparsity.
type Allocator interface {
	Name() string
	// ObserveLayer summarises decoder layer l in a few numbers (kept for Allocate, and
	// checkpointed with the run). linears are the layer's prunable linears, W in the stored
	// dtype, Stats from the dense pass.
	ObserveLayer(ctx context.Context, l int, linears []AllocInput) ([]float64, error)
	// Allocate returns one sparsity in [0, 1) per layer from the summaries of all layers.
	Allocate(ctx context.Context, summaries [][]float64, t Target) ([]float64, error)
}

// AllocInput is one prunable linear of a layer in the allocation pre-pass.
type AllocInput struct {
	Info  LayerInfo
	W     tensor.Mat
	Stats *Stats
}

// Sentinel errors.
var (
	ErrBadTarget   = errors.New("pipeline: invalid pruning target")
	ErrShape       = errors.New("pipeline: shape mismatch")
	ErrNonFinite   = errors.New("pipeline: non-finite value")
	ErrStageFailed = errors.New("pipeline: stage failed")
)
