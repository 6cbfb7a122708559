// Package sdk turns Go functions into a wanda plugin: an executable that the wanda host
// starts and talks to over gRPC (hashicorp/go-plugin). A plugin is one of four kinds:
//
//	metric      ServeMetric      scores the weights of one linear layer
//	pattern     ServePattern     turns one linear layer's scores into a mask
//	allocation  ServeAllocation  summarises each decoder layer of the dense model (Observe),
//	                             then gives every layer its sparsity (Allocate)
//	refine      ServeRefine      changes the mask chosen for a block of rows, keeping each
//	                             row's pruned count
//
// A metric plugin is a short main:
//
//	package main
//
//	import (
//		"math"
//
//		"github.com/wanda-go/wanda/plugins/sdk"
//	)
//
//	func main() {
//		sdk.ServeMetric(sdk.MetricInfo{Name: "wanda", Description: "|W|·sqrt(S), out of process"},
//			func(w, s sdk.Tensor, info sdk.LayerInfo) (sdk.Tensor, error) {
//				rows, cols := w.Shape[0], w.Shape[1]
//				out := sdk.NewTensor(rows, cols)
//				for i := 0; i < rows; i++ {
//					for j := 0; j < cols; j++ {
//						out.Data[i*cols+j] = float32(math.Abs(float64(w.Data[i*cols+j]))) *
//							float32(math.Sqrt(float64(s.Data[j])))
//					}
//				}
//				return out, nil
//			})
//	}
//
// Build it as an executable named wanda-plugin-NAME, put it in a directory given by
// --plugin-dir or $WANDA_PLUGIN_DIR, and use it with `wanda prune --method plugin:NAME`
// (`--pattern plugin:NAME` for a pattern, `--allocation plugin:NAME`, `--refine
// plugin:NAME`). `wanda plugins list` shows what it reports. ExampleServeAllocation and
// ExampleServeRefine show the other kinds; plugins/examples/owl and plugins/examples/dsnot
// are complete ones.
//
// Data layout: every Tensor is dense, row-major (the last dimension varies fastest) float32.
// The weight W is [out, in] (element (i, j) at Data[i*in+j]); the statistics S are [in], with
// S[j] = (1/Samples) · Σ over calibration tokens of x_j², the input's mean squared activation
// per sequence; scores are [out, in]. A pattern returns a Mask [out, in] whose true entries are
// pruned. Input tensors are read-only views of memory-mapped files: writing to them crashes
// the plugin. The returned tensor must have exactly the input's shape; the SDK copies it into
// the result file the host created, and the host rejects any other shape, NaN or ±Inf scores.
//
// An allocation plugin's Observe gets a decoder layer's linears: each one's Weights [out, in]
// in the model's stored dtype (F32, BF16 or F16; RowsF32 widens a block of rows) and its
// Stats; it returns a few numbers (at most MaxSummary), all Allocate will know about the
// layer. A resumed run calls Observe for the remaining layers in a new process, so a summary
// must depend only on the call's arguments. Allocate returns one sparsity in [0, 1) per layer.
//
// A refine plugin gets W [rows, in] (dense float32, a block of one tensor's rows; blocks
// arrive concurrently), the chosen Mask and the Stats it declared in RefineInfo.Needs
// (SumSq, Sum, Var, each [in]), and returns a mask with the same number pruned in every row
// (in every group of M for N:M targets); the host refuses anything else. RefineInfo.Applies
// leaves whole tensors alone.
//
// Options given as `--plugin-arg key=value` (`--allocation-arg`, `--refine-arg` for those
// kinds) arrive in LayerInfo.Args (the args parameter of Observe and Allocate); declare the
// accepted keys in MetricInfo.Args (PatternInfo, AllocationInfo, RefineInfo) so the host
// rejects misspelt ones, and check their values early in CheckArgs.
//
// A plugin's standard error goes to the host's log; Logger returns a slog.Logger writing in
// the format the host parses, so levels and attributes survive. A panic in the function is
// returned to the host as an error; the process keeps serving.
//
// The wire protocol is plugins/proto/wanda_plugin.proto. Metric and pattern plugins speak
// application protocol versions 1 and 2 (so hosts from before version 2 can use them),
// allocation and refine plugins version 2. A plugin in another language implements it
// directly.
package sdk
