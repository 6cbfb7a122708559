// Package pluginpb is the generated Go code (protoc-gen-go, protoc-gen-go-grpc) of
// wanda_plugin.proto, the wanda plugin protocol, application versions 1 and 2: a Plugin
// service (Info) served by every plugin, plus Metric (Score) or Pattern (Select) — version 1 —
// or Allocation (Observe, Allocate) or Refine (Applies, Refine), added by version 2.
// Messages carry tensor descriptors (path, offset, dtype, shape), never tensor data; see
// package plugins for the file layout. Regenerate with generate.sh after editing the .proto
// file.
package pluginpb
