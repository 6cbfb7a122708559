package metric

import (
	"fmt"
	"math"

	"github.com/wanda-go/wanda/pipeline"
)

func init() {
	pipeline.RegisterMetric(pipeline.MetricEntry{
		Name: "wanda", Help: "|W_ij| · ‖X_j‖₂ per output row (needs calibration data)", Group: pipeline.GroupRow,
		New: func(p pipeline.Params) (pipeline.Metric, error) { return Wanda{}, p.Only() },
	})
	pipeline.RegisterMetric(pipeline.MetricEntry{
		Name: "ria", Help: "RIA, relative importance and activations: (|W_ij|/Σ_i|W_ij| + |W_ij|/Σ_j|W_ij|)·‖X_j‖^a (param a, default 0.5)",
		Group: pipeline.GroupRow,
		New: func(p pipeline.Params) (pipeline.Metric, error) {
			if err := p.Only("a"); err != nil {
				return nil, err
			}
			r := DefaultRIA()
			var err error
			if r.A, err = p.Float("a", r.A); err != nil {
				return nil, err
			}
			if math.IsNaN(r.A) || math.IsInf(r.A, 0) {
				return nil, fmt.Errorf("%w: a=%v (want a finite number)", pipeline.ErrParam, r.A)
			}
			return r, nil
		},
	})
	pipeline.RegisterMetric(pipeline.MetricEntry{
		Name: "magnitude", Help: "|W_ij|, compared over the whole matrix as the reference does (no calibration data)",
		Group: pipeline.GroupMatrix,
		New:   func(p pipeline.Params) (pipeline.Metric, error) { return Magnitude{}, p.Only() },
	})
}
