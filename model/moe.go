package model

import (
	"math"

	"github.com/wanda-go/wanda/format/config"
	"github.com/wanda-go/wanda/model/arch"
	"github.com/wanda-go/wanda/pipeline"
	"github.com/wanda-go/wanda/tensor"
)

// moeWeights are a sparse layer's router, experts and shared expert (views of the
// stored weights, like every linear of a block).
type moeWeights struct {
	router     tensor.Mat // [experts, hidden]
	experts    []*mlpWeights
	topK       int
	normTopK   bool
	shared     *mlpWeights // or nil
	sharedGate tensor.Mat  // [1, hidden] with shared

	// tokens counts the routed tokens per expert over the ForwardStats calls.
	tokens []int64
}

// moeScratch holds the buffers of the experts: all of them are sized by the rows of
// one forward pass (or the rows routed to one expert), never by the experts' count
// times anything, so a sparse layer needs the memory of a dense one.
type moeScratch struct {
	logits []float32 // [rows, experts] router logits
	sel    []int32   // [rows, topK] chosen experts
	wts    []float32 // [rows, topK] their routing weights
	rowsOf [][]int32 // per expert: the rows routed to it, ascending
	wOf    [][]float32
	out    []float32 // [rows, hidden] the layer's output
	gu     []float32 // [rows, 2·inter] one expert's gate|up products
	xe     []float32 // [routed, max(hidden, inter)] gathered rows
	ye     []float32 // [routed, hidden] an expert's output
	gate   []float32 // [rows] shared-expert gate logits
}

func moeFloatsPerToken(cfg *config.Config) int {
	I := max(cfg.MoEIntermediateSize, cfg.SharedExpertIntermediateSize)
	return cfg.NumExperts + 2*cfg.NumExpertsPerTok + 2*cfg.HiddenSize + 2*I + max(cfg.HiddenSize, I) + 1
}

