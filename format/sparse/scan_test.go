package sparse

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wanda-go/wanda/format/dtype"
	"github.com/wanda-go/wanda/format/safetensors"
)

// bruteNM is an independent N:M check on float64 values: the first group (row,
// first column, zeros) with fewer than n zeros, or ok; shape when cols%m != 0.
func bruteNM(vals []float64, rows, cols, n, m int) (ok, shape bool, row, col, zeros int) {
	if cols%m != 0 {
		return false, true, 0, 0, 0
	}
	for r := 0; r < rows; r++ {
		for c := 0; c < cols; c += m {
			z := 0
			for j := c; j < c+m; j++ {
				if vals[r*cols+j] == 0 {
					z++
				}
			}
			if z < n {
				return false, false, r, c, z
			}
		}
	}
	return true, false, 0, 0, 0
}

func TestScanNMAgainstBruteForce(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	patterns := []NM{Pattern24, Pattern48, {1, 2}, {3, 6}, {0, 4}, {4, 4}}
	for trial := 0; trial < 400; trial++ {
		dt := floatTypes[trial%len(floatTypes)]
		rows := 1 + r.IntN(6)
		cols := []int{4, 8, 12, 16, 24, 6, 10, 5, 48}[r.IntN(9)]
		vals := randomPruned(r, rows, cols, trial%3 != 0 && cols%4 == 0)
		if trial%5 == 0 { // plant a violation: one group of 4 with only one zero
			k := r.IntN(rows * cols)
			vals[k] = 0.5
		}
		st, err := Scan(encode(t, vals, dt), dt, rows, cols, patterns...)
		if err != nil {
			t.Fatal(err)
		}
		var zeros int64
		for _, v := range vals {
			if v == 0 {
				zeros++
			}
		}
		if st.Zeros != zeros || st.NegZeros != 0 || st.FirstNegZero != -1 {
			t.Fatalf("trial %d: zeros %d (neg %d, first %d), want %d", trial, st.Zeros, st.NegZeros, st.FirstNegZero, zeros)
		}
		for _, p := range patterns {
			ok, shape, row, col, z := bruteNM(vals, rows, cols, p.N, p.M)
			if st.Satisfies(p) != ok {
				t.Fatalf("trial %d %s %v [%d, %d]: Satisfies %v, brute force %v", trial, dt, p, rows, cols, st.Satisfies(p), ok)
			}
			var want string
			switch {
			case shape:
				want = fmt.Sprintf("%d columns is not a multiple of %d", cols, p.M)
			case !ok:
				want = fmt.Sprintf("row %d, columns %d..%d hold %d zero", row, col, col+p.M-1, z)
			}
			why := st.Why(p)
			if (want == "") != (why == "") || !strings.HasPrefix(why, want) {
				t.Fatalf("trial %d %v: Why %q, want prefix %q", trial, p, why, want)
			}
			err := st.NMError(p)
			if ok != (err == nil) || (err != nil && (p == Pattern24) != errors.Is(err, ErrNot24)) ||
				(err != nil && (p != Pattern24) != errors.Is(err, ErrNotNM)) || (err != nil && !strings.HasSuffix(err.Error(), why)) {
				t.Fatalf("trial %d %v: NMError %v", trial, p, err)
			}
		}
	}
}

// TestPack24RefusalWordsAreScanWords: the group with a single zero is refused by
// Pack24 and by the layout's eligibility test with exactly the words Scan gives.
func TestPack24RefusalWordsAreScanWords(t *testing.T) {
	vals := []float64{0, 0, 1, 2, 3, 0, 4, 5, 0, 6, 0, 7}
	d := encode(t, vals, dtype.BF16)
	st, err := Scan(d, dtype.BF16, 1, 12, Pattern24)
	if err != nil {
		t.Fatal(err)
	}
	why := st.Why(Pattern24)
	if why != "row 0, columns 4..7 hold 1 zero (2:4 needs at least 2 in every aligned group of 4)" {
		t.Fatalf("Why = %q", why)
	}
	_, _, err = Pack24(d, dtype.BF16, 1, 12)
	if !errors.Is(err, ErrNot24) || !strings.HasSuffix(err.Error(), ": "+why) {
		t.Errorf("Pack24: %v", err)
	}
	l, _ := LayoutOf(Format24)
	if err := l.Eligible(st); !errors.Is(err, ErrNot24) || !strings.HasSuffix(err.Error(), ": "+why) {
		t.Errorf("Eligible: %v", err)
	}
	lb, _ := LayoutOf(FormatBitmask)
	if err := lb.Eligible(st); err != nil {
		t.Errorf("sparse-bitmask refuses an unstructured tensor: %v", err)
	}
	d[3] = 0x80 // element 1 → -0.0
	st, _ = Scan(d, dtype.BF16, 1, 12, Pattern24)
	if err := lb.Eligible(st); !errors.Is(err, ErrNegativeZero) || !strings.Contains(err.Error(), "[0, 1]") {
		t.Errorf("Eligible with -0.0: %v", err)
	}
}

