package pattern

import (
	"cmp"
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/wanda-go/wanda/pipeline"
	"github.com/wanda-go/wanda/stages/stagetest"
)

var info = pipeline.LayerInfo{Layer: 3, Tensor: "model.layers.3.mlp.up_proj.weight", Part: "up_proj"}

func TestConformanceUnstructured(t *testing.T) {
	var targets []pipeline.Target
	for _, g := range []pipeline.Group{pipeline.GroupRow, pipeline.GroupColumn, pipeline.GroupMatrix} {
		for _, s := range []float64{0.5, 0.3, 0.7, 0.99} {
			targets = append(targets, pipeline.Target{Sparsity: s, Group: g})
		}
	}
	targets = append(targets, pipeline.Target{Sparsity: 0.5, Variant: true}, pipeline.Target{Sparsity: 0.6, Variant: true})
	stagetest.TestPattern(t, Unstructured{}, targets, stagetest.LowerIndexTies(), stagetest.StrictErrors())
}

func TestConformanceNM(t *testing.T) {
	targets := []pipeline.Target{{N: 2, M: 4}, {N: 4, M: 8}, {N: 1, M: 4}, {N: 3, M: 4}, {N: 20, M: 40}, {N: 50, M: 100}}
	stagetest.TestPattern(t, NM{}, targets, stagetest.StrictErrors())
}

func TestBuiltin(t *testing.T) {
	// The registry (register.go) and ForTarget pick the same pattern for a target.
	for _, c := range []struct {
		t    pipeline.Target
		name string
	}{{pipeline.Target{N: 2, M: 4}, "nm"}, {pipeline.Target{Sparsity: 0.5}, "unstructured"}, {pipeline.Target{Sparsity: 0.5, Group: pipeline.GroupMatrix}, "unstructured"}} {
		p, err := pipeline.BuiltinPattern(c.t)
		if err != nil || p.Name() != c.name {
			t.Errorf("BuiltinPattern(%v) = %v, %v; want %s", c.t, p, err, c.name)
		}
		if got := ForTarget(c.t).Name(); got != c.name {
			t.Errorf("ForTarget(%v) = %s, want %s", c.t, got, c.name)
		}
	}
	// Each pattern refuses the other's targets.
	sc := pipeline.Matrix{Rows: 2, Cols: 8, Data: make([]float32, 16)}
	if _, err := (Unstructured{}).Select(context.Background(), sc, pipeline.Target{N: 2, M: 4}, info); !errors.Is(err, pipeline.ErrBadTarget) {
		t.Errorf("unstructured with 2:4: %v", err)
	}
	if _, err := (NM{}).Select(context.Background(), sc, pipeline.Target{Sparsity: 0.5}, info); !errors.Is(err, pipeline.ErrBadTarget) {
		t.Errorf("nm with unstructured target: %v", err)
	}
	if _, err := (Unstructured{}).Select(context.Background(), sc, pipeline.Target{Sparsity: 0.5, Group: pipeline.GroupMatrix, Variant: true}, info); !errors.Is(err, pipeline.ErrBadTarget) {
		t.Errorf("variant with matrix group: %v", err)
	}
}

// bf16 rounds f to bfloat16 precision (round to nearest even), giving the heavy ties of
// real bf16 checkpoints.
func bf16(f float32) float32 {
	u := math.Float32bits(f)
	u += 0x7fff + (u>>16)&1
	return math.Float32frombits(u &^ 0xffff)
}

func randScores(r *rand.Rand, rows, cols int, quantise bool) pipeline.Matrix {
	m := pipeline.NewMatrix(rows, cols)
	for k := range m.Data {
		v := float32(math.Abs(r.NormFloat64()) * 0.02)
		if quantise {
			v = bf16(v)
		}
		m.Data[k] = v
	}
	return m
}

// bruteFirstK is an independent O(n²) statement of "the first k of a stable ascending
// sort": element a is pruned iff fewer than k elements precede it, where b precedes a when
// v[b] < v[a], or v[b] == v[a] and b < a.
func bruteFirstK(v []float32, k int) []bool {
	out := make([]bool, len(v))
	for a := range v {
		before := 0
		for b := range v {
			if v[b] < v[a] || (v[b] == v[a] && b < a) {
				before++
			}
		}
		out[a] = before < k
	}
	return out
}

func maskBools(m *pipeline.Mask) []bool {
	out := make([]bool, m.Rows*m.Cols)
	for i := range m.Rows {
		for j := range m.Cols {
			out[i*m.Cols+j] = m.Get(i, j)
		}
	}
	return out
}

