//go:build !openblas

// Command gemm compares tensor.Sgemm with OpenBLAS; it must be built with
// -tags openblas (and cgo). See run.sh.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "bench/gemm: build with -tags openblas (needs cgo and libopenblas-dev); see bench/gemm/run.sh")
	os.Exit(2)
}
