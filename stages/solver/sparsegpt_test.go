package solver

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wanda-go/wanda/pipeline"
	"github.com/wanda-go/wanda/stages/stagetest"
	"github.com/wanda-go/wanda/tensor"
)

var info = pipeline.LayerInfo{Layer: 2, Tensor: "model.layers.2.self_attn.q_proj.weight", Part: "q_proj"}

func TestConformance(t *testing.T) {
	targets := []pipeline.Target{{Sparsity: 0.5}, {Sparsity: 0.7}, {Sparsity: 0.5, Group: pipeline.GroupMatrix}, {N: 2, M: 4}, {N: 4, M: 8}}
	stagetest.TestSolver(t, NewSparseGPT(Options{}), targets, stagetest.StrictErrors())
	// A block size that does not divide the width, and one of 1 column.
	stagetest.TestSolver(t, NewSparseGPT(Options{BlockSize: 48}), []pipeline.Target{{Sparsity: 0.6}, {N: 2, M: 4}}, stagetest.StrictErrors())
}

// problem draws W [rows, cols] and inputs X [tokens, cols] with correlated features, and
// returns the Hessian (2/N)·XᵀX for nseq sequences.
func problem(r *rand.Rand, rows, cols, tokens, nseq int) (pipeline.Matrix, []float64, *pipeline.Stats) {
	const factors = 6
	load := make([]float64, factors*cols)
	for k := range load {
		load[k] = r.NormFloat64()
	}
	x := make([]float64, tokens*cols)
	f := make([]float64, factors)
	for tk := range tokens {
		for q := range f {
			f[q] = r.NormFloat64()
		}
		for j := range cols {
			v := r.NormFloat64() * 0.5
			for q := range f {
				v += f[q] * load[q*cols+j]
			}
			x[tk*cols+j] = float64(float32(v * (1 + float64(j%7))))
		}
	}
	h := make([]float64, cols*cols)
	for a := range cols {
		for b := 0; b <= a; b++ {
			var s float64
			for tk := range tokens {
				s += x[tk*cols+a] * x[tk*cols+b]
			}
			s *= 2 / float64(nseq)
			h[a*cols+b], h[b*cols+a] = s, s
		}
	}
	w := pipeline.NewMatrix(rows, cols)
	for k := range w.Data {
		w.Data[k] = float32(r.NormFloat64() * 0.05)
	}
	return w, x, &pipeline.Stats{Hessian: h, N: nseq, Tokens: tokens}
}

// refFasterprune is a direct float64 transcription of lib/sparsegpt.py fasterprune, with
// its own linear algebra: Gauss-Jordan inverse and Cholesky of the inverse.
func refFasterprune(w0 pipeline.Matrix, h0 []float64, sparsity float64, pn, pm, blocksize int, percdamp float64) ([][]float64, [][]bool) {
	rows, cols := w0.Rows, w0.Cols
	W := make([][]float64, rows)
	for i := range W {
		W[i] = make([]float64, cols)
		for j := range cols {
			W[i][j] = float64(w0.Data[i*cols+j])
		}
	}
	H := make([][]float64, cols)
	for i := range H {
		H[i] = slices.Clone(h0[i*cols : (i+1)*cols])
	}
	// dead = diag(H) == 0; H[dead, dead] = 1; W[:, dead] = 0
	for i := range cols {
		if H[i][i] == 0 {
			H[i][i] = 1
			for r := range rows {
				W[r][i] = 0
			}
		}
	}
	var mean float64
	for i := range cols {
		mean += H[i][i]
	}
	damp := percdamp * mean / float64(cols)
	for i := range cols {
		H[i][i] += damp
	}
	Hinv := upperChol(gaussJordanInverse(H))

	mask := make([][]bool, rows)
	for i := range mask {
		mask[i] = make([]bool, cols)
	}
	for i1 := 0; i1 < cols; i1 += blocksize {
		i2 := min(i1+blocksize, cols)
		count := i2 - i1
		W1 := make([][]float64, rows)
		Q1 := make([][]float64, rows)
		Err1 := make([][]float64, rows)
		mask1 := make([][]bool, rows)
		for r := range rows {
			W1[r] = slices.Clone(W[r][i1:i2])
			Q1[r] = make([]float64, count)
			Err1[r] = make([]float64, count)
			mask1[r] = make([]bool, count)
		}
		d := func(i int) float64 { return Hinv[i1+i][i1+i] }
		if pn == 0 {
			var tmp []float64
			for r := range rows {
				for i := range count {
					tmp = append(tmp, W1[r][i]*W1[r][i]/(d(i)*d(i)))
				}
			}
			sorted := slices.Clone(tmp)
			slices.Sort(sorted)
			thresh := sorted[int(float64(len(tmp))*sparsity)]
			for r := range rows {
				for i := range count {
					mask1[r][i] = tmp[r*count+i] <= thresh
				}
			}
		}
		for i := range count {
			if pn != 0 && i%pm == 0 {
				for r := range rows {
					// topk(tmp, pn, largest=False) over columns i..i+pm
					type kv struct {
						v float64
						j int
					}
					var g []kv
					for j := i; j < min(i+pm, count); j++ {
						g = append(g, kv{W1[r][j] * W1[r][j] / (d(j) * d(j)), j})
					}
					slices.SortStableFunc(g, func(a, b kv) int {
						switch {
						case a.v < b.v:
							return -1
						case a.v > b.v:
							return 1
						}
						return 0
					})
					for _, e := range g[:pn] {
						mask1[r][e.j] = true
					}
				}
			}
			for r := range rows {
				w := W1[r][i]
				q := w
				if mask1[r][i] {
					q = 0
				}
				Q1[r][i] = q
				err1 := (w - q) / d(i)
				for j := i; j < count; j++ {
					W1[r][j] -= err1 * Hinv[i1+i][i1+j]
				}
				Err1[r][i] = err1
			}
		}
		for r := range rows {
			copy(W[r][i1:i2], Q1[r])
			copy(mask[r][i1:i2], mask1[r])
			for j := i2; j < cols; j++ {
				var s float64
				for i := range count {
					s += Err1[r][i] * Hinv[i1+i][j]
				}
				W[r][j] -= s
			}
		}
	}
	return W, mask
}

