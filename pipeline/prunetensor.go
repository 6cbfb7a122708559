package pipeline

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	mmap "github.com/edsrzf/mmap-go"

	"github.com/wanda-go/wanda/format/dtype"
	"github.com/wanda-go/wanda/tensor"
)

// TensorJob is one linear layer's weight to prune.
type TensorJob struct {
	// W is the source weight [out, in] in its stored dtype (F32, BF16 or F16), usually a view
	// of a memory-mapped file. It is only read.
	W      tensor.Mat
	Stats  *Stats // nil when the method needs none
	Target Target
	Info   LayerInfo
	// Out receives the pruned tensor's bytes in W.DType, row-major, offset 0 = element [0, 0].
	// Blocks of rows are written once each, in no particular order and possibly concurrently
	// (disjoint ranges, as io.WriterAt allows). After an error Out may hold some blocks.
	Out io.WriterAt
	// BlockRows is the number of rows a goroutine works on at once; 0 chooses it so that the
	// blocks in flight hold about 8 MiB of fp32 weights together.
	BlockRows int
	// ScratchDir holds the file-backed scratch maps (unlinked as soon as they are mapped)
	// that a stage needing the whole tensor's scores gets; os.TempDir() when empty.
	ScratchDir string
}

// TensorResult is the outcome of PruneTensor.
type TensorResult struct {
	// Zeros is the number of exact +0.0 values written (pruned entries, and weights that
	// were or became zero).
	Zeros int64
}

// PruneTensor prunes one tensor with method m and writes it to job.Out. The result is byte
// for byte what the whole-tensor path gives: for a metric and a pattern, scores =
// Metric.Score(W in fp32), mask = Pattern.Select(scores), W·(1−mask); for a solver, the
// weights and mask Solver.Solve leaves; then the values are rounded to the stored dtype and
// every zero is written as +0.0.
//
// Memory: with a RowMetric and a RowPattern that streams the target (the built-ins, except
// unstructured per-column selection) the anonymous memory is a few row blocks per goroutine,
// independent of the tensor's size (see TensorMemory); the scores are recomputed in every
// pass rather than kept. Otherwise the whole tensor's scores (and, for a metric that is not
// a RowMetric, its fp32 weights) live in scratch maps in job.ScratchDir, and the mask in a
// bitset (1 bit per weight). A solver gets the whole weight in fp32 in anonymous memory, as
// it updates it in place: check TensorMemory against the memory limit before the run
// (CheckMemory).
func PruneTensor(ctx context.Context, m Method, job TensorJob) (TensorResult, error) {
	info := job.Info
	if err := job.W.Check(); err != nil {
		return TensorResult{}, fmt.Errorf("%s: %w: %w", info, ErrShape, err)
	}
	if job.Out == nil {
		return TensorResult{}, fmt.Errorf("%s: PruneTensor without an output", info)
	}
	p := &tensorRun{job: job, R: job.W.Rows, C: job.W.Cols, es: job.W.DType.Size()}
	p.block, p.workers = blockShape(p.R, p.C, job.BlockRows)
	defer p.close()
	var err error
	switch {
	case m.Solver != nil:
		err = p.solve(ctx, m.Solver)
	case m.Metric != nil && m.Pattern != nil:
		if m.Refiner != nil && m.Refiner.Applies(info) {
			p.refiner = m.Refiner
		}
		err = p.scored(ctx, m.Metric, m.Pattern)
	default:
		err = fmt.Errorf("%s: method %q has neither a solver nor a metric and a pattern", info, m.Name)
	}
	if err != nil {
		return TensorResult{}, err
	}
	return TensorResult{Zeros: p.zeros.Load()}, nil
}

// blockBudget is the fp32 bytes of weights that the default row blocks in flight hold together.
const blockBudget = 8 << 20

