package eval

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/wanda-go/wanda/format/config"
	"github.com/wanda-go/wanda/format/dtype"
	"github.com/wanda-go/wanda/format/safetensors"
	"github.com/wanda-go/wanda/model"
	"github.com/wanda-go/wanda/model/arch"
)

// DefaultMemoryBudget is the default activation budget per chunk (512 MiB).
const DefaultMemoryBudget = 512 << 20

// Sentinel errors.
var (
	// ErrTooFewTokens: fewer tokens than one window.
	ErrTooFewTokens = errors.New("eval: fewer tokens than one window")
	// ErrBadOptions: an invalid option (seqlen < 2, negative counts).
	ErrBadOptions = errors.New("eval: invalid options")
	// ErrNonFinite: the model produced NaN or ±Inf (activations, a window's
	// loss, or the perplexity); the error names where, and the first tensor
	// holding NaN or ±Inf when there is one.
	ErrNonFinite = errors.New("eval: non-finite values")
)

// Progress reports how far an evaluation is. Done and Total count
// "window-steps": each window goes through NumLayers blocks and the head, so
// Total = Windows·(NumLayers+1).
type Progress struct {
	Done, Total   int64
	WindowsDone   int // windows whose NLL is known
	Windows       int
	Chunk, Chunks int // the chunk being processed (0-based) and how many
	Layer         int // the block just finished; NumLayers for the head
	Elapsed       time.Duration
}

// Options control Perplexity.
type Options struct {
	// SeqLen is the window length in tokens (≥ 2). Required.
	SeqLen int
	// MaxWindows, when > 0, evaluates only the first MaxWindows windows.
	MaxWindows int
	// MemoryBudget bounds the activations of one chunk in bytes
	// (0 = DefaultMemoryBudget). A chunk always holds at least one window.
	MemoryBudget int64
	// ChunkWindows, when > 0, fixes the number of windows per chunk instead.
	ChunkWindows int
	// Progress, when non-nil, is called after every block of every chunk.
	Progress func(Progress)
}

// Result is the outcome of Perplexity.
type Result struct {
	PPL     float64 // exp(MeanNLL)
	MeanNLL float64 // mean over windows of the window mean NLL
	// WindowNLL is each window's mean NLL over its SeqLen-1 predictions.
	WindowNLL       []float64
	Windows         int // windows evaluated
	Tokens          int // Windows·SeqLen
	SeqLen          int
	Chunks          int // chunks the windows were processed in
	Seconds         float64
	TokensPerSecond float64
}

// NumWindows is the number of non-overlapping windows of seqlen tokens in
// n tokens (the remainder is dropped).
func NumWindows(n, seqlen int) int {
	if seqlen <= 0 {
		return 0
	}
	return n / seqlen
}

// ChunkWindows is how many windows of seqlen tokens fit a chunk whose
// activations (hidden states plus the forward scratch buffers) stay within
// budget bytes; at least 1.
func ChunkWindows(cfg *config.Config, seqlen int, budget int64) int {
	if budget <= 0 {
		budget = DefaultMemoryBudget
	}
	perToken := int64(cfg.HiddenSize+model.ScratchFloatsPerToken(cfg)) * 4
	return int(max(1, budget/(perToken*int64(seqlen))))
}

// Perplexity evaluates the model in set/cfg on ids (the tokenized text, BOS
// included) with the reference protocol. It checks ctx between blocks.
func Perplexity(ctx context.Context, set *safetensors.Set, cfg *config.Config, ids []int32, opt Options) (Result, error) {
	return PerplexityFrom(ctx, model.SetSource(set), cfg, ids, opt)
}