func diffMask(t *testing.T, what string, got *pipeline.Mask, want []bool) {
	t.Helper()
	g := maskBools(got)
	bad := 0
	for k := range want {
		if g[k] != want[k] {
			if bad < 5 {
				t.Errorf("%s: [%d,%d] pruned=%v, want %v", what, k/got.Cols, k%got.Cols, g[k], want[k])
			}
			bad++
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d of %d entries differ", what, bad, len(want))
	}
}

func TestRowsBruteForce(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, sh := range [][2]int{{17, 300}, {3, 1001}, {64, 64}, {1, 5}} {
		for _, q := range []bool{false, true} {
			sc := randScores(r, sh[0], sh[1], q)
			for _, s := range []float64{0.5, 0.1, 0.73, 0.999} {
				m, err := Unstructured{}.Select(context.Background(), sc, pipeline.Target{Sparsity: s}, info)
				if err != nil {
					t.Fatal(err)
				}
				k := int(float64(sh[1]) * s)
				var want []bool
				for i := range sh[0] {
					want = append(want, bruteFirstK(sc.Row(i), k)...)
				}
				diffMask(t, "rows", m, want)
			}
		}
	}
}

func TestColumnsBruteForce(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, sh := range [][2]int{{300, 17}, {65, 130}, {1, 9}} {
		sc := randScores(r, sh[0], sh[1], true)
		for _, s := range []float64{0.5, 0.3} {
			m, err := Unstructured{}.Select(context.Background(), sc, pipeline.Target{Sparsity: s, Group: pipeline.GroupColumn}, info)
			if err != nil {
				t.Fatal(err)
			}
			R, C := sh[0], sh[1]
			k := int(float64(R) * s)
			want := make([]bool, R*C)
			col := make([]float32, R)
			for j := range C {
				for i := range R {
					col[i] = sc.Data[i*C+j]
				}
				for i, p := range bruteFirstK(col, k) {
					want[i*C+j] = p
				}
			}
			diffMask(t, "columns", m, want)
		}
	}
}

// TestMatrixRuleTies checks the reference magnitude rule (thresh = sorted[int(numel·s)],
// prune <= thresh) on bf16-quantised magnitudes, where many entries tie at the threshold.
func TestMatrixRuleTies(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	sc := randScores(r, 200, 300, true)
	sorted := slices.Clone(sc.Data)
	slices.Sort(sorted)
	for _, s := range []float64{0.5, 0.25, 0.9} {
		m, err := Unstructured{}.Select(context.Background(), sc, pipeline.Target{Sparsity: s, Group: pipeline.GroupMatrix}, info)
		if err != nil {
			t.Fatal(err)
		}
		k := int(float64(len(sorted)) * s)
		th := sorted[k]
		want := make([]bool, len(sc.Data))
		ties := 0
		for q, v := range sc.Data {
			want[q] = v <= th
			if v == th {
				ties++
			}
		}
		diffMask(t, "matrix", m, want)
		if m.Count() <= k {
			t.Errorf("s=%g: %d pruned, the rule prunes at least %d", s, m.Count(), k+1)
		}
		if ties < 2 {
			t.Errorf("s=%g: test data has no ties at the threshold", s)
		}
		t.Logf("s=%g: %d pruned (int(numel·s) = %d, %d ties at threshold %g)", s, m.Count(), k, ties, th)
	}
}

func TestNMBruteForce(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for _, nm := range [][2]int{{2, 4}, {4, 8}, {1, 2}, {30, 64}, {50, 100}} {
		n, mm := nm[0], nm[1]
		for _, q := range []bool{false, true} {
			sc := randScores(r, 9, 4*mm, q)
			if q {
				for k := range sc.Data {
					sc.Data[k] = float32(r.IntN(3)) // extreme ties
				}
			}
			m, err := NM{}.Select(context.Background(), sc, pipeline.Target{N: n, M: mm}, info)
			if err != nil {
				t.Fatal(err)
			}
			if q {
				// Ties are broken as torch.topk does on the CPU (TestTorchSmallestK); what any
				// tie rule must give: exactly n pruned per group, none larger than a kept one.
				for i := range sc.Rows {
					row := sc.Row(i)
					for g := 0; g < sc.Cols; g += mm {
						cnt, maxP, minK := 0, float32(-1), float32(1e9)
						for j := g; j < g+mm; j++ {
							if m.Get(i, j) {
								cnt++
								maxP = max(maxP, row[j])
							} else {
								minK = min(minK, row[j])
							}
						}
						if cnt != n || maxP > minK {
							t.Fatalf("%d:%d row %d group %d: %d pruned, largest pruned %g, smallest kept %g", n, mm, i, g, cnt, maxP, minK)
						}
					}
				}
				continue
			}
			var want []bool
			for i := range sc.Rows {
				row := sc.Row(i)
				for g := 0; g < sc.Cols; g += mm {
					want = append(want, bruteFirstK(row[g:g+mm], n)...)
				}
			}
			diffMask(t, "nm", m, want)
		}
	}
}

// refVariant transcribes lib/prune.py's use_variant loop directly: sort each row, cumsum
// (float64 accumulation rounded to float32, torch CPU), row sums, then the bisection on
// alpha with return_given_alpha evaluated by brute force.
func refVariant(sc pipeline.Matrix, ratio float64) ([]bool, float64) {
	R, C := sc.Rows, sc.Cols
	sortRes := make([][]float32, R)
	tmpMetric := make([][]float32, R)
	sumBefore := make([]float32, R)
	for i := range R {
		row := slices.Clone(sc.Row(i))
		slices.SortStableFunc(row, cmp.Compare[float32])
		sortRes[i] = row
		tmpMetric[i] = make([]float32, C)
		var acc, sum float64
		for j, v := range row {
			acc += float64(v)
			tmpMetric[i][j] = float32(acc)
		}
		for _, v := range sc.Row(i) {
			sum += float64(v)
		}
		sumBefore[i] = float32(sum)
	}
	returnGivenAlpha := func(alpha float64) ([]bool, float32) {
		mask := make([]bool, R*C)
		total := 0
		for i := range R {
			thresCumsum := sumBefore[i] * float32(alpha)
			cnt := 0
			for _, v := range tmpMetric[i] {
				if v <= thresCumsum {
					cnt++
				}
			}
			idx := cnt - 1
			if idx == -1 {
				idx = C - 1
			}
			thres := sortRes[i][idx]
			for j, v := range sc.Row(i) {
				if v <= thres {
					mask[i*C+j] = true
					total++
				}
			}
		}
		return mask, float32(total) / float32(R*C)
	}
	alpha := 0.4
	alphaHist := [2]float64{0, 0.8}
	mask, cur := returnGivenAlpha(alpha)
	for float32(math.Abs(float64(cur-float32(ratio)))) > float32(0.001) && alphaHist[1]-alphaHist[0] >= 0.001 {
		var alphaNew float64
		if cur > float32(ratio) {
			alphaNew = (alpha + alphaHist[0]) / 2.0
			alphaHist[1] = alpha
		} else {
			alphaNew = (alpha + alphaHist[1]) / 2.0
			alphaHist[0] = alpha
		}
		alpha = alphaNew
		mask, cur = returnGivenAlpha(alpha)
	}
	return mask, alpha
}

func TestVariantReference(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	cases := []pipeline.Matrix{
		randScores(r, 40, 500, false),
		randScores(r, 40, 500, true),
		randScores(r, 128, 256, false),
		{Rows: 1, Cols: 2, Data: []float32{1, 1}}, // count 0 at every alpha: the index -1 wrap
		{Rows: 2, Cols: 3, Data: []float32{0, 0, 0, 1, 2, 3}},
	}
	// A matrix with negative scores takes the linear-count path.
	neg := randScores(r, 10, 200, false)
	for k := range neg.Data {
		if k%7 == 0 {
			neg.Data[k] = -neg.Data[k]
		}
	}
	cases = append(cases, neg)
	for ci, sc := range cases {
		for _, s := range []float64{0.5, 0.3, 0.8} {
			m, err := Unstructured{}.Select(context.Background(), sc, pipeline.Target{Sparsity: s, Variant: true}, info)
			if err != nil {
				t.Fatal(err)
			}
			want, alpha := refVariant(sc, s)
			diffMask(t, "variant", m, want)
			if ci == 0 {
				t.Logf("%d×%d s=%g: alpha %g, sparsity %.5f", sc.Rows, sc.Cols, s, alpha, float64(m.Count())/float64(len(sc.Data)))
			}
		}
	}
	// The variant rejects infinite scores.
	sc := randScores(r, 3, 10, false)
	sc.Data[4] = float32(math.Inf(1))
	if _, err := (Unstructured{}).Select(context.Background(), sc, pipeline.Target{Sparsity: 0.5, Variant: true}, info); !errors.Is(err, pipeline.ErrNonFinite) {
		t.Errorf("variant with +Inf: %v", err)
	}
}

func TestNegativeZeroEqualsZero(t *testing.T) {
	negz := float32(math.Copysign(0, -1))
	sc := pipeline.Matrix{Rows: 1, Cols: 4, Data: []float32{0, negz, 0, negz}}
	m, err := Unstructured{}.Select(context.Background(), sc, pipeline.Target{Sparsity: 0.5}, info)
	if err != nil {
		t.Fatal(err)
	}
	// All four tie: the two lowest columns go.
	diffMask(t, "-0", m, []bool{true, true, false, false})
	if v, _ := Kth([]float32{negz, 1}, 0); math.Signbit(float64(v)) || v != 0 {
		t.Errorf("Kth returned %g", v)
	}
}

func TestKthAndRadixSort(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	for _, n := range []int{1, 2, 7, 100, 5000} {
		vals := make([]float32, n)
		for i := range vals {
			switch r.IntN(4) {
			case 0:
				vals[i] = float32(r.NormFloat64() * 1e-30)
			case 1:
				vals[i] = float32(r.IntN(5) - 2)
			case 2:
				vals[i] = float32(math.Inf(2*r.IntN(2) - 1))
			default:
				vals[i] = float32(r.NormFloat64() * 1e20)
			}
		}
		sorted := slices.Clone(vals)
		slices.Sort(sorted)
		for _, k := range []int{0, n / 2, n - 1} {
			got, err := Kth(vals, k)
			if err != nil || got != sorted[k] {
				t.Errorf("n=%d: Kth(%d) = %g, %v; want %g", n, k, got, err, sorted[k])
			}
		}
		keys := make([]uint32, n)
		for i, v := range vals {
			keys[i] = sortKey(v)
		}
		radixSort(keys, make([]uint32, n))
		for i, x := range keys {
			if keyValue(x) != sorted[i] {
				t.Fatalf("n=%d: radixSort[%d] = %g, want %g", n, i, keyValue(x), sorted[i])
			}
		}
	}
	if _, err := Kth([]float32{1, float32(math.NaN())}, 0); !errors.Is(err, pipeline.ErrNonFinite) {
		t.Errorf("Kth with NaN: %v", err)
	}
}

func TestCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	sc := randScores(rand.New(rand.NewPCG(1, 1)), 100, 64, false)
	for _, tg := range []pipeline.Target{{Sparsity: 0.5}, {N: 2, M: 4}} {
		if _, err := ForTarget(tg).Select(ctx, sc, tg, info); !errors.Is(err, context.Canceled) {
			t.Errorf("%v: cancelled context gave %v", tg, err)
		}
	}
}

