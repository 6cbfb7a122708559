package metric

import "github.com/wanda-go/wanda/pipeline"

func init() {
	pipeline.RegisterMetric(pipeline.MetricEntry{
		Name: "wanda", Help: "|W_ij| · ‖X_j‖₂ per output row (needs calibration data)", Group: pipeline.GroupRow,
		New: func(p pipeline.Params) (pipeline.Metric, error) { return Wanda{}, p.Only() },
	})
	pipeline.RegisterMetric(pipeline.MetricEntry{
		Name: "magnitude", Help: "|W_ij|, compared over the whole matrix as the reference does (no calibration data)",
		Group: pipeline.GroupMatrix,
		New:   func(p pipeline.Params) (pipeline.Metric, error) { return Magnitude{}, p.Only() },
	})
}
