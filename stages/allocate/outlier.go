package allocate

import (
	"fmt"
	"math"
)

// OutlierCounter computes one decoder layer's outlier count from its Wanda scores streamed in
// blocks, in two passes over the same scores (the mean must be known before counting):
//
//	pass 1: AddSum(block) for every block of every linear of the layer
//	        Threshold() ends pass 1
//	pass 2: AddCount(block) for the same scores again, in any order
//	        Outliers() checks that both passes saw the same number of scores
//
// OWL (prune_all.py check_outlier_mean, lines 139-154, applied to the scores concatenated at
// line 943) takes the mean of the concatenated float32 scores of all the layer's linears with
// torch.mean (float32 result), multiplies it by M in float32, and counts the scores strictly
// greater. Here the sum is accumulated in float64 with Neumaier compensation (so the result
// does not depend on block order or size), the mean is rounded once to float32, and the
// threshold is float32(mean) · float32(M) in float32.
// torch's float32 cascade sum can differ from the correctly rounded mean by an ulp; a score
// would have to lie within that ulp of the threshold for the counts to differ.
//
// The zero value is not usable; call NewOutlierCounter. A counter is not safe for concurrent
// use: give each goroutine its own and Merge them (in the same pass).
type OutlierCounter struct {
	m          float64
	sum, comp  float64 // Neumaier sum of the scores and its running compensation
	n, counted int64
	above      int64
	thr        float32
	phase      int // 0: summing, 1: counting
}

// NewOutlierCounter returns a counter for outliers above m × the mean score (OWL's Hyper_m).
func NewOutlierCounter(m float64) *OutlierCounter { return &OutlierCounter{m: m} }

// AddSum adds a block of scores to the mean (pass 1). Scores must be finite and ≥ 0 (Wanda
// scores are); a NaN, infinite or negative score is an error naming its index in the block.
func (c *OutlierCounter) AddSum(scores []float32) error {
	if c.phase != 0 {
		return fmt.Errorf("%w: AddSum after Threshold", ErrBadStats)
	}
	sum, comp := c.sum, c.comp
	for k, v := range scores {
		if !(v >= 0) || math.IsInf(float64(v), 1) {
			return fmt.Errorf("%w: score %d of the block is %v", ErrBadStats, k, v)
		}
		x := float64(v)
		t := sum + x
		if math.Abs(sum) >= x {
			comp += (sum - t) + x
		} else {
			comp += (x - t) + sum
		}
		sum = t
	}
	c.sum, c.comp = sum, comp
	c.n += int64(len(scores))
	return nil
}

// Threshold ends pass 1 and returns the outlier threshold float32(mean) · float32(M).
func (c *OutlierCounter) Threshold() (float32, error) {
	if c.phase == 1 {
		return c.thr, nil
	}
	if c.n == 0 {
		return 0, fmt.Errorf("%w: no scores", ErrBadStats)
	}
	mean := float32((c.sum + c.comp) / float64(c.n))
	c.thr = mean * float32(c.m)
	c.phase = 1
	return c.thr, nil
}

// AddCount counts the scores of a block above the threshold (pass 2).
func (c *OutlierCounter) AddCount(scores []float32) error {
	if c.phase != 1 {
		return fmt.Errorf("%w: AddCount before Threshold", ErrBadStats)
	}
	thr := c.thr
	var above int64
	for _, v := range scores {
		if v > thr {
			above++
		}
	}
	c.above += above
	c.counted += int64(len(scores))
	return nil
}

// Merge adds the sums (pass 1) or the counts (pass 2) of o, a counter made by c.Fork for
// other blocks of the same layer in the same pass.
func (c *OutlierCounter) Merge(o *OutlierCounter) error {
	if c.phase != o.phase || c.m != o.m {
		return fmt.Errorf("%w: merging counters in different passes", ErrBadStats)
	}
	if c.phase == 0 {
		t := c.sum + o.sum
		if math.Abs(c.sum) >= math.Abs(o.sum) {
			c.comp += (c.sum - t) + o.sum
		} else {
			c.comp += (o.sum - t) + c.sum
		}
		c.sum = t
		c.comp += o.comp
		c.n += o.n
		return nil
	}
	if c.thr != o.thr {
		return fmt.Errorf("%w: merging counters with different thresholds", ErrBadStats)
	}
	c.above += o.above
	c.counted += o.counted
	return nil
}

// Fork returns an empty counter in c's pass (and with c's threshold in pass 2), for a worker
// whose result is later Merged into c.
func (c *OutlierCounter) Fork() *OutlierCounter {
	return &OutlierCounter{m: c.m, thr: c.thr, phase: c.phase}
}

// Outliers ends pass 2: the count above the threshold and the number of scores.
func (c *OutlierCounter) Outliers() (Outliers, error) {
	if c.phase != 1 {
		return Outliers{}, fmt.Errorf("%w: Outliers before Threshold", ErrBadStats)
	}
	if c.counted != c.n {
		return Outliers{}, fmt.Errorf("%w: pass 2 saw %d scores, pass 1 saw %d", ErrBadStats, c.counted, c.n)
	}
	return Outliers{Above: c.above, Total: c.n}, nil
}
