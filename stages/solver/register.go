package solver

import (
	"fmt"

	"github.com/wanda-go/wanda/pipeline"
)

func init() {
	pipeline.RegisterSolver(pipeline.SolverEntry{
		Name: "sparsegpt", Help: "SparseGPT: Hessian-based mask and update of the kept weights (needs calibration data)",
		New: func(p pipeline.Params) (pipeline.Solver, error) {
			if err := p.Only("blocksize", "percdamp"); err != nil {
				return nil, err
			}
			bs, err := p.Int("blocksize", DefaultBlockSize)
			if err != nil {
				return nil, err
			}
			pd, err := p.Float("percdamp", DefaultPercDamp)
			if err != nil {
				return nil, err
			}
			if bs <= 0 || !(pd > 0 && pd < 1) {
				return nil, fmt.Errorf("%w: blocksize %d, percdamp %g (want blocksize > 0 and 0 < percdamp < 1)", pipeline.ErrParam, bs, pd)
			}
			return NewSparseGPT(Options{BlockSize: bs, PercDamp: pd}), nil
		},
	})
}
