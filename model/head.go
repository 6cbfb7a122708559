package model

import (
	"fmt"
	"math"
	"sync"

	"github.com/wanda-go/wanda/model/arch"
	"github.com/wanda-go/wanda/tensor"
)

// Embed writes the embeddings of ids into dst ([len(ids), hidden]), widening only the
// rows it needs from the (memory-mapped) embed_tokens tensor, and scales them by
// √hidden for the architectures that do (in float32, as transformers computing in
// float32). An id outside [0, vocab) gives ErrTokenRange.
func (m *Model) Embed(ids []int32, dst []float32) error {
	V, H := m.cfg.VocabSize, m.cfg.HiddenSize
	w, err := m.Weights().Mat(arch.EmbedTokens)
	if err != nil {
		return err
	}
	if w.Rows != V || w.Cols != H {
		return fmt.Errorf("tensor %q: shape [%d %d], config implies [%d %d]: %w", arch.EmbedTokens, w.Rows, w.Cols, V, H, ErrShape)
	}
	if len(dst) < len(ids)*H {
		panic(fmt.Sprintf("model: Embed: dst has %d values, need %d×%d", len(dst), len(ids), H))
	}
	for i, id := range ids {
		if id < 0 || int(id) >= V {
			return fmt.Errorf("position %d: id %d, vocab_size %d: %w", i, id, V, ErrTokenRange)
		}
		w.RowsF32(dst[i*H:(i+1)*H], int(id), int(id)+1)
	}
	if m.arch.EmbedScale {
		s := float32(math.Sqrt(float64(H)))
		for i := range dst[:len(ids)*H] {
			dst[i] *= s
		}
	}
	return nil
}

// Head is the model's output: the final RMSNorm and lm_head ([vocab, hidden] in its
// stored dtype, a view of the source; embed_tokens when the embeddings are tied), and
// for Gemma 2 the final-logit soft-cap.
//
// A Head is safe for concurrent use; NLL calls are serialised because they share the
// head's logits buffers.
type Head struct {
	Hidden, Vocab int
	eps           float32
	norm          []float32
	w             tensor.Mat
	softcap       float32

	mu        sync.Mutex
	x, logits []float32
	nll       []float64
}

// Head loads the final norm (widened) and the lm_head view.
func (m *Model) Head() (*Head, error) {
	c := m.cfg
	wts := m.Weights()
	nm, err := wts.Mat(arch.FinalNorm)
	if err != nil {
		return nil, err
	}
	if nm.Rows != 1 || nm.Cols != c.HiddenSize {
		return nil, fmt.Errorf("tensor %q: shape [%d %d], config implies [%d]: %w", arch.FinalNorm, nm.Rows, nm.Cols, c.HiddenSize, ErrShape)
	}
	norm := make([]float32, c.HiddenSize)
	nm.RowsF32(norm, 0, 1)
	if m.arch.Norm == arch.NormOnePlus {
		for i := range norm {
			norm[i] = 1 + norm[i]
		}
	}
	name := arch.LMHead
	if c.TieWordEmbeddings {
		name = arch.EmbedTokens
	}
	w, err := wts.Mat(name)
	if err != nil {
		return nil, err
	}
	if w.Rows != c.VocabSize || w.Cols != c.HiddenSize {
		return nil, fmt.Errorf("tensor %q: shape [%d %d], config implies [%d %d]: %w", name, w.Rows, w.Cols, c.VocabSize, c.HiddenSize, ErrShape)
	}
	return &Head{Hidden: c.HiddenSize, Vocab: c.VocabSize, eps: float32(c.RMSNormEps), norm: norm, w: w,
		softcap: float32(c.FinalLogitSoftcapping)}, nil
}

// Logits computes dst[rows, vocab] = lm_head(norm(h)) (soft-capped when the model caps
// its logits) for h [rows, hidden]. h is not modified.
func (hd *Head) Logits(h []float32, rows int, dst []float32) {
	H, V := hd.Hidden, hd.Vocab
	if len(h) < rows*H || len(dst) < rows*V {
		panic(fmt.Sprintf("model: Logits: h %d, dst %d values for %d rows", len(h), len(dst), rows))
	}
	x := make([]float32, rows*H)
	rmsNorm(x, h, hd.norm, rows, H, hd.eps)
	tensor.MatMulTMat(dst, V, x, rows, H, hd.w)
	if hd.softcap > 0 {
		softcap(dst[:rows*V], hd.softcap)
	}
}

// nllChunkRows is how many rows of logits NLL computes at once (about 32 MiB).
func (hd *Head) nllChunkRows() int {
	return max(16, min(4096, (8<<20)/max(hd.Vocab, 1)))
}

// NLL returns, for each of nseq sequences of seqlen tokens (h is [nseq*seqlen, hidden],
// ids [nseq*seqlen]), the mean negative log-likelihood of its seqlen-1 next-token
// predictions: mean over t < seqlen-1 of logsumexp(logits_t) − logits_t[ids_{t+1}],
// with logits in float32 and the log-sum-exp in float64. Logits are computed a chunk
// of rows at a time from the stored-dtype lm_head, so neither seqlen×vocab nor a
// float32 lm_head is ever materialised. It panics on an id outside the vocabulary
// (Embed rejects those first) or seqlen < 2.
func (hd *Head) NLL(h []float32, ids []int32, nseq, seqlen int) []float64 {
	H, V := hd.Hidden, hd.Vocab
	if seqlen < 2 || len(h) < nseq*seqlen*H || len(ids) < nseq*seqlen {
		panic(fmt.Sprintf("model: NLL: h %d values, ids %d for %d×%d (seqlen must be ≥ 2)", len(h), len(ids), nseq, seqlen))
	}
	for _, id := range ids[:nseq*seqlen] {
		if id < 0 || int(id) >= V {
			panic(fmt.Sprintf("model: NLL: id %d outside vocabulary %d", id, V))
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
		tensor.ParallelFor(n, 64, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				p := c0 + i
				r := (p/pred)*seqlen + p%pred
				tensor.RMSNorm(x[i*H:(i+1)*H], h[r*H:(r+1)*H], hd.norm, 1, H, hd.eps)
			}
		})
		tensor.MatMulTMat(logits[:n*V], V, x[:n*H], n, H, hd.w)
		tensor.ParallelFor(n, 16, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				p := c0 + i
				r := (p/pred)*seqlen + p%pred
				tgt := ids[r+1]
				row := logits[i*V : (i+1)*V]
				if hd.softcap > 0 {
					softcap(row, hd.softcap)
				}
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
