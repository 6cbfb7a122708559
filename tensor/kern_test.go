package tensor

import (
	"fmt"
	"os"
	"testing"
	"time"
)

func TestKernPeak(t *testing.T) {
	if os.Getenv("TUNE") == "" {
		t.Skip()
	}
	for _, kc := range []int{64, 256, 384} {
		a := make([]float32, kc*mr+64)
		b := make([]float32, kc*16+64)
		c := make([]float32, mr*16)
		best := time.Hour
		for rep := 0; rep < 20; rep++ {
			t0 := time.Now()
			for i := 0; i < 10000; i++ {
				sgemmImpl.kernel(kc, a, b, c, 16, 1, 0)
			}
			if d := time.Since(t0); d < best {
				best = d
			}
		}
		fmt.Printf("kc=%d %.1f GF/s\n", kc, 2*float64(mr*16*kc)*10000/best.Seconds()/1e9)
	}
}
