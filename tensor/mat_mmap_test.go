//go:build unix

package tensor

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/wanda-go/wanda/format/dtype"
)

// TestMatMulTMatMmap: weights that are views of a memory-mapped file, at
// odd byte offsets as in a safetensors file whose header length is not a
// multiple of 4, give the same bits as MatMulT on the widened weights.
func TestMatMulTMatMmap(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	const k = 264
	ws := []testMat{
		newTestMat(t, r, dtype.BF16, 100, k, 0),
		newTestMat(t, r, dtype.F16, 37, k, 0),
		newTestMat(t, r, dtype.F32, 48, k, 0),
	}
	// File: 13 header bytes, then the three tensors back to back.
	file := []byte("header\x00\x00\x00\x00\x00\x00\x00")
	offs := make([]int, len(ws))
	for i, w := range ws {
		offs[i] = len(file)
		file = append(file, w.m.Raw...)
	}
	path := filepath.Join(t.TempDir(), "w.bin")
	if err := os.WriteFile(path, file, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	data, err := syscall.Mmap(int(f.Fd()), 0, len(file), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Munmap(data)
	for i := range ws {
		ws[i].m.Raw = data[offs[i] : offs[i]+len(ws[i].m.Raw)]
	}
	for _, m := range []int{1, 3, 40} {
		checkMatMulTMat(t, r, m, k, 2, ws, "mmap")
	}
}
