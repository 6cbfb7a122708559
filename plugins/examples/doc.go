// Package examples holds example wanda plugins, each a main package built with the SDK
// (plugins/sdk): wanda (the Wanda metric |W|·sqrt(S), out of process), ria (Relative
// Importance and Activations), schedule (a pattern with a per-layer sparsity schedule), owl
// (OWL's layer-wise sparsity allocation) and dsnot (DSnoT's mask refinement). Build one as
// wanda-plugin-NAME into a plugin directory:
//
//	go build -o ~/.wanda/plugins/wanda-plugin-ria ./plugins/examples/ria
//	wanda plugins list --plugin-dir ~/.wanda/plugins
//
// Tensors are row-major: W and scores [out, in] float32 (an allocation plugin's W in the
// model's stored dtype), statistics [in] float32, masks [out, in].
package examples