func (m *Model) loadMoE(e *arch.MoE, mat func(string) (tensor.Mat, error), loadMLP func(*arch.MLP) (*mlpWeights, error)) (*moeWeights, error) {
	w := &moeWeights{topK: e.TopK, normTopK: e.NormTopK, tokens: make([]int64, len(e.Experts))}
	var err error
	if w.router, err = mat(e.Router); err != nil {
		return nil, err
	}
	for i := range e.Experts {
		d, err := loadMLP(&e.Experts[i])
		if err != nil {
			return nil, err
		}
		w.experts = append(w.experts, d)
	}
	if e.Shared != nil {
		if w.shared, err = loadMLP(e.Shared); err != nil {
			return nil, err
		}
		if w.sharedGate, err = mat(e.SharedGate); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// ExpertTokens returns, for a sparse layer, the number of routed tokens (token, expert
// assignments) per expert counted over the ForwardStats calls since the block was
// loaded; nil for a dense layer.
func (b *Block) ExpertTokens() []int64 {
	if b.moe == nil {
		return nil
	}
	return append([]int64(nil), b.moe.tokens...)
}

// route computes the router's choice for every row of x: softmax of the logits in
// float32 (exponentials in float64), the topK largest probabilities (ties to the lower
// expert), renormalised to sum 1 when normTopK; then the rows and weights per expert.
func (b *Block) route(x []float32, rows int, s *moeScratch) {
	w := b.moe
	E, K, H := len(w.experts), w.topK, b.hidden
	logits := grow(&s.logits, rows*E)
	tensor.MatMulTMat(logits, E, x, rows, H, w.router)
	if cap(s.sel) < rows*K {
		s.sel = make([]int32, rows*K)
	}
	sel := s.sel[:rows*K]
	wts := grow(&s.wts, rows*K)
	tensor.ParallelFor(rows, 64, func(lo, hi int) {
		p := make([]float64, E)
		for r := lo; r < hi; r++ {
			l := logits[r*E : (r+1)*E]
			mx := maxGo(l)
			var sum float64
			for i, v := range l {
				p[i] = math.Exp(float64(v - mx))
				sum += p[i]
			}
			rs, rw := sel[r*K:(r+1)*K], wts[r*K:(r+1)*K]
			var total float32
			for j := range K {
				best := -1
				for i := range E {
					if best >= 0 && !(p[i] > p[best]) {
						continue
					}
					taken := false
					for _, t := range rs[:j] {
						if int(t) == i {
							taken = true
							break
						}
					}
					if !taken {
						best = i
					}
				}
				rs[j] = int32(best)
				rw[j] = float32(p[best] / sum)
				total += rw[j]
			}
			if w.normTopK {
				for j := range rw {
					rw[j] /= total
				}
			}
		}
	})
	for len(s.rowsOf) < E {
		s.rowsOf = append(s.rowsOf, nil)
		s.wOf = append(s.wOf, nil)
	}
	for e := range E {
		s.rowsOf[e], s.wOf[e] = s.rowsOf[e][:0], s.wOf[e][:0]
	}
	for r := range rows {
		for j := range K {
			e := sel[r*K+j]
			s.rowsOf[e] = append(s.rowsOf[e], int32(r))
			s.wOf[e] = append(s.wOf[e], wts[r*K+j])
		}
	}
}

// moeForward computes the experts on x [rows, hidden] (the MLP input) and returns the
// layer's MLP output [rows, hidden], or nil with statsOnly. Experts run one at a time on
// the rows routed to them, and their weighted outputs are added in expert order. For
// the statistics (tap not nil) with MoEStatsAll every expert also runs on every row,
// its act(gate)·up tapped over all rows; with MoEStatsRouted an expert's taps see only
// its routed rows, and an expert no row was routed to is never tapped.
func (b *Block) moeForward(x []float32, rows int, tap pipeline.Tap, statsOnly bool) []float32 {
	w := b.moe
	s := &b.m.scratch.moe
	H := b.hidden
	b.route(x, rows, s)
	if statsOnly {
		for e := range w.experts {
			w.tokens[e] += int64(len(s.rowsOf[e]))
		}
	}
	all := tap != nil && b.m.opt.MoEStats == MoEStatsAll
	var out []float32
	if !statsOnly {
		out = grow(&s.out, rows*H)
		clear(out)
	}
	for e, d := range w.experts {
		idx, wts := s.rowsOf[e], s.wOf[e]
		n, I := len(idx), d.inter
		var act []float32
		if all {
			gu := grow(&s.gu, rows*2*I)
			tensor.MatMulTMat(gu, 2*I, x, rows, H, d.gu...)
			full := b.activate(gu, rows, I)
			tap(b.m.tapOf(arch.InExpertAct, e), full, rows, I)
			if statsOnly || n == 0 {
				continue
			}
			act = grow(&s.xe, n*I)
			gatherRows(act, full, idx, I)
		} else {
			if n == 0 {
				continue
			}
			xe := grow(&s.xe, n*H)
			gatherRows(xe, x, idx, H)
			if tap != nil {
				tap(b.m.tapOf(arch.InExpert, e), xe, n, H)
			}
			gu := grow(&s.gu, n*2*I)
			tensor.MatMulTMat(gu, 2*I, xe, n, H, d.gu...)
			act = b.activate(gu, n, I)
			if tap != nil {
				tap(b.m.tapOf(arch.InExpertAct, e), act, n, I)
			}
			if statsOnly {
				continue
			}
		}
		ye := grow(&s.ye, n*H)
		tensor.MatMulTMat(ye, H, act, n, I, d.down)
		tensor.ParallelFor(n, 64, func(lo, hi int) {
			for j := lo; j < hi; j++ {
				o := out[int(idx[j])*H : (int(idx[j])+1)*H]
				y := ye[j*H : (j+1)*H]
				wj := wts[j]
				for i := range o {
					o[i] += y[i] * wj
				}
			}
		})
	}
	if w.shared == nil {
		return out
	}
	// The shared expert sees every row; its output is gated by sigmoid(shared_expert_gate·x).
	var gate []float32
	if !statsOnly {
		gate = grow(&s.gate, rows)
		tensor.MatMulTMat(gate, 1, x, rows, H, w.sharedGate)
	}
	y := b.mlpForward(w.shared, x, rows, tap, tapDown, statsOnly, &s.gu)
	if statsOnly {
		return nil
	}
	tensor.ParallelFor(rows, 64, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			g := sigmoid(gate[r])
			o, yr := out[r*H:(r+1)*H], y[r*H:(r+1)*H]
			for i := range o {
				o[i] += g * yr[i]
			}
		}
	})
	return out
}

// gatherRows copies rows idx of src ([*, cols]) into dst ([len(idx), cols]).
func gatherRows(dst, src []float32, idx []int32, cols int) {
	tensor.ParallelFor(len(idx), 256, func(lo, hi int) {
		for j := lo; j < hi; j++ {
			r := int(idx[j])
			copy(dst[j*cols:(j+1)*cols], src[r*cols:(r+1)*cols])
		}
	})
}
