package refine

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/wanda-go/wanda/pipeline"
)

// calibInputs returns nseq sequences of T tokens × C channels whose channel means differ
// from sequence to sequence (so the variance around each sequence's mean differs clearly from
// the variance around the overall mean).
func calibInputs(r *rand.Rand, nseq, T, C int) []float32 {
	x := make([]float32, nseq*T*C)
	for s := range nseq {
		for j := range C {
			mu := r.NormFloat64() * 3
			sd := math.Exp(r.NormFloat64())
			for t := range T {
				x[(s*T+t)*C+j] = float32(mu + sd*r.NormFloat64())
			}
		}
	}
	return x
}

// dsnotRunning transcribes DSnoT's WrappedGPT.add_batch (lib/layerwrapper.py) for one
// sequence per call, in float32 as torch runs it: per-sequence mean and biased variance, then
// var = (var·ntokens + var_inp·num)/(ntokens + num), sum_metric_row and scaler_row as running
// averages over the number of sequences.
func dsnotRunning(x []float32, nseq, T, C int) (sumsq, sum, variance []float32) {
	sumsq, sum, variance = make([]float32, C), make([]float32, C), make([]float32, C)
	nsamples, ntokens := 0, 0
	for s := range nseq {
		seq := x[s*T*C : (s+1)*T*C]
		varInp := make([]float32, C)
		colSum := make([]float32, C)
		colSq := make([]float32, C)
		for j := range C {
			var m, q, sq float64
			for t := range T {
				m += float64(seq[t*C+j])
			}
			m /= float64(T)
			for t := range T {
				dv := float64(seq[t*C+j]) - m
				q += dv * dv
				sq += float64(seq[t*C+j]) * float64(seq[t*C+j])
			}
			varInp[j] = float32(q / float64(T))
			colSum[j] = float32(m * float64(T))
			colSq[j] = float32(sq)
		}
		for j := range C {
			if ntokens == 0 {
				variance[j] = varInp[j]
			} else {
				variance[j] = (variance[j]*float32(ntokens) + varInp[j]*float32(T)) / float32(ntokens+T)
			}
		}
		ntokens += T
		f := float32(float64(nsamples) / float64(nsamples+1))
		nsamples++
		for j := range C {
			sumsq[j] *= f
			sum[j] *= f
			sumsq[j] += colSq[j] / float32(nsamples)
			sum[j] += colSum[j] / float32(nsamples)
		}
	}
	return sumsq, sum, variance
}