// blockShape chooses the rows per block and the number of goroutines for a rows×cols tensor.
// The default gives each goroutine about four blocks to balance the load, at least 16 Ki
// weights per block (per-block costs stay small) and at most blockBudget bytes in flight.
func blockShape(rows, cols, blockRows int) (block, workers int) {
	workers = max(1, min(tensor.Threads(), runtime.GOMAXPROCS(0)))
	block = blockRows
	if block <= 0 {
		c := max(cols, 1)
		most := max(1, blockBudget/(4*c*workers))
		want := max(ceilDiv(rows, 4*workers), ceilDiv(16<<10, c))
		block = min(most, want)
	}
	block = max(1, min(block, rows))
	workers = max(1, min(workers, ceilDiv(rows, block)))
	return block, workers
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

// tensorRun is one PruneTensor call.
type tensorRun struct {
	job            TensorJob
	R, C, es       int
	block, workers int
	wks            []*blockWorker

	scorer  RowScorer
	refiner Refiner   // the method's refiner when it applies to this tensor
	wholeW  []float32 // the whole weight in fp32, when a stage needs it (scratch or solver)
	wholeS  []float32 // the whole scores, when a stage needs them (scratch or the metric's)

	zeros atomic.Int64
	mu    sync.Mutex
	maps  []mmap.MMap
}

// blockWorker is one goroutine's buffers, reused from block to block.
type blockWorker struct {
	w, s []float32
	mask Mask
	out  []byte
}

// workerPool keeps block buffers from one tensor to the next.
var workerPool = sync.Pool{New: func() any { return new(blockWorker) }}

func (p *tensorRun) close() {
	for _, wk := range p.wks {
		workerPool.Put(wk)
	}
	p.wks = nil
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, m := range p.maps {
		m.Unmap()
	}
	p.maps = nil
}

// forBlocks calls fn for every row block [r0, r1) of the tensor, from up to p.workers
// goroutines, each with its own blockWorker. On failure no new block is started and the error
// of the lowest failing block is returned, so that errors do not depend on scheduling (every
// block before it has been started, and runs to its end).
func (p *tensorRun) forBlocks(ctx context.Context, fn func(wk *blockWorker, r0, r1 int) error) error {
	nb := ceilDiv(p.R, p.block)
	if nb == 0 {
		return nil
	}
	nw := min(p.workers, nb)
	for len(p.wks) < nw {
		p.wks = append(p.wks, workerPool.Get().(*blockWorker))
	}
	var (
		next    atomic.Int64
		stop    atomic.Bool
		mu      sync.Mutex
		errAt   = -1
		errBest error
		wg      sync.WaitGroup
	)
	run := func(wk *blockWorker) {
		for !stop.Load() {
			b := int(next.Add(1) - 1)
			if b >= nb {
				return
			}
			err := ctx.Err()
			if err != nil {
				err = fmt.Errorf("%s: %w", p.job.Info, err)
			} else {
				r0 := b * p.block
				err = fn(wk, r0, min(p.R, r0+p.block))
			}
			if err != nil {
				mu.Lock()
				if errAt < 0 || b < errAt {
					errAt, errBest = b, err
				}
				mu.Unlock()
				stop.Store(true)
				return
			}
		}
	}
	for _, wk := range p.wks[1:nw] {
		wg.Go(func() { run(wk) })
	}
	run(p.wks[0])
	wg.Wait()
	return errBest
}

func grow32(b []float32, n int) []float32 {
	if cap(b) < n {
		return make([]float32, n)
	}
	return b[:n]
}

// weights returns rows [r0, r1) in fp32: a view of the whole fp32 weight when there is one,
// else widened into wk's buffer.
func (p *tensorRun) weights(wk *blockWorker, r0, r1 int) Matrix {
	C := p.C
	if p.wholeW != nil {
		return Matrix{Rows: r1 - r0, Cols: C, Data: p.wholeW[r0*C : r1*C]}
	}
	wk.w = grow32(wk.w, (r1-r0)*C)
	p.job.W.RowsF32(wk.w, r0, r1)
	return Matrix{Rows: r1 - r0, Cols: C, Data: wk.w}
}

// scores returns the fp32 weights and the scores of rows [r0, r1).
func (p *tensorRun) scores(wk *blockWorker, r0, r1 int, metric string) (w, s Matrix, err error) {
	C := p.C
	if p.wholeS != nil {
		s = Matrix{Rows: r1 - r0, Cols: C, Data: p.wholeS[r0*C : r1*C]}
		if p.wholeW != nil {
			w = p.weights(wk, r0, r1)
		}
		return w, s, nil
	}
	w = p.weights(wk, r0, r1)
	wk.s = grow32(wk.s, (r1-r0)*C)
	s = Matrix{Rows: r1 - r0, Cols: C, Data: wk.s}
	if err := p.scorer.ScoreRows(s, w, r0); err != nil {
		return w, s, stageError(p.job.Info, metric, err)
	}
	return w, s, nil
}

// blockMask returns wk's mask resized to rows×C, all kept.
func (wk *blockWorker) blockMask(rows, cols int) *Mask {
	n := (rows*cols + 63) / 64
	if cap(wk.mask.Bits) < n {
		wk.mask.Bits = make([]uint64, n)
	}
	wk.mask.Rows, wk.mask.Cols, wk.mask.Bits = rows, cols, wk.mask.Bits[:n]
	clear(wk.mask.Bits)
	return &wk.mask
}

// finish prunes, rounds and writes rows [r0, r0+w.Rows): entry k of the block is pruned when
// bit base+k of bits is set. Each value goes through the whole-tensor path's steps in its
// order: zeroed in fp32 when pruned, rounded to the stored dtype, counted and written as +0.0
// when zero, encoded. w.Data is used as scratch.
func (p *tensorRun) finish(wk *blockWorker, w Matrix, r0 int, bits []uint64, base int) error {
	d := w.Data
	n := len(d) * p.es
	if cap(wk.out) < n {
		wk.out = make([]byte, n)
	}
	out := wk.out[:n]
	pruned := func(k int) bool {
		q := base + k
		return bits[q>>6]>>(uint(q)&63)&1 != 0
	}
	zeros := 0
	switch dt := p.job.W.DType; dt {
	case dtype.BF16:
		for k, v := range d {
			if pruned(k) {
				v = 0
			}
			// Rounding is h = F32ToBF16(v); the value BF16ToF32(h) encodes back to h itself
			// (it is a bfloat16, or the quiet NaN h stands for), so h is what gets written.
			h := dtype.F32ToBF16(v)
			if dtype.BF16ToF32(h) == 0 {
				h = 0 // -0.0 -> +0.0
				zeros++
			}
			o := out[2*k : 2*k+2 : 2*k+2]
			o[0], o[1] = byte(h), byte(h>>8)
		}
	case dtype.F16:
		for k, v := range d {
			if pruned(k) {
				v = 0
			}
			v = dtype.F16ToF32(dtype.F32ToF16(v))
			if v == 0 {
				v = 0
				zeros++
			}
			h := dtype.F32ToF16(v)
			o := out[2*k : 2*k+2 : 2*k+2]
			o[0], o[1] = byte(h), byte(h>>8)
		}
	default: // F32 (W.Check allows nothing else)
		for k, v := range d {
			if pruned(k) {
				v = 0
			}
			if v == 0 {
				v = 0
				zeros++
			}
			binary.LittleEndian.PutUint32(out[4*k:], math.Float32bits(v))
		}
	}
	k, err := p.job.Out.WriteAt(out, int64(r0)*int64(p.C)*int64(p.es))
	if err == nil && k != n {
		err = io.ErrShortWrite
	}
	if err != nil {
		return fmt.Errorf("%s: write rows [%d, %d): %w", p.job.Info, r0, r0+w.Rows, err)
	}
	p.zeros.Add(int64(zeros))
	return nil
}

// scored prunes with a metric and a pattern: streamed in row blocks when the metric is a
// RowMetric and the pattern can select row blocks for the target, otherwise from the whole
// tensor's scores in a scratch map.
func (p *tensorRun) scored(ctx context.Context, met Metric, pat Pattern) error {
	info, t, R, C := p.job.Info, p.job.Target, p.R, p.C
	mname, pname := "metric "+met.Name(), "pattern "+pat.Name()
	if rm, ok := met.(RowMetric); ok {
		sc, err := rm.RowScorer(p.job.Stats, C, info)
		if err != nil {
			return stageError(info, mname, err)
		}
		p.scorer = sc
	}
	var sel RowSelector
	if rp, ok := pat.(RowPattern); ok {
		s, err := rp.RowSelector(t, R, C, info, RowEnv{Scratch: p.scratch})
		if err != nil {
			return stageError(info, pname, err)
		}
		sel = s
	}
	if p.scorer != nil && sel != nil {
		return p.streamed(ctx, sel, mname, pname)
	}
	if err := p.wholeScores(ctx, met, mname); err != nil {
		return err
	}
	return p.selectWhole(ctx, pat, pname)
}

// streamed runs the selector's read passes over the row blocks' scores, then selects,
// refines and writes each block.
func (p *tensorRun) streamed(ctx context.Context, sel RowSelector, mname, pname string) error {
	info, C := p.job.Info, p.C
	for sel.NextPass() {
		err := p.forBlocks(ctx, func(wk *blockWorker, r0, r1 int) error {
			_, s, err := p.scores(wk, r0, r1, mname)
			if err != nil {
				return err
			}
			if err := sel.Observe(s, r0); err != nil {
				return stageError(info, pname, err)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if err := sel.EndPass(ctx); err != nil {
			return stageError(info, pname, err)
		}
	}
	return p.forBlocks(ctx, func(wk *blockWorker, r0, r1 int) error {
		w, s, err := p.scores(wk, r0, r1, mname)
		if err != nil {
			return err
		}
		if w.Data == nil {
			w = p.weights(wk, r0, r1)
		}
		m := wk.blockMask(r1-r0, C)
		if err := sel.SelectRows(m, s, r0); err != nil {
			return stageError(info, pname, err)
		}
		if err := p.refine(ctx, w, m, r0); err != nil {
			return err
		}
		return p.finish(wk, w, r0, m.Bits, 0)
	})
}

// wholeScores puts the whole tensor's scores in p.wholeS: from the metric's Score on the
// whole weight (widened into a scratch map) when it is not a RowMetric, else scored block by
// block into a scratch map.
func (p *tensorRun) wholeScores(ctx context.Context, met Metric, mname string) error {
	info, R, C := p.job.Info, p.R, p.C
	if p.scorer == nil {
		wf, err := p.scratch(R * C)
		if err != nil {
			return err
		}
		err = p.forBlocks(ctx, func(_ *blockWorker, r0, r1 int) error {
			p.job.W.RowsF32(wf[r0*C:r1*C], r0, r1)
			return nil
		})
		if err != nil {
			return err
		}
		p.wholeW = wf
		scores, err := met.Score(ctx, Matrix{Rows: R, Cols: C, Data: wf}, p.job.Stats, info)
		if err != nil {
			return stageError(info, mname, err)
		}
		if scores.Rows != R || scores.Cols != C || len(scores.Data) != R*C {
			return fmt.Errorf("%s: %s: %w: scores %dx%d for weight %dx%d", info, mname, ErrShape, scores.Rows, scores.Cols, R, C)
		}
		p.wholeS = scores.Data
		return nil
	}
	sf, err := p.scratch(R * C)
	if err != nil {
		return err
	}
	err = p.forBlocks(ctx, func(wk *blockWorker, r0, r1 int) error {
		w := p.weights(wk, r0, r1)
		dst := Matrix{Rows: r1 - r0, Cols: C, Data: sf[r0*C : r1*C]}
		if err := p.scorer.ScoreRows(dst, w, r0); err != nil {
			return stageError(info, mname, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	p.wholeS = sf
	return nil
}

// selectWhole has the pattern choose the whole mask from p.wholeS, then refines and writes
// the row blocks.
func (p *tensorRun) selectWhole(ctx context.Context, pat Pattern, pname string) error {
	info, t, R, C := p.job.Info, p.job.Target, p.R, p.C
	mask, err := pat.Select(ctx, Matrix{Rows: R, Cols: C, Data: p.wholeS}, t, info)
	if err != nil {
		return stageError(info, pname, err)
	}
	if mask == nil || mask.Rows != R || mask.Cols != C || len(mask.Bits) != (R*C+63)/64 {
		return fmt.Errorf("%s: %s: %w: mask of the wrong shape", info, pname, ErrShape)
	}
	p.wholeS = nil // the scores are no longer needed; the mask pass reads only weights
	return p.forBlocks(ctx, func(wk *blockWorker, r0, r1 int) error {
		w := p.weights(wk, r0, r1)
		if p.refiner == nil {
			return p.finish(wk, w, r0, mask.Bits, r0*C)
		}
		m := wk.blockMask(r1-r0, C)
		for k := range (r1 - r0) * C {
			if q := r0*C + k; mask.Bits[q>>6]>>(uint(q)&63)&1 != 0 {
				m.Bits[k>>6] |= 1 << (uint(k) & 63)
			}
		}
		if err := p.refine(ctx, w, m, r0); err != nil {
			return err
		}
		return p.finish(wk, w, r0, m.Bits, 0)
	})
}

// refine lets the refiner (if any) change the mask m of rows [r0, r0+w.Rows), whose dense
// fp32 weights are w.
func (p *tensorRun) refine(ctx context.Context, w Matrix, m *Mask, r0 int) error {
	if p.refiner == nil {
		return nil
	}
	if err := p.refiner.Refine(ctx, w, m, p.job.Stats, p.job.Target, p.job.Info); err != nil {
		return stageError(p.job.Info, "refine "+p.refiner.Name(), fmt.Errorf("rows [%d, %d): %w", r0, r0+w.Rows, err))
	}
	return nil
}

// solve prunes with a solver: the whole weight in fp32 (anonymous memory: the solver updates
// it in place), then the rows are rounded and written block by block.
func (p *tensorRun) solve(ctx context.Context, s Solver) error {
	info, R, C := p.job.Info, p.R, p.C
	w := make([]float32, R*C)
	err := p.forBlocks(ctx, func(_ *blockWorker, r0, r1 int) error {
		p.job.W.RowsF32(w[r0*C:r1*C], r0, r1)
		return nil
	})
	if err != nil {
		return err
	}
	p.wholeW = w
	mask, err := s.Solve(ctx, Matrix{Rows: R, Cols: C, Data: w}, p.job.Stats, p.job.Target, info)
	if err != nil {
		return stageError(info, s.Name(), err)
	}
	if mask == nil || mask.Rows != R || mask.Cols != C || len(mask.Bits) != (R*C+63)/64 {
		return fmt.Errorf("%s: %s: %w: solver returned a mask of the wrong shape", info, s.Name(), ErrShape)
	}
	return p.forBlocks(ctx, func(wk *blockWorker, r0, r1 int) error {
		return p.finish(wk, p.weights(wk, r0, r1), r0, mask.Bits, r0*C)
	})
}

// scratch returns n zeroed float32s in a file-backed shared map in the scratch directory;
// the file is unlinked as soon as it is mapped and the map is released when PruneTensor
// returns. Its pages are page cache (written back to the file under memory pressure), not
// anonymous memory.
func (p *tensorRun) scratch(n int) ([]float32, error) {
	if n == 0 {
		return []float32{}, nil
	}
	info := p.job.Info
	dir := p.job.ScratchDir
	if dir == "" {
		dir = os.TempDir()
	}
	size := int64(n) * 4
	if err := requireFree(dir, size); err != nil {
		return nil, fmt.Errorf("%w for %s: %w", ErrScratch, info, err)
	}
	f, err := os.CreateTemp(dir, "wanda-prune-*.f32")
	if err != nil {
		return nil, fmt.Errorf("%w for %s: %w", ErrScratch, info, err)
	}
	defer f.Close()
	defer os.Remove(f.Name())
	if err := f.Truncate(size); err != nil {
		return nil, fmt.Errorf("%w for %s: size %s to %d bytes: %w", ErrScratch, info, f.Name(), size, err)
	}
	m, err := mmap.Map(f, mmap.RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("%w for %s: map %s: %w", ErrScratch, info, f.Name(), err)
	}
	p.mu.Lock()
	p.maps = append(p.maps, m)
	p.mu.Unlock()
	return unsafe.Slice((*float32)(unsafe.Pointer(&m[0])), n), nil
}

// stageError gives a stage's error its context, the tensor and the stage, adding only what
// the message does not already say (the built-in stages name both; a plugin's error or a
// cancellation may name neither).
func stageError(info LayerInfo, stage string, err error) error {
	msg := err.Error()
	hasInfo, hasStage := strings.Contains(msg, info.String()), strings.Contains(msg, stage)
	switch {
	case hasInfo && hasStage:
		return err
	case hasInfo:
		return fmt.Errorf("%s: %w", stage, err)
	case hasStage:
		return fmt.Errorf("%s: %w", info, err)
	}
	return fmt.Errorf("%s: %s: %w", info, stage, err)
}
