//go:build !amd64 || purego

package tensor

import "github.com/wanda-go/wanda/format/dtype"

func packBTRawAsm(dt dtype.DType, dst []float32, src []byte, ld, kc int) int { return 0 }

func widenAsm(dt dtype.DType, dst []float32, src []byte) int { return 0 }
