package model

import "math"

// expf is a float32 exp accurate to about 1 ulp (Cody–Waite range reduction
// and a degree-6 minimax polynomial, as in Cephes' expf): fast enough for the
// billions of exponentials of attention softmax, SiLU and the vocabulary
// log-sum-exp, where math.Exp would dominate the run time.
func expf(x float32) float32 {
	const (
		log2e = 1.44269504088896341
		c1    = 0.693359375
		c2    = -2.12194440e-4
		magic = 12582912.0 // 1.5·2^23: adding it rounds to an integer
	)
	if !(x < 88.72) { // also NaN
		if x != x {
			return x
		}
		return float32(math.Inf(1))
	}
	if x < -87.33 {
		return 0
	}
	k := x*log2e + magic
	n := k - magic
	f := x - n*c1 - n*c2
	p := float32(1.9875691500e-4)
	p = p*f + 1.3981999507e-3
	p = p*f + 8.3334519073e-3
	p = p*f + 4.1665795894e-2
	p = p*f + 1.6666665459e-1
	p = p*f + 5.0000001201e-1
	p = p*f*f + f + 1
	e := int32(math.Float32bits(k)) - 0x4B400000 // the integer n
	return p * math.Float32frombits(uint32(e+127)<<23)
}

// maxGo returns the maximum of x (-Inf for an empty x).
func maxGo(x []float32) float32 {
	m := float32(math.Inf(-1))
	for _, v := range x {
		m = max(m, v)
	}
	return m
}

// expRow replaces x[:n] by exp(x[i] - max(x[:n])), zeroes x[n:] and returns
// the float64 sum of the exponentials: an unnormalised softmax.
func expRow(x []float32, n int) float64 {
	row := x[:n]
	s := expSubSum(row, maxf(row))
	clear(x[n:])
	return s
}

// logSumExpInPlace returns log Σ exp(x_i) in float64 (max-shifted, float64
// sum), overwriting x with the shifted exponentials.
func logSumExpInPlace(x []float32) float64 {
	mx := maxf(x)
	if math.IsInf(float64(mx), 0) || mx != mx {
		return float64(mx)
	}
	return float64(mx) + math.Log(expSubSum(x, mx))
}

// siluMulRow computes dst[i] = silu(g[i]) * u[i], silu(g) = g / (1 + exp(-g))
// in float32. dst may alias g.
func siluMulRow(dst, g, u []float32) {
	u = u[:len(g)]
	dst = dst[:len(g)]
	for i, v := range g {
		dst[i] = v / (1 + expf(-v)) * u[i]
	}
}

// geluTanhMul sets dst[i] = gelu_tanh(g[i]) * u[i] (dst may alias g), where
// gelu_tanh(x) = 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) is evaluated in float32 in
// the order torch's CPU kernel (approximate="tanh") uses, with tanh rounded to float32.
func geluTanhMul(dst, g, u []float32) {
	const beta = float32(0.7978845608028654) // √2 · (2/√π) · ½
	const kappa = float32(0.044715)
	u = u[:len(g)]
	dst = dst[:len(g)]
	for i, x := range g {
		cube := x * x * x
		inner := beta * (x + kappa*cube)
		t := float32(math.Tanh(float64(inner)))
		dst[i] = float32(0.5) * x * (1 + t) * u[i]
	}
}

// sigmoid is 1/(1+exp(-x)) in float32 (exp in float64, rounded).
func sigmoid(x float32) float32 {
	return float32(1 / (1 + math.Exp(-float64(x))))
}
