// Package examples holds example wanda plugins, each a main package built with the SDK
// (plugins/sdk): wanda (the Wanda metric |W|·sqrt(S), out of process), ria (Relative
// Importance and Activations) and schedule (a pattern with a per-layer sparsity schedule).
// Build one as wanda-plugin-NAME into a plugin directory:
//
//	go build -o ~/.wanda/plugins/wanda-plugin-ria ./plugins/examples/ria
//	wanda plugins list --plugin-dir ~/.wanda/plugins
//
// Tensors are row-major float32: W and scores [out, in], S [in].
package examples