// PerplexityFrom is Perplexity reading the weights from any model.Source,
// such as transform's Reader over a packed (compressed-tensors) directory.
func PerplexityFrom(ctx context.Context, src model.Source, cfg *config.Config, ids []int32, opt Options) (Result, error) {
	T := opt.SeqLen
	if T < 2 {
		return Result{}, fmt.Errorf("seqlen %d: %w (want ≥ 2)", T, ErrBadOptions)
	}
	if opt.MaxWindows < 0 || opt.ChunkWindows < 0 || opt.MemoryBudget < 0 {
		return Result{}, fmt.Errorf("negative max-windows, chunk or memory budget: %w", ErrBadOptions)
	}
	nw := NumWindows(len(ids), T)
	if nw == 0 {
		return Result{}, fmt.Errorf("%d tokens, seqlen %d: %w", len(ids), T, ErrTooFewTokens)
	}
	if opt.MaxWindows > 0 {
		nw = min(nw, opt.MaxWindows)
	}
	for i, id := range ids[:nw*T] {
		if id < 0 || int(id) >= cfg.VocabSize {
			return Result{}, fmt.Errorf("token %d: id %d, vocab_size %d: %w", i, id, cfg.VocabSize, model.ErrTokenRange)
		}
	}
	cw := opt.ChunkWindows
	if cw == 0 {
		cw = ChunkWindows(cfg, T, opt.MemoryBudget)
	}
	cw = min(cw, nw)
	chunks := (nw + cw - 1) / cw

	start := time.Now()
	L := cfg.NumLayers
	res := Result{Windows: nw, Tokens: nw * T, SeqLen: T, Chunks: chunks, WindowNLL: make([]float64, 0, nw)}
	prog := Progress{Total: int64(nw) * int64(L+1), Windows: nw, Chunks: chunks}
	report := func() {
		if opt.Progress != nil {
			prog.Elapsed = time.Since(start)
			opt.Progress(prog)
		}
	}
	report()

	H := cfg.HiddenSize
	h := make([]float32, cw*T*H)
	m, err := model.NewFrom(src, cfg, model.Options{})
	if err != nil {
		return Result{}, err
	}
	head, err := m.Head()
	if err != nil {
		return Result{}, err
	}
	for c := range chunks {
		w0 := c * cw
		n := min(cw, nw-w0)
		cids := ids[w0*T : (w0+n)*T]
		hc := h[:n*T*H]
		if err := m.Embed(cids, hc); err != nil {
			return Result{}, err
		}
		src.Release(arch.EmbedTokens)
		if k := firstNonFinite(hc); k >= 0 {
			t := k / H
			return Result{}, nonFiniteErr(src, []string{arch.EmbedTokens}, fmt.Sprintf("the embedding of token id %d (window %d, position %d) is %v",
				cids[t], w0+t/T, t%T, hc[k]))
		}
		prog.Chunk = c
		for l := range L {
			if err := ctx.Err(); err != nil {
				return Result{}, err
			}
			blk, err := m.LoadBlock(l, m.Weights())
			if err != nil {
				return Result{}, err
			}
			blk.Forward(hc, n, T, nil)
			m.ReleaseBlock(l)
			if k := firstNonFinite(hc); k >= 0 {
				t := k / H
				return Result{}, nonFiniteErr(src, layerTensors(m.Arch().Tensors(cfg), l), fmt.Sprintf("layer %d produced %v activations (window %d, position %d)",
					l, hc[k], w0+t/T, t%T))
			}
			prog.Done += int64(n)
			prog.Layer = l
			report()
		}
		if err := ctx.Err(); err != nil {
			return Result{}, err
		}
		nll := head.NLL(hc, cids, n, T)
		for i, v := range nll {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				head := []string{config.FinalNorm, config.LMHead}
				if cfg.TieWordEmbeddings {
					head[1] = config.EmbedTokens
				}
				return Result{}, nonFiniteErr(src, head, fmt.Sprintf("window %d has a %v loss (final norm and lm_head)", w0+i, v))
			}
		}
		res.WindowNLL = append(res.WindowNLL, nll...)
		prog.Done += int64(n)
		prog.Layer = L
		prog.WindowsDone += n
		report()
	}
	var sum float64
	for _, v := range res.WindowNLL {
		sum += v
	}
	res.MeanNLL = sum / float64(nw)
	res.PPL = math.Exp(res.MeanNLL)
	if math.IsInf(res.PPL, 0) || math.IsNaN(res.PPL) {
		return Result{}, fmt.Errorf("perplexity exp(%g) is %v: %w", res.MeanNLL, res.PPL, ErrNonFinite)
	}
	res.Seconds = time.Since(start).Seconds()
	if res.Seconds > 0 {
		res.TokensPerSecond = float64(res.Tokens) / res.Seconds
	}
	return res, nil
}

// firstNonFinite returns the index of the first NaN or ±Inf of v, or -1.
func firstNonFinite(v []float32) int {
	for k, x := range v {
		if x-x != 0 { // NaN and ±Inf only
			return k
		}
	}
	return -1
}

// layerTensors names the tensors of decoder layer l among all of a model's.
func layerTensors(all []config.TensorSpec, l int) []string {
	prefix := fmt.Sprintf("model.layers.%d.", l)
	var names []string
	for _, t := range all {
		if strings.HasPrefix(t.Name, prefix) {
			names = append(names, t.Name)
		}
	}
	return names
}

// nonFiniteErr is the error for non-finite values found at where: it names the
// first of the tensors names that holds NaN or ±Inf, or says that they are all
// finite (the values overflowed in the computation).
func nonFiniteErr(src model.Source, names []string, where string) error {
	for _, name := range names {
		if what := scanTensor(src, name); what != "" {
			return fmt.Errorf("%s: tensor %s %s: %w", where, name, what, ErrNonFinite)
		}
	}
	return fmt.Errorf("%s; the weights used there are finite, so the computation overflowed float32: %w", where, ErrNonFinite)
}

// scanTensor describes the NaN and ±Inf of tensor name ("holds NaN at [i, j]
// (n non-finite values)"), or returns "" when it has none or cannot be read.
func scanTensor(src model.Source, name string) string {
	dt, ok := src.DType(name)
	shape, ok2 := src.Shape(name)
	if !ok || !ok2 || !dt.IsFloat() {
		return ""
	}
	b, err := src.Bytes(name)
	if err != nil {
		return ""
	}
	defer src.Release(name)
	cols := int64(1)
	if len(shape) > 1 {
		cols = shape[len(shape)-1]
	}
	size := dt.Size()
	buf := make([]float32, 1<<16)
	var first int64 = -1
	var firstV float32
	var n int64
	for off := 0; off < len(b); {
		m := min(len(buf), (len(b)-off)/size)
		if m == 0 {
			break
		}
		if dtype.ToFloat32(buf[:m], b[off:off+m*size], dt) != nil {
			return ""
		}
		for i, x := range buf[:m] {
			if x-x != 0 {
				if n == 0 {
					first, firstV = int64(off/size+i), x
				}
				n++
			}
		}
		off += m * size
	}
	if n == 0 {
		return ""
	}
	at := fmt.Sprintf("[%d]", first)
	if len(shape) > 1 {
		at = fmt.Sprintf("[%d, %d]", first/cols, first%cols)
	}
	return fmt.Sprintf("holds %v at %s (%d non-finite values)", firstV, at, n)
}