func gaussJordanInverse(a [][]float64) [][]float64 {
	n := len(a)
	m := make([][]float64, n)
	for i := range m {
		m[i] = make([]float64, 2*n)
		copy(m[i], a[i])
		m[i][n+i] = 1
	}
	for c := range n {
		p := c
		for r := c + 1; r < n; r++ {
			if math.Abs(m[r][c]) > math.Abs(m[p][c]) {
				p = r
			}
		}
		m[c], m[p] = m[p], m[c]
		inv := 1 / m[c][c]
		for j := range m[c] {
			m[c][j] *= inv
		}
		for r := range n {
			if r != c && m[r][c] != 0 {
				f := m[r][c]
				for j := range m[r] {
					m[r][j] -= f * m[c][j]
				}
			}
		}
	}
	out := make([][]float64, n)
	for i := range out {
		out[i] = m[i][n:]
	}
	return out
}

// upperChol returns U upper triangular with UᵀU = a (torch.linalg.cholesky(a, upper=True)),
// from the symmetrised a.
func upperChol(a [][]float64) [][]float64 {
	n := len(a)
	u := make([][]float64, n)
	for i := range u {
		u[i] = make([]float64, n)
	}
	for i := range n {
		s := (a[i][i] + a[i][i]) / 2
		for p := range i {
			s -= u[p][i] * u[p][i]
		}
		u[i][i] = math.Sqrt(s)
		for j := i + 1; j < n; j++ {
			s := (a[i][j] + a[j][i]) / 2
			for p := range i {
				s -= u[p][i] * u[p][j]
			}
			u[i][j] = s / u[i][i]
		}
	}
	return u
}

