package allocate

import (
	"errors"
	"fmt"
	"math"
)

// Sentinel errors.
var (
	// ErrBadParam reports an allocation parameter out of range (M, λ, the target sparsity).
	ErrBadParam = errors.New("allocate: invalid parameter")
	// ErrBadStats reports per-layer statistics that cannot be allocated from (no layers, a
	// layer without scores, a NaN score, a pass used out of order).
	ErrBadStats = errors.New("allocate: invalid statistics")
	// ErrInfeasible reports an allocation that would prune a whole layer (sparsity ≥ 1).
	ErrInfeasible = errors.New("allocate: infeasible allocation")
	// ErrBadFile reports a sparsity file that does not parse or does not fit the model.
	ErrBadFile = errors.New("allocate: invalid sparsity file")
)

// OWL is the layer-wise allocation of Outlier Weighed Layerwise sparsity (Yin et al., 2023;
// luuyin/OWL lib/prune_all.py prune_wanda_outlier). Each decoder layer's outlier ratio
// (OutlierCounter) is min-max scaled to [0, 2λ], shifted so that the layer densities average
// 1 − target, and each layer is pruned at 1 − its density.
type OWL struct {
	// M is OWL's Hyper_m: a score is an outlier when it exceeds M × the layer's mean score.
	M float64
	// Lambda is OWL's Lamda: the densities span at most 2λ.
	Lambda float64
}

// DefaultOWL returns OWL's published settings, M = 5 and λ = 0.08 (OWL's README command).
func DefaultOWL() OWL { return OWL{M: 5, Lambda: 0.08} }

// Validate checks M and λ.
func (o OWL) Validate() error {
	if !(o.M > 0) || math.IsInf(o.M, 0) {
		return fmt.Errorf("%w: OWL M = %v (want a finite number > 0)", ErrBadParam, o.M)
	}
	if !(o.Lambda >= 0) || math.IsInf(o.Lambda, 0) {
		return fmt.Errorf("%w: OWL lambda = %v (want a finite number ≥ 0)", ErrBadParam, o.Lambda)
	}
	return nil
}

// Outliers is one decoder layer's outlier count: Above of its Total Wanda scores (all its
// linears together) exceed M × their mean.
type Outliers struct {
	Above, Total int64
}

// Ratio returns the outlier ratio in percent, as OWL's check_outlier_mean computes it:
// float(count) / total_params * 100 in float64.
func (o Outliers) Ratio() float64 { return float64(o.Above) / float64(o.Total) * 100 }

// Allocation is OWL's result for one model.
type Allocation struct {
	// Ratios are the layers' outlier ratios in percent (OWL's "before adjustment").
	Ratios []float64
	// Densities are the shifted and scaled ratios (OWL's "after adjustment"): each layer keeps
	// this fraction of its weights.
	Densities []float64
	// Sparsities are 1 − Densities, with OWL's floor: a value ≤ 0 becomes 0.01. Layer i prunes
	// int(cols × Sparsities[i]) weights of each row (wanda's per-row count, float64 product).
	Sparsities []float64
}

// Allocate computes each layer's sparsity from its outlier count for a model-wide target
// sparsity in [0, 1). The arithmetic is OWL's numpy float64 arithmetic operation for
// operation (prune_all.py lines 962-966 and 1054-1058 at dddb7a4):
//
//	r = ratios                                  (percent)
//	r = (r − min r) · ((1 / (max r − min r)) · λ · 2)
//	d = (r − mean r) + (1 − target)             (mean: numpy's pairwise sum / n)
//	s = 1 − d; s ≤ 0 → 0.01
//
// When every layer has the same ratio OWL divides 0 by 0 (NaN sparsities); here every layer
// gets the target instead. A layer whose sparsity reaches 1 is an error (ErrInfeasible):
// OWL would prune the whole layer.
func (o OWL) Allocate(layers []Outliers, target float64) (Allocation, error) {
	if err := o.Validate(); err != nil {
		return Allocation{}, err
	}
	if !(target >= 0 && target < 1) {
		return Allocation{}, fmt.Errorf("%w: target sparsity %v (want 0 ≤ s < 1)", ErrBadParam, target)
	}
	if len(layers) == 0 {
		return Allocation{}, fmt.Errorf("%w: no layers", ErrBadStats)
	}
	ratios := make([]float64, len(layers))
	for i, l := range layers {
		if l.Total <= 0 || l.Above < 0 || l.Above > l.Total {
			return Allocation{}, fmt.Errorf("%w: layer %d: %d outliers of %d scores", ErrBadStats, i, l.Above, l.Total)
		}
		ratios[i] = l.Ratio()
	}
	a, err := o.FromRatios(ratios, target)
	if err != nil {
		return Allocation{}, err
	}
	return a, nil
}