// TestLayoutsRoundTrip drives every registered layout through the registry
// alone, as the packed reader and Pack do: Specs → Pack → a real safetensors
// file → Header → Unpack gives back the dense bytes. A new layout is covered
// by registering it.
func TestLayoutsRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	if got := Formats(); len(got) < 2 || got[0] != Format24 || got[1] != FormatBitmask {
		t.Fatalf("Formats() = %v, want sparse-24-bitmask then sparse-bitmask first", got)
	}
	for _, l := range Layouts() {
		for _, dt := range floatTypes {
			rows, cols := 5, 24
			vals := randomPruned(r, rows, cols, l.Pattern != (NM{}))
			dense := encode(t, vals, dt)
			st, err := Scan(dense, dt, rows, cols, l.Pattern)
			if l.Pattern == (NM{}) {
				st, err = Scan(dense, dt, rows, cols)
			}
			if err != nil || l.Eligible(st) != nil {
				t.Fatalf("%s: scan %v, eligible %v", l.Format, err, l.Eligible(st))
			}
			specs, err := l.Specs("m.w", dt, rows, cols, st)
			if err != nil {
				t.Fatal(err)
			}
			data, err := l.Pack(dense, dt, rows, cols)
			if err != nil {
				t.Fatal(err)
			}
			if len(specs) != len(l.Parts) || len(data) != len(l.Parts) {
				t.Fatalf("%s: %d specs, %d parts of data, %d parts", l.Format, len(specs), len(data), len(l.Parts))
			}
			for i, s := range specs {
				if s.Name != "m.w"+l.Parts[i] {
					t.Errorf("%s: spec %d is %q, part %q", l.Format, i, s.Name, l.Parts[i])
				}
			}
			path := filepath.Join(t.TempDir(), "m.safetensors")
			if err := safetensors.WriteFile(path, specs, data, nil); err != nil {
				t.Fatalf("%s %s: %v", l.Format, dt, err)
			}
			f, err := safetensors.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			var parts []*safetensors.Tensor
			var raw [][]byte
			for _, s := range l.Parts {
				pt, ok := f.Tensor("m.w" + s)
				if !ok {
					t.Fatalf("%s: no part %s", l.Format, s)
				}
				parts = append(parts, pt)
				raw = append(raw, pt.Bytes())
			}
			gdt, grows, gcols, err := l.Header(parts)
			if err != nil || gdt != dt || grows != rows || gcols != cols {
				t.Fatalf("%s: Header = %s [%d, %d], %v", l.Format, gdt, grows, gcols, err)
			}
			back, err := l.Unpack(raw, dt, rows, cols)
			if err != nil || !bytes.Equal(back, dense) {
				t.Fatalf("%s %s: unpack differs (%v)", l.Format, dt, err)
			}
			f.Close()
		}
	}
}

func TestRegistry(t *testing.T) {
	for _, s := range []string{"sparse-24-bitmask", "sparse-bitmask", "dense"} {
		if f, err := ParseFormat(s); err != nil || string(f) != s {
			t.Errorf("ParseFormat(%q) = %q, %v", s, f, err)
		}
	}
	if _, err := ParseFormat("marlin-24"); err == nil || !strings.Contains(err.Error(), "sparse-24-bitmask, sparse-bitmask") {
		t.Errorf("ParseFormat(marlin-24): %v", err)
	}
	l24, _ := LayoutOf(Format24)
	dup := *l24
	for name, l := range map[string]*Layout{
		"duplicate":  &dup,
		"incomplete": {Format: "x", Parts: []string{".x"}},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s layout registered without a panic", name)
				}
			}()
			RegisterLayout(l)
		}()
	}
	if len(Formats()) != 2 {
		t.Errorf("a refused registration changed the registry: %v", Formats())
	}
}

// TestGuaranteedBy checks NM.GuaranteedBy against every placement of n zeros
// per group of m over one row of lcm(m, p.M)·2 columns.
func TestGuaranteedBy(t *testing.T) {
	for _, p := range []NM{Pattern24, Pattern48, {1, 2}, {3, 4}} {
		for m := 1; m <= 8; m++ {
			for n := 0; n <= m; n++ {
				if p.M%m != 0 && m%p.M != 0 {
					if p.GuaranteedBy(n, m) {
						t.Errorf("%v by %d:%d: true for unaligned groups", p, n, m)
					}
					continue
				}
				cols := max(m, p.M) * 2
				// Enumerate the choices of n zero positions in each group of m (the
				// same in every group suffices for the worst case, and a different
				// one per group cannot be worse for a group of p inside one group of
				// m; when p's groups span several of m's, each holds exactly n·p.M/m).
				want := true
				for mask := 0; mask < 1<<m; mask++ {
					if popcount(mask) != n {
						continue
					}
					vals := make([]float64, cols)
					for j := range vals {
						if mask&(1<<(j%m)) == 0 {
							vals[j] = 1
						}
					}
					if ok, _, _, _, _ := bruteNM(vals, 1, cols, p.N, p.M); !ok {
						want = false
					}
				}
				if got := p.GuaranteedBy(n, m); got != want {
					t.Errorf("%v by %d:%d: %v, enumeration says %v", p, n, m, got, want)
				}
			}
		}
	}
}

func popcount(x int) int {
	c := 0
	for ; x > 0; x &= x - 1 {
		c++
	}
	return c
}