// TestTorchSmallestK checks the tie rule of torch.topk(largest=False) on the CPU, which
// replays libstdc++'s nth_element over (value, index) pairs. The expected sets were worked
// out by hand by stepping through that algorithm (median-of-three pivot, unguarded
// partition, insertion sort on the last <= 3 elements).
func TestTorchSmallestK(t *testing.T) {
	cases := []struct {
		vals []float32
		k    int
		want []int
	}{
		{[]float32{1, 1, 1, 1}, 2, []int{2, 3}}, // all equal: the upper half, not the lower
		{[]float32{0, 1, 1, 1}, 2, []int{0, 2}},
		{[]float32{4, 3, 2, 1}, 2, []int{2, 3}}, // no ties: simply the two smallest
		{[]float32{1, 2, 3}, 1, []int{0}},
		{[]float32{5, 5}, 1, []int{0}},
	}
	for _, c := range cases {
		got := make([]bool, len(c.vals))
		TorchSmallestK(c.vals, c.k, got, nil)
		want := make([]bool, len(c.vals))
		for _, i := range c.want {
			want[i] = true
		}
		if !slices.Equal(got, want) {
			t.Errorf("%v k=%d: pruned %v, want indices %v", c.vals, c.k, got, c.want)
		}
	}
	// Without ties, any size and k (both the nth_element and the partial_sort path) gives the
	// k smallest.
	r := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{2, 4, 8, 16, 64, 128, 300} {
		for _, k := range []int{1, 2, n / 2, n - 1} {
			if k < 1 || k >= n {
				continue
			}
			v := make([]float32, n)
			for i := range v {
				v[i] = float32(r.NormFloat64())
			}
			got := make([]bool, n)
			TorchSmallestK(v, k, got, nil)
			if want := bruteFirstK(v, k); !slices.Equal(got, want) {
				t.Errorf("n=%d k=%d: not the k smallest", n, k)
			}
		}
	}
}