// FromRatios is Allocate from ratios already in percent (e.g. OWL's own printed "before
// adjustment" values).
func (o OWL) FromRatios(ratios []float64, target float64) (Allocation, error) {
	if err := o.Validate(); err != nil {
		return Allocation{}, err
	}
	if !(target >= 0 && target < 1) {
		return Allocation{}, fmt.Errorf("%w: target sparsity %v (want 0 ≤ s < 1)", ErrBadParam, target)
	}
	if len(ratios) == 0 {
		return Allocation{}, fmt.Errorf("%w: no layers", ErrBadStats)
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for i, r := range ratios {
		if math.IsNaN(r) || math.IsInf(r, 0) {
			return Allocation{}, fmt.Errorf("%w: layer %d: outlier ratio %v", ErrBadStats, i, r)
		}
		lo, hi = min(lo, r), max(hi, r)
	}
	a := Allocation{
		Ratios:     append([]float64(nil), ratios...),
		Densities:  make([]float64, len(ratios)),
		Sparsities: make([]float64, len(ratios)),
	}
	if hi == lo {
		for i := range ratios {
			a.Densities[i] = 1 - target
			a.Sparsities[i] = target
		}
		return a, nil
	}
	scale := 1 / (hi - lo) * o.Lambda * 2 // left to right, as Python evaluates it
	scaled := make([]float64, len(ratios))
	for i, r := range ratios {
		scaled[i] = (r - lo) * scale
	}
	mean := pairwiseSum(scaled) / float64(len(scaled))
	keep := 1 - target
	for i, v := range scaled {
		d := v - mean + keep
		s := 1 - d
		if s <= 0 {
			s = 0.01 // prune_all.py: if layer_sparsity_ratio <= 0: layer_sparsity_ratio = 0.01
		}
		if !(s < 1) {
			return Allocation{}, fmt.Errorf("%w: layer %d would be pruned at %v (density %v); use a smaller λ", ErrInfeasible, i, s, d)
		}
		a.Densities[i], a.Sparsities[i] = d, s
	}
	return a, nil
}

// pairwiseSum is numpy's float64 add.reduce of a contiguous array (pairwise_sum in
// numpy/_core/src/umath/loops_utils.h.src): fewer than 8 values are summed in order from
// -0.0; up to 128 with eight interleaved accumulators combined as ((r0+r1)+(r2+r3)) +
// ((r4+r5)+(r6+r7)) and the remainder added in order; longer arrays split at n/2 rounded
// down to a multiple of 8.
func pairwiseSum(a []float64) float64 {
	n := len(a)
	switch {
	case n < 8:
		res := math.Copysign(0, -1)
		for _, v := range a {
			res += v
		}
		return res
	case n <= 128:
		var r [8]float64
		copy(r[:], a[:8])
		i := 8
		for ; i < n-n%8; i += 8 {
			for k := range 8 {
				r[k] += a[i+k]
			}
		}
		res := ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
		for ; i < n; i++ {
			res += a[i]
		}
		return res
	default:
		n2 := n / 2
		n2 -= n2 % 8
		return pairwiseSum(a[:n2]) + pairwiseSum(a[n2:])
	}
}
