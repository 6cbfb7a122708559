package pipeline

import (
	"errors"
	"fmt"
	"log/slog"
	"regexp"

	"github.com/wanda-go/wanda/format/safetensors"
)

// Method is the pruning rule: a Metric and a Pattern, or a Solver.
type Method struct {
	Name    string
	Metric  Metric
	Pattern Pattern
	Solver  Solver
	// Refiner, when set, refines the mask the metric and pattern chose (not a solver's).
	Refiner Refiner
}

// ErrMethod reports a Method that is neither a metric with a pattern nor a solver.
var ErrMethod = errors.New("pipeline: invalid method")

// Validate checks that m is a Metric with a Pattern, or a Solver alone.
func (m Method) Validate() error {
	switch {
	case m.Solver != nil && (m.Metric != nil || m.Pattern != nil):
		return fmt.Errorf("%w %q: a solver chooses its own mask; it takes no metric or pattern", ErrMethod, m.Name)
	case m.Solver == nil && (m.Metric == nil || m.Pattern == nil):
		return fmt.Errorf("%w %q: needs a metric and a pattern, or a solver", ErrMethod, m.Name)
	case m.Solver != nil && m.Refiner != nil:
		return fmt.Errorf("%w %q: %s refines masks chosen by a metric; a solver updates the weights its mask was chosen for",
			ErrMethod, m.Name, m.Refiner.Name())
	}
	return nil
}

// NeedsStats reports whether the method uses calibration statistics (and so a dense
// forward pass over calibration windows).
func (m Method) NeedsStats() bool {
	if m.Solver != nil {
		return true
	}
	return m.Metric != nil && m.Metric.NeedsStats()
}

func (m Method) needsHessian() bool { return m.Solver != nil && m.Solver.NeedsHessian() }

// CalibInfo describes where the calibration windows came from (for the report).
type CalibInfo struct {
	Source  string `json:"source"`
	Kind    string `json:"kind"` // "text" or "tokens"
	Windows int    `json:"windows"`
	SeqLen  int    `json:"seqlen"`
	Seed    int64  `json:"seed"`
}

// Options configure a pruning run.
type Options struct {
	Model    Model
	Source   *safetensors.Set // the model's weights (for export: dtypes, untouched tensors)
	ModelDir string           // source directory (its config/tokenizer files are copied)
	Calib    [][]int32        // calibration windows [N][T]; may be nil when the method needs none
	CalibInfo
	Method Method
	Target Target
	// Ignore lists patterns of tensor names that stay dense: a matching linear is copied
	// byte for byte, like the tensors that are never pruned.
	Ignore []*regexp.Regexp
	// SparsityOf, when set, gives a tensor's own unstructured sparsity (a user's sparsity
	// file); ok false keeps the run's (Target.Sparsity, or the Allocator's). source says
	// where the value came from, for the report.
	SparsityOf func(layer int, tensor string) (sparsity float64, source string, ok bool)
	// Allocator, when set, chooses each layer's unstructured sparsity from a dense pre-pass.
	Allocator Allocator
	// RunningStats gathers the statistics of the inputs a refiner reads (and their SumSq)
	// with the reference's float32 running averages instead of float64 sums: DSnoT's own
	// runs accumulate that way, and its refinement amplifies last-bit differences.
	RunningStats bool
	// RunKey names the settings outside Method and Target that change the output (e.g. the
	// statistics mode of mixture-of-experts layers); it is part of the checkpoint's
	// fingerprint, so a work directory is only resumed by a run with the same settings.
	RunKey string

	OutDir        string
	Force         bool  // replace an existing OutDir
	MaxShardBytes int64 // 0: one file
	// ActivationBudget is the number of bytes of activations kept in RAM; beyond it the
	// activation store is a memory-mapped scratch file in ScratchDir.
	ActivationBudget int64
	ScratchDir       string
	// ChunkTokens bounds the rows a block processes at once (a multiple of seqlen is used).
	ChunkTokens int
	// WorkDir, when set, receives a checkpoint after every finished layer (see checkpoint.go);
	// Resume continues from the checkpoint found there. The work directory is emptied on success.
	WorkDir string
	Resume  bool
	// MemoryLimit, when positive, is the anonymous memory the run may use: a tensor whose
	// pruning needs more (SparseGPT's Hessian on a huge layer) is refused before anything
	// is written (CheckMemory).
	MemoryLimit int64
	// ExtraBytes is added to the free space the output needs (e.g. a packed copy).
	ExtraBytes int64

	// Progress, when set, is called after every step of the run (a chunk of a forward
	// pass, a pruned tensor) with the label of the layer in progress and the steps done out
	// of the total; the engine itself never draws.
	Progress func(label string, done, total int64)
	Logger   *slog.Logger
	// Finish, when set, runs after all tensors are written and before the output directory
	// is moved into place: dir is the temporary output directory.
	Finish func(dir string, rep *Report) error
}