// TestAccumulator checks Stats against the definitions computed directly, against DSnoT's
// float32 running averages (which approximate the same numbers), and that chunking and
// merging do not change the result.
func TestAccumulator(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	const nseq, T, C = 12, 37, 9
	x := calibInputs(r, nseq, T, C)
	all := NeedSumSq | NeedSum | NeedVar

	a := NewAccumulator(C, T, all)
	if err := a.Add(x, nseq); err != nil {
		t.Fatal(err)
	}
	st := a.Stats()
	if st.N != nseq || st.Tokens != nseq*T {
		t.Errorf("N %d Tokens %d", st.N, st.Tokens)
	}
	for j := range C {
		var s, q, within, total float64
		for k := j; k < len(x); k += C {
			v := float64(x[k])
			s += v
			q += v * v
		}
		for sq := range nseq {
			var m float64
			for tk := range T {
				m += float64(x[(sq*T+tk)*C+j])
			}
			m /= T
			for tk := range T {
				dv := float64(x[(sq*T+tk)*C+j]) - m
				within += dv * dv
			}
		}
		gm := s / (nseq * T)
		for k := j; k < len(x); k += C {
			total += (float64(x[k]) - gm) * (float64(x[k]) - gm)
		}
		want := []float64{q / nseq, s / nseq, within / (nseq * T)}
		for k, got := range []float32{st.SumSq[j], st.Sum[j], st.Var[j]} {
			if math.Abs(float64(got)-want[k]) > 1e-6*math.Abs(want[k]) {
				t.Errorf("channel %d stat %d: %v, want %v", j, k, got, want[k])
			}
		}
		if math.Abs(total/(nseq*T)-want[2]) < 0.05*want[2] {
			t.Fatalf("channel %d: the test data does not tell pooled within-sequence variance from the overall one", j)
		}
	}

	rs, rsum, rvar := dsnotRunning(x, nseq, T, C)
	for j := range C {
		for k, c := range [][2]float32{{st.SumSq[j], rs[j]}, {st.Sum[j], rsum[j]}, {st.Var[j], rvar[j]}} {
			if d := math.Abs(float64(c[0] - c[1])); d > 1e-5*math.Abs(float64(c[1]))+1e-5 {
				t.Errorf("channel %d stat %d: %v, DSnoT's running float32 %v", j, k, c[0], c[1])
			}
		}
	}

	// One sequence at a time, and two accumulators merged, give the same bits.
	b := NewAccumulator(C, T, all)
	c := NewAccumulator(C, T, all)
	for s := range nseq {
		dst := b
		if s >= 5 {
			dst = c
		}
		if err := dst.Add(x[s*T*C:(s+1)*T*C], 1); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Merge(c); err != nil {
		t.Fatal(err)
	}
	st2 := b.Stats()
	if !slices.Equal(st2.SumSq, st.SumSq) || !slices.Equal(st2.Sum, st.Sum) || !slices.Equal(st2.Var, st.Var) || st2.N != st.N {
		// Merging adds the same float64 sums in another order: allow one float32 ulp.
		for j := range C {
			for _, p := range [][2]float32{{st2.SumSq[j], st.SumSq[j]}, {st2.Sum[j], st.Sum[j]}, {st2.Var[j], st.Var[j]}} {
				if p[0] != p[1] && math.Nextafter32(p[0], p[1]) != p[1] {
					t.Errorf("channel %d: chunked/merged %v, whole %v", j, p[0], p[1])
				}
			}
		}
	}

	// Only what was asked for is gathered.
	d := NewAccumulator(C, T, NeedSum)
	if err := d.Add(x, nseq); err != nil {
		t.Fatal(err)
	}
	if s := d.Stats(); s.SumSq != nil || s.Var != nil || len(s.Sum) != C {
		t.Errorf("NeedSum gave %+v", s)
	}
	if err := d.Add(x[:len(x)-1], nseq); !errors.Is(err, pipeline.ErrShape) {
		t.Errorf("short input: %v", err)
	}
	if err := d.Merge(a); !errors.Is(err, pipeline.ErrShape) {
		t.Errorf("merging different statistics: %v", err)
	}
	if s := NewAccumulator(C, T, all).Stats(); s.N != 0 || s.Sum != nil {
		t.Errorf("empty accumulator: %+v", s)
	}
}

// TestRunningAccumulator checks the float32 running mode bit for bit against add_batch
// transcribed channel by channel (the loops of dsnotRunning, with the squared norm summed in
// float32 token by token as torch's strided norm reduction does).
func TestRunningAccumulator(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 16))
	const nseq, T, C = 9, 23, 7
	x := calibInputs(r, nseq, T, C)
	want := make([][3]float32, C) // sumsq, sum, var
	for j := range C {
		var sumsq, sum, variance float32
		for s := range nseq {
			var sq32 float32
			var m, q float64
			for tk := range T {
				v := x[(s*T+tk)*C+j]
				sq32 += float32(v * v)
				m += float64(v)
			}
			for tk := range T {
				dv := float64(x[(s*T+tk)*C+j]) - m/T
				q += dv * dv
			}
			norm := float32(math.Sqrt(float64(sq32)))
			f := float32(float64(s) / float64(s+1))
			sumsq = float32(sumsq*f) + float32(norm*norm)/float32(s+1)
			sum = float32(sum*f) + float32(m)/float32(s+1)
			vs := float32(q / T)
			if s == 0 {
				variance = vs
			} else {
				variance = (float32(variance*float32(s*T)) + float32(vs*float32(T))) / float32((s+1)*T)
			}
		}
		want[j] = [3]float32{sumsq, sum, variance}
	}
	a := NewRunningAccumulator(C, T, NeedSumSq|NeedSum|NeedVar)
	if err := a.Add(x[:4*T*C], 4); err != nil { // in two calls: the state carries over
		t.Fatal(err)
	}
	if err := a.Add(x[4*T*C:], nseq-4); err != nil {
		t.Fatal(err)
	}
	st := a.Stats()
	if st.N != nseq || st.Tokens != nseq*T {
		t.Errorf("N %d Tokens %d", st.N, st.Tokens)
	}
	for j := range C {
		got := [3]float32{st.SumSq[j], st.Sum[j], st.Var[j]}
		if got != want[j] {
			t.Errorf("channel %d: %v, transcription %v", j, got, want[j])
		}
	}
	// It estimates the same quantities as the float64 mode.
	b := NewAccumulator(C, T, NeedSumSq|NeedSum|NeedVar)
	if err := b.Add(x, nseq); err != nil {
		t.Fatal(err)
	}
	ex := b.Stats()
	for j := range C {
		for k, p := range [][2]float32{{st.SumSq[j], ex.SumSq[j]}, {st.Sum[j], ex.Sum[j]}, {st.Var[j], ex.Var[j]}} {
			if math.Abs(float64(p[0]-p[1])) > 1e-5*math.Abs(float64(p[1]))+1e-5 {
				t.Errorf("channel %d stat %d: running %v, float64 %v", j, k, p[0], p[1])
			}
		}
	}
	if err := a.Merge(b); !errors.Is(err, pipeline.ErrShape) {
		t.Errorf("merging a running accumulator: %v", err)
	}
	if s := NewRunningAccumulator(C, T, NeedSum).Stats(); s.N != 0 || s.Sum != nil {
		t.Errorf("empty: %+v", s)
	}
}
