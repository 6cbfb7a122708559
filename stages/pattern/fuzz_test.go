package pattern

import (
	"context"
	"math"
	"slices"
	"testing"

	"github.com/wanda-go/wanda/pipeline"
)

// FuzzSelect compares every unstructured group and N:M against the brute-force rules on
// small matrices built from the fuzz input, with heavy ties, signed zeros and infinities.
// Seeds: testdata/fuzz/FuzzSelect.
func FuzzSelect(f *testing.F) {
	levels := []float32{0, float32(math.Copysign(0, -1)), 0.5, 1, 1, 2, 3.25, -1, float32(math.Inf(1)), float32(math.Inf(-1)), 1e-30, 7}
	f.Fuzz(func(t *testing.T, rows, cols, sp uint8, data []byte) {
		R, C := int(rows%9)+1, int(cols%17)+1
		sc := pipeline.NewMatrix(R, C)
		for k := range sc.Data {
			if len(data) > 0 {
				sc.Data[k] = levels[int(data[k%len(data)])%len(levels)]
			}
		}
		s := float64(sp) / 256
		ctx := context.Background()
		for _, g := range []pipeline.Group{pipeline.GroupRow, pipeline.GroupColumn, pipeline.GroupMatrix} {
			m, err := Unstructured{}.Select(ctx, sc, pipeline.Target{Sparsity: s, Group: g}, info)
			if err != nil {
				t.Fatal(err)
			}
			want := make([]bool, R*C)
			switch g {
			case pipeline.GroupRow:
				for i := range R {
					copy(want[i*C:], bruteFirstK(sc.Row(i), int(float64(C)*s)))
				}
			case pipeline.GroupColumn:
				col := make([]float32, R)
				for j := range C {
					for i := range R {
						col[i] = sc.Data[i*C+j]
					}
					for i, p := range bruteFirstK(col, int(float64(R)*s)) {
						want[i*C+j] = p
					}
				}
			case pipeline.GroupMatrix:
				if s > 0 {
					sorted := slices.Clone(sc.Data)
					slices.Sort(sorted)
					th := sorted[int(float64(R*C)*s)]
					for k, v := range sc.Data {
						want[k] = v <= th
					}
				}
			}
			if got := maskBools(m); !slices.Equal(got, want) {
				t.Fatalf("group %v s=%g scores %v: got %v want %v", g, s, sc.Data, got, want)
			}
		}
		for _, nm := range [][2]int{{1, 2}, {2, 4}, {3, 4}} {
			n, mm := nm[0], nm[1]
			if C%mm != 0 {
				continue
			}
			m, err := NM{}.Select(ctx, sc, pipeline.Target{N: n, M: mm}, info)
			if err != nil {
				t.Fatal(err)
			}
			// Without a tie at the boundary the N smallest are the answer; with one, ties are
			// broken as the reference's torch.topk does (TestTorchSmallestK), and what any rule
			// must give is checked: N pruned, none larger than a kept entry.
			got := maskBools(m)
			for i := range R {
				for g := 0; g < C; g += mm {
					grp := sc.Row(i)[g : g+mm]
					sorted := slices.Clone(grp)
					slices.Sort(sorted)
					gotG := got[i*C+g : i*C+g+mm]
					if sorted[n-1] != sorted[n] {
						if want := bruteFirstK(grp, n); !slices.Equal(gotG, want) {
							t.Fatalf("%d:%d group %v: got %v want %v", n, mm, grp, gotG, want)
						}
						continue
					}
					cnt := 0
					for a, p := range gotG {
						if p {
							cnt++
							if grp[a] > sorted[n-1] {
								t.Fatalf("%d:%d group %v: pruned %v, larger than a kept entry", n, mm, grp, grp[a])
							}
						}
					}
					if cnt != n {
						t.Fatalf("%d:%d group %v: %d pruned", n, mm, grp, cnt)
					}
				}
			}
		}
	})
}
