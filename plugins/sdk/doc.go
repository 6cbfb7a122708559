// Package sdk turns a Go function into a wanda plugin: an executable that the wanda host
// starts and talks to over gRPC (hashicorp/go-plugin), scoring weights (a metric) or turning
// scores into a mask (a pattern) for one linear layer at a time.
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
// (`--pattern plugin:NAME` for a pattern). `wanda plugins list` shows what it reports.
//
// Data layout: every Tensor is dense, row-major (the last dimension varies fastest) float32.
// The weight W is [out, in] (element (i, j) at Data[i*in+j]); the statistics S are [in], with
// S[j] = (1/Samples) · Σ over calibration tokens of x_j², the input's mean squared activation
// per sequence; scores are [out, in]. A pattern returns a Mask [out, in] whose true entries are
// pruned. Input tensors are read-only views of memory-mapped files: writing to them crashes
// the plugin. The returned tensor must have exactly the input's shape; the SDK copies it into
// the result file the host created, and the host rejects any other shape, NaN or ±Inf scores.
//
// Options given as `--plugin-arg key=value` arrive in LayerInfo.Args; declare the accepted
// keys in MetricInfo.Args / PatternInfo.Args so the host rejects misspelt ones, and check
// their values early in CheckArgs.
//
// A plugin's standard error goes to the host's log; Logger returns a slog.Logger writing in
// the format the host parses, so levels and attributes survive. A panic in the function is
// returned to the host as an error; the process keeps serving.
//
// The wire protocol is plugins/proto/wanda_plugin.proto (application protocol version 1);
// a plugin in another language implements it directly.
package sdk
