package eval

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/wanda-go/wanda/format/config"
	"github.com/wanda-go/wanda/format/safetensors"
	"github.com/wanda-go/wanda/model"
	"github.com/wanda-go/wanda/model/arch"
)

// DefaultMemoryBudget is the default activation budget per chunk (512 MiB).
const DefaultMemoryBudget = 512 << 20

// Sentinel errors.
var (
	// ErrTooFewTokens: fewer tokens than one window.
	ErrTooFewTokens = errors.New("fewer tokens than one window")
	// ErrBadOptions: an invalid option (seqlen < 2, negative counts).
	ErrBadOptions = errors.New("invalid evaluation options")
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
			prog.Done += int64(n)
			prog.Layer = l
			report()
		}
		if err := ctx.Err(); err != nil {
			return Result{}, err
		}
		res.WindowNLL = append(res.WindowNLL, head.NLL(hc, cids, n, T)...)
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
	res.Seconds = time.Since(start).Seconds()
	if res.Seconds > 0 {
		res.TokensPerSecond = float64(res.Tokens) / res.Seconds
	}
	return res, nil
}
