package model

import (
	"fmt"
	"slices"
	"sync"

	"github.com/wanda-go/wanda/format/config"
	"github.com/wanda-go/wanda/format/dtype"
	"github.com/wanda-go/wanda/format/safetensors"
	"github.com/wanda-go/wanda/tensor"
)

// Embed writes the embeddings of ids into dst ([len(ids), hidden]), widening
// only the rows it needs from the (memory-mapped) embed_tokens tensor. An id
// outside [0, vocab) gives ErrTokenRange.
func Embed(set *safetensors.Set, cfg *config.Config, ids []int32, dst []float32) error {
	return EmbedFrom(SetSource(set), cfg, ids, dst)
}

// EmbedFrom is Embed reading from any Source (whose embed_tokens Bytes
// should be a view, not a copy, for this to stay cheap).
func EmbedFrom(src Source, cfg *config.Config, ids []int32, dst []float32) error {
	name := config.EmbedTokens
	dt, shape, err := lookup(src, name)
	if err != nil {
		return err
	}
	V, H := cfg.VocabSize, cfg.HiddenSize
	if want := []int64{int64(V), int64(H)}; !slices.Equal(shape, want) {
		return fmt.Errorf("tensor %q: shape %v, config implies %v: %w", name, shape, want, ErrShape)
	}
	if !dt.IsFloat() {
		return fmt.Errorf("tensor %q: dtype %s is not a float type: %w", name, dt, ErrUnsupported)
	}
	if len(dst) < len(ids)*H {
		panic(fmt.Sprintf("forward: Embed: dst has %d values, need %d×%d", len(dst), len(ids), H))
	}
	raw, err := src.Bytes(name)
	if err != nil {
		return err
	}
	rb := H * dt.Size()
	if len(raw) != V*rb {
		return fmt.Errorf("tensor %q: %d bytes for shape %v: %w", name, len(raw), shape, ErrShape)
	}
	for i, id := range ids {
		if id < 0 || int(id) >= V {
			return fmt.Errorf("position %d: id %d, vocab_size %d: %w", i, id, V, ErrTokenRange)
		}
		if err := dtype.ToFloat32(dst[i*H:(i+1)*H], raw[int(id)*rb:(int(id)+1)*rb], dt); err != nil {
			return fmt.Errorf("tensor %q: %w", name, err)
		}
	}
	return nil
}

// Head is the model's output: the final RMSNorm and lm_head ([vocab, hidden]
// float32; embed_tokens when the embeddings are tied).
//
// A Head is safe for concurrent use; NLL calls are serialised because they
// share the head's logits buffers.
type Head struct {
	Hidden, Vocab int
	eps           float32
	norm          []float32
	w             []float32

	mu        sync.Mutex
	x, logits []float32
	nll       []float64
}

// LoadHead loads the final norm and lm_head (embed_tokens when
// cfg.TieWordEmbeddings) widened to float32, releasing their mapped pages.
func LoadHead(set *safetensors.Set, cfg *config.Config) (*Head, error) {
	return LoadHeadFrom(SetSource(set), cfg)
}

// LoadHeadFrom is LoadHead reading from any Source.
func LoadHeadFrom(src Source, cfg *config.Config) (*Head, error) {
	V, H := cfg.VocabSize, cfg.HiddenSize
	get := func(name string, want []int64) ([]float32, error) {
		dt, shape, err := lookup(src, name)
		if err != nil {
			return nil, err
		}
		defer src.Release(name)
		if !slices.Equal(shape, want) {
			return nil, fmt.Errorf("tensor %q: shape %v, config implies %v: %w", name, shape, want, ErrShape)
		}
		out := make([]float32, numelOf(shape))
		if err := readFloat32(src, name, dt, out); err != nil {
			return nil, err
		}
		return out, nil
	}
	norm, err := get(config.FinalNorm, []int64{int64(H)})
	if err != nil {
		return nil, err
	}
	name := config.LMHead
	if cfg.TieWordEmbeddings {
		name = config.EmbedTokens
	}
	w, err := get(name, []int64{int64(V), int64(H)})
	if err != nil {
		return nil, err
	}
	return NewHead(cfg, norm, w), nil
}