func TestMatchesFloat64Reference(t *testing.T) {
	cases := []struct {
		name      string
		rows      int
		cols      int
		t         pipeline.Target
		blocksize int
		dead      int
	}{
		{"50%", 48, 320, pipeline.Target{Sparsity: 0.5}, 128, -1},
		{"70% bs64 dead", 40, 256, pipeline.Target{Sparsity: 0.7}, 64, 77},
		{"2:4", 48, 320, pipeline.Target{N: 2, M: 4}, 128, -1},
		{"4:8 dead", 32, 256, pipeline.Target{N: 4, M: 8}, 128, 130},
	}
	for ci, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(ci), 99))
			w, _, st := problem(r, tc.rows, tc.cols, 2*tc.cols, 8)
			if tc.dead >= 0 {
				for j := range tc.cols {
					st.Hessian[tc.dead*tc.cols+j], st.Hessian[j*tc.cols+tc.dead] = 0, 0
				}
			}
			wantW, wantM := refFasterprune(w, st.Hessian, tc.t.Sparsity, tc.t.N, tc.t.M, tc.blocksize, 0.01)
			got := pipeline.Matrix{Rows: w.Rows, Cols: w.Cols, Data: slices.Clone(w.Data)}
			m, err := NewSparseGPT(Options{BlockSize: tc.blocksize}).Solve(context.Background(), got, st, tc.t, info)
			if err != nil {
				t.Fatal(err)
			}
			maskDiff := 0
			var num, den float64
			for i := range w.Rows {
				for j := range w.Cols {
					if m.Get(i, j) != wantM[i][j] {
						maskDiff++
					}
					g, want := float64(got.Data[i*w.Cols+j]), wantW[i][j]
					num += (g - want) * (g - want)
					den += want * want
				}
			}
			rms := math.Sqrt(den / float64(w.Rows*w.Cols))
			// Per entry: relative error, with entries far below the typical magnitude (which
			// come from cancellation) measured against rms/10 instead.
			var maxRel float64
			for i := range w.Rows {
				for j := range w.Cols {
					g, want := float64(got.Data[i*w.Cols+j]), wantW[i][j]
					if want == 0 && g != 0 {
						t.Errorf("[%d,%d] = %g, reference 0", i, j, g)
					}
					maxRel = max(maxRel, math.Abs(g-want)/max(math.Abs(want), rms/10))
				}
			}
			rel := math.Sqrt(num / den)
			t.Logf("mask differences %d of %d, pruned %d, ||ΔW||/||W|| = %.3g, max |Δw|/max(|w|, rms/10) = %.3g",
				maskDiff, w.Rows*w.Cols, m.Count(), rel, maxRel)
			if maskDiff != 0 {
				t.Errorf("%d mask entries differ from the float64 reference", maskDiff)
			}
			if rel > 1e-5 || maxRel > 1e-4 {
				t.Errorf("weights differ from the float64 reference: ||ΔW||/||W|| = %.3g, max entry error %.3g", rel, maxRel)
			}
		})
	}
}

// TestReconstructionBeatsMagnitude: SparseGPT's ||(W - W')X|| must be far below magnitude
// pruning (and Wanda-free masking) with the same number of pruned weights.
func TestReconstructionBeatsMagnitude(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	w, x, st := problem(r, 64, 256, 1024, 8)
	for _, tg := range []pipeline.Target{{Sparsity: 0.5}, {N: 2, M: 4}} {
		got := pipeline.Matrix{Rows: w.Rows, Cols: w.Cols, Data: slices.Clone(w.Data)}
		m, err := NewSparseGPT(Options{}).Solve(context.Background(), got, st, tg, info)
		if err != nil {
			t.Fatal(err)
		}
		k := m.Count()
		// Magnitude: the k smallest |W| of the whole matrix, zeroed, no update.
		idx := make([]int, len(w.Data))
		for i := range idx {
			idx[i] = i
		}
		slices.SortStableFunc(idx, func(a, b int) int {
			return cmpF(math.Abs(float64(w.Data[a])), math.Abs(float64(w.Data[b])))
		})
		mag := pipeline.Matrix{Rows: w.Rows, Cols: w.Cols, Data: slices.Clone(w.Data)}
		for _, q := range idx[:k] {
			mag.Data[q] = 0
		}
		// SparseGPT's own mask without its update.
		masked := pipeline.Matrix{Rows: w.Rows, Cols: w.Cols, Data: slices.Clone(w.Data)}
		pipeline.ApplyMask(m, masked)
		eS, eM, eMask := outErr(w, got, x), outErr(w, mag, x), outErr(w, masked, x)
		t.Logf("%v: ||ΔW·X||: sparsegpt %.4g, magnitude %.4g (ratio %.3f), same mask without update %.4g", tg, eS, eM, eS/eM, eMask)
		if eS > 0.5*eM {
			t.Errorf("%v: SparseGPT error %.4g is not much smaller than magnitude's %.4g", tg, eS, eM)
		}
	}
}

