package pipeline_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wanda-go/wanda/format/dtype"
	"github.com/wanda-go/wanda/format/safetensors"
	"github.com/wanda-go/wanda/internal/testenv"
	"github.com/wanda-go/wanda/pipeline"
	"github.com/wanda-go/wanda/tensor"
)

// writeBigBF16 writes a rows×cols bf16 tensor "w" of random weights (|w| ~ 2^-10..2^-4,
// random signs, some zeros) to dir/model.safetensors in chunks of rows, without holding it
// in memory.
func writeBigBF16(t *testing.T, dir string, rows, cols int) {
	t.Helper()
	w, err := safetensors.Create(dir, []safetensors.Spec{{Name: "w", DType: dtype.BF16, Shape: []int64{int64(rows), int64(cols)}}}, safetensors.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tw, err := w.OpenTensor("w")
	if err != nil {
		t.Fatal(err)
	}
	const chunk = 256
	buf := make([]byte, chunk*cols*2)
	r := rand.New(rand.NewPCG(1, 1))
	for r0 := 0; r0 < rows; r0 += chunk {
		n := min(chunk, rows-r0) * cols
		for k := range n {
			u := r.Uint32()
			// sign, exponent 117..123 (2^-10..2^-4), 7 random mantissa bits; 1/64 zeros.
			h := uint16(u&0x8000) | uint16(117+(u>>16)%7)<<7 | uint16(u>>24)&0x7f
			if u&0x3f00 == 0 {
				h &= 0x8000
			}
			binary.LittleEndian.PutUint16(buf[2*k:], h)
		}
		if _, err := tw.WriteAt(buf[:2*n], int64(r0*cols*2)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// anonPeak samples RssAnon (/proc/self/status) every millisecond until stop is called and
// returns the peak.
func anonPeak() (stop func() int64) {
	var peak atomic.Int64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			if a := pipeline.ReadMem().RSSAnon; a > peak.Load() {
				peak.Store(a)
			}
			select {
			case <-done:
				return
			case <-time.After(time.Millisecond):
			}
		}
	})
	return func() int64 {
		close(done)
		wg.Wait()
		if a := pipeline.ReadMem().RSSAnon; a > peak.Load() {
			peak.Store(a)
		}
		return peak.Load()
	}
}

// TestPruneTensorMemory prunes an 8192×8192 bf16 tensor (128 MiB on disk, 256 MiB in fp32)
// from a memory-mapped safetensors file into a safetensors file, and checks that the
// anonymous resident memory (RssAnon, sampled every millisecond from /proc/self/status; the
// mapped weights and the page cache of the output are file pages, not anonymous) grows by
// far less than the tensor: under 64 MiB, a quarter of its fp32 size. Run for wanda per row,
// magnitude over the whole matrix (three passes) and wanda 2:4 (with -short, wanda only).
func TestPruneTensorMemory(t *testing.T) {
	testenv.SkipIfRace(t)
	if pipeline.ReadMem().RSSAnon == 0 {
		t.Skip("no RssAnon in /proc/self/status on this system")
	}
	const rows, cols = 8192, 8192
	const limit = 64 << 20
	src := t.TempDir()
	writeBigBF16(t, src, rows, cols)
	f, err := safetensors.Open(filepath.Join(src, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Tensor("w")
	w := tensor.Mat{Rows: rows, Cols: cols, DType: dtype.BF16, Raw: st.Bytes()}
	r := rand.New(rand.NewPCG(2, 2))
	stats := randStats(r, cols)

	cases := []pipeline.Target{{Sparsity: 0.5}, {Sparsity: 0.5, Group: pipeline.GroupMatrix}, {N: 2, M: 4}}
	if testing.Short() {
		cases = cases[:1]
	}
	for i, tg := range cases {
		name := []string{"wanda", "magnitude", "wanda"}[i]
		m := method(name, tg)
		outDir := t.TempDir()
		ow, err := safetensors.Create(outDir, []safetensors.Spec{{Name: "w", DType: dtype.BF16, Shape: []int64{rows, cols}}}, safetensors.WriterOptions{})
		if err != nil {
			t.Fatal(err)
		}
		tw, err := ow.OpenTensor("w")
		if err != nil {
			t.Fatal(err)
		}
		runtime.GC()
		debug.FreeOSMemory()
		before := pipeline.ReadMem().RSSAnon
		stop := anonPeak()
		start := time.Now()
		res, err := pipeline.PruneTensor(context.Background(), m, pipeline.TensorJob{
			W: w, Stats: stats, Target: tg, Info: testInfo, Out: tw, ScratchDir: t.TempDir()})
		elapsed := time.Since(start)
		peak := stop()
		if err != nil {
			t.Fatal(err)
		}
		if err := tw.Close(); err != nil {
			t.Fatal(err)
		}
		if err := ow.Close(); err != nil {
			t.Fatal(err)
		}
		grow := peak - before
		if !tg.Structured() {
			name += " per " + tg.Group.String()
		}
		t.Logf("%s %v: RssAnon %.1f MiB before, peak %.1f MiB (+%.1f MiB; the tensor is %d MiB in fp32), %d zeros, %v",
			name, tg, mib(before), mib(peak), mib(grow), rows*cols*4>>20, res.Zeros, elapsed.Round(time.Millisecond))
		if grow > limit {
			t.Errorf("%s %v: anonymous memory grew by %.1f MiB, limit %d MiB", name, tg, mib(grow), limit>>20)
		}
		if res.Zeros < rows*cols/2 {
			t.Errorf("%s %v: %d zeros, want at least half of %d", name, tg, res.Zeros, rows*cols)
		}
		// Rows are pruned on their own by the row-local targets: check a few rows against
		// the whole-tensor path run on just those rows.
		if tg.Group == pipeline.GroupMatrix {
			continue
		}
		of, err := safetensors.Open(filepath.Join(outDir, "model.safetensors"))
		if err != nil {
			t.Fatal(err)
		}
		ot, _ := of.Tensor("w")
		got := ot.Bytes()
		for _, i := range []int{0, 1, 4095, rows - 1} {
			row := w.Sub(i, i+1)
			want, _, err := wholePath(context.Background(), m, row, stats, tg, testInfo)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got[i*cols*2:(i+1)*cols*2], want) {
				t.Errorf("%s %v: row %d differs from the whole path", name, tg, i)
			}
		}
		of.Close()
	}
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }
