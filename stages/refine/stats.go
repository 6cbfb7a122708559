package refine

import "github.com/wanda-go/wanda/pipeline"

// Accumulator gathers the statistics of one linear input (pipeline.ChannelAccumulator).
type Accumulator = pipeline.ChannelAccumulator

// NewAccumulator is pipeline.NewChannelAccumulator: float64 sums, rounded once.
func NewAccumulator(cols, seqlen int, need StatsKind) *Accumulator {
	return pipeline.NewChannelAccumulator(cols, seqlen, need)
}

// NewRunningAccumulator is pipeline.NewRunningAccumulator: DSnoT's and Wanda's float32
// running averages, operation by operation.
func NewRunningAccumulator(cols, seqlen int, need StatsKind) *Accumulator {
	return pipeline.NewRunningAccumulator(cols, seqlen, need)
}