func cmpF(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func outErr(a, b pipeline.Matrix, x []float64) float64 {
	C := a.Cols
	var sum float64
	d := make([]float64, C)
	for i := range a.Rows {
		for j := range C {
			d[j] = float64(a.Data[i*C+j]) - float64(b.Data[i*C+j])
		}
		for tk := 0; tk < len(x)/C; tk++ {
			var y float64
			for j, v := range d {
				y += v * x[tk*C+j]
			}
			sum += y * y
		}
	}
	return math.Sqrt(sum)
}

func TestNotPositiveDefinite(t *testing.T) {
	w := pipeline.Matrix{Rows: 1, Cols: 2, Data: []float32{1, 2}}
	st := &pipeline.Stats{Hessian: []float64{1, 2, 2, 1}}
	_, err := NewSparseGPT(Options{}).Solve(context.Background(), w, st, pipeline.Target{Sparsity: 0.5}, info)
	if !errors.Is(err, pipeline.ErrStageFailed) || !errors.Is(err, tensor.ErrNotPositiveDefinite) || !strings.Contains(err.Error(), info.Tensor) {
		t.Fatalf("indefinite Hessian: %v", err)
	}
	if w.Data[0] != 1 || w.Data[1] != 2 {
		t.Errorf("W modified on failure: %v", w.Data)
	}
}

func TestInPlaceHessian(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 3))
	w, _, st := problem(r, 8, 64, 256, 2)
	a := pipeline.Matrix{Rows: w.Rows, Cols: w.Cols, Data: slices.Clone(w.Data)}
	b := pipeline.Matrix{Rows: w.Rows, Cols: w.Cols, Data: slices.Clone(w.Data)}
	st2 := &pipeline.Stats{Hessian: slices.Clone(st.Hessian)}
	tg := pipeline.Target{Sparsity: 0.5}
	ma, err := NewSparseGPT(Options{}).Solve(context.Background(), a, st, tg, info)
	if err != nil {
		t.Fatal(err)
	}
	mb, err := NewSparseGPT(Options{InPlaceHessian: true}).Solve(context.Background(), b, st2, tg, info)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ma.Bits, mb.Bits) || !slices.Equal(a.Data, b.Data) {
		t.Errorf("in-place Hessian changed the result")
	}
	if slices.Equal(st.Hessian, st2.Hessian) {
		t.Errorf("in-place Hessian was not used in place")
	}
	if o := NewSparseGPT(Options{}).Options(); o.BlockSize != 128 || o.PercDamp != 0.01 {
		t.Errorf("defaults %+v", o)
	}
}

func TestCancelled(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 4))
	w, _, st := problem(r, 4, 32, 64, 2)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := NewSparseGPT(Options{}).Solve(ctx, w, st, pipeline.Target{Sparsity: 0.5}, info); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

// cpuTime returns the process's user+system CPU time (reported next to ns/op because the
// build machine is shared and its wall times depend on the load).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func BenchmarkSparseGPT(b *testing.B) {
	const rows, cols, tokens = 1024, 1024, 2048
	r := rand.New(rand.NewPCG(1, 1))
	x := make([]float32, tokens*cols)
	for k := range x {
		x[k] = float32(r.NormFloat64())
	}
	for k := range x {
		if k%cols > 0 {
			x[k] += 0.5 * x[k-1] // correlated neighbours
		}
	}
	hf := make([]float32, cols*cols)
	tensor.Sgemm(true, false, cols, cols, tokens, 2.0/16, x, cols, x, cols, 0, hf, cols)
	h := make([]float64, cols*cols)
	for k, v := range hf {
		h[k] = float64(v)
	}
	w0 := make([]float32, rows*cols)
	for k := range w0 {
		w0[k] = float32(r.NormFloat64() * 0.02)
	}
	s := NewSparseGPT(Options{InPlaceHessian: true})
	for _, tg := range []pipeline.Target{{Sparsity: 0.5}, {N: 2, M: 4}} {
		b.Run(tg.String(), func(b *testing.B) {
			w := pipeline.Matrix{Rows: rows, Cols: cols, Data: make([]float32, rows*cols)}
			hh := make([]float64, len(h))
			start, n := cpuTime(), 0
			for b.Loop() {
				copy(w.Data, w0)
				copy(hh, h)
				if _, err := s.Solve(context.Background(), w, &pipeline.Stats{Hessian: hh}, tg, info); err != nil {
					b.Fatal(err)
				}
				n++
			}
			b.ReportMetric(float64(cpuTime()-start)/1e6/float64(n), "cpu-ms/op")
		})
	}
	b.Run("CholeskyInverseUpper", func(b *testing.B) {
		hh := make([]float64, len(h))
		start, n := cpuTime(), 0
		defer func() { b.ReportMetric(float64(cpuTime()-start)/1e6/float64(n), "cpu-ms/op") }()
		for b.Loop() {
			n++
			copy(hh, h)
			for i := range cols {
				hh[i*cols+i] += 0.01
			}
			if err := tensor.CholeskyInverseUpper(hh, cols); err != nil {
				b.Fatal(err)
			}
		}
	})
}