// NewHead builds a head from the final norm weight [hidden] and lm_head
// [vocab, hidden] (both kept, not copied).
func NewHead(cfg *config.Config, norm, lmHead []float32) *Head {
	V, H := cfg.VocabSize, cfg.HiddenSize
	if len(norm) != H || len(lmHead) != V*H {
		panic(fmt.Sprintf("forward: NewHead: norm %d (want %d), lm_head %d (want %d×%d)", len(norm), H, len(lmHead), V, H))
	}
	return &Head{Hidden: H, Vocab: V, eps: float32(cfg.RMSNormEps), norm: norm, w: lmHead}
}

// Logits computes dst[rows, vocab] = lm_head(norm(h)) for h [rows, hidden].
// h is not modified.
func (hd *Head) Logits(h []float32, rows int, dst []float32) {
	H, V := hd.Hidden, hd.Vocab
	if len(h) < rows*H || len(dst) < rows*V {
		panic(fmt.Sprintf("forward: Logits: h %d, dst %d values for %d rows", len(h), len(dst), rows))
	}
	x := make([]float32, rows*H)
	rmsNorm(x, h, hd.norm, rows, H, hd.eps)
	tensor.MatMulT(dst, x, hd.w, rows, V, H)
}

// nllChunkRows is how many rows of logits NLL computes at once (about 32 MiB).
func (hd *Head) nllChunkRows() int {
	return max(16, min(4096, (8<<20)/max(hd.Vocab, 1)))
}

// NLL returns, for each of nseq sequences of seqlen tokens (h is
// [nseq*seqlen, hidden], ids [nseq*seqlen]), the mean negative log-likelihood
// of its seqlen-1 next-token predictions: mean over t < seqlen-1 of
// logsumexp(logits_t) − logits_t[ids_{t+1}], with logits in float32 and the
// log-sum-exp in float64. Logits are computed a chunk of rows at a time, so
// seqlen×vocab is never materialised. It panics on an id outside the
// vocabulary (Embed rejects those first) or seqlen < 2.
func (hd *Head) NLL(h []float32, ids []int32, nseq, seqlen int) []float64 {
	H, V := hd.Hidden, hd.Vocab
	if seqlen < 2 || len(h) < nseq*seqlen*H || len(ids) < nseq*seqlen {
		panic(fmt.Sprintf("forward: NLL: h %d values, ids %d for %d×%d (seqlen must be ≥ 2)", len(h), len(ids), nseq, seqlen))
	}
	for _, id := range ids[:nseq*seqlen] {
		if id < 0 || int(id) >= V {
			panic(fmt.Sprintf("forward: NLL: id %d outside vocabulary %d", id, V))
		}
	}
	pred := seqlen - 1
	total := nseq * pred
	R := min(hd.nllChunkRows(), total)
	hd.mu.Lock()
	defer hd.mu.Unlock()
	x := grow(&hd.x, R*H)
	logits := grow(&hd.logits, R*V)
	if cap(hd.nll) < R {
		hd.nll = make([]float64, R)
	}
	nll := hd.nll[:R]
	sums := make([]float64, nseq)
	for c0 := 0; c0 < total; c0 += R {
		n := min(R, total-c0)
		// Gather and normalise the rows that predict something.
		parallelFor(n, 64, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				p := c0 + i
				r := (p/pred)*seqlen + p%pred
				tensor.RMSNorm(x[i*H:(i+1)*H], h[r*H:(r+1)*H], hd.norm, 1, H, hd.eps)
			}
		})
		tensor.MatMulT(logits[:n*V], x[:n*H], hd.w, n, V, H)
		parallelFor(n, 16, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				p := c0 + i
				r := (p/pred)*seqlen + p%pred
				tgt := ids[r+1]
				row := logits[i*V : (i+1)*V]
				t := float64(row[tgt])
				nll[i] = logSumExpInPlace(row) - t
			}
		})
		for i := range n {
			sums[(c0+i)/pred] += nll[i]
		}
	}
	for i := range sums {
		sums[i] /= float64(pred)
	}
	return sums
}
