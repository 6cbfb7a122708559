package refine

import (
	"fmt"

	"github.com/wanda-go/wanda/pipeline"
)

func init() {
	pipeline.RegisterRefiner(pipeline.RefinerEntry{
		Name:  "dsnot",
		Help:  "DSnoT: swap pruned and kept weights of each row to shrink the reconstruction error (params max-cycles, update-threshold, pow-of-var, same-sign, initial, skip-layer, skip-sub-layer)",
		Group: pipeline.GroupRow,
		New: func(p pipeline.Params) (pipeline.Refiner, error) {
			if err := p.Only("max-cycles", "update-threshold", "pow-of-var", "same-sign", "initial", "skip-layer", "skip-sub-layer"); err != nil {
				return nil, err
			}
			d := DefaultDSnoT()
			var err error
			if d.MaxCycles, err = p.Int("max-cycles", d.MaxCycles); err != nil {
				return nil, err
			}
			if d.UpdateThreshold, err = p.Float("update-threshold", d.UpdateThreshold); err != nil {
				return nil, err
			}
			if d.PowVarRegrowing, err = p.Float("pow-of-var", d.PowVarRegrowing); err != nil {
				return nil, err
			}
			switch v := p["same-sign"]; v {
			case "", "false":
			case "true":
				d.SameSign = true
			default:
				return nil, fmt.Errorf("%w: same-sign=%q (want true or false)", pipeline.ErrParam, v)
			}
			if v, ok := p["initial"]; ok {
				d.Initial = v
			}
			if v, ok := p["skip-layer"]; ok {
				d.SkipLayer = v
			}
			if v, ok := p["skip-sub-layer"]; ok {
				d.SkipSubLayer = v
			}
			if err := d.Validate(); err != nil {
				return nil, err
			}
			return d, nil
		},
	})
}
