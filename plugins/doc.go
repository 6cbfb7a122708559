// Package plugins runs pruning stages out of process: metric, pattern, allocation and refine
// plugins are executables (wanda-plugin-NAME) that wanda starts and talks to over gRPC with
// hashicorp/go-plugin. An opened plugin satisfies pipeline.Metric, pipeline.Pattern,
// pipeline.Allocator or pipeline.Refiner, like a built-in stage:
//
//	path, err := plugins.Resolve("plugin:ria", plugindirs)      // or a path
//	m, closer, err := plugins.OpenMetric(ctx, path, plugins.HostOptions{Args: args})
//	defer closer.Close()                                        // ends the process
//	scores, err := m.Score(ctx, w, stats, layerInfo)
//
// OpenPattern, OpenAllocator and OpenRefiner work the same way.
//
// # Finding plugins
//
// Discover lists the executables named wanda-plugin-NAME in the given directories (from
// --plugin-dir) and then in $WANDA_PLUGIN_DIR (a path list); Resolve maps "plugin:NAME" to
// the first of them, and "plugin:PATH" (anything with a path separator or a leading ".")
// to that file. Probe starts a plugin just to read its Info (`wanda plugins list`).
//
// # Protocol (versions 1 and 2)
//
// The wire protocol is plugins/proto/wanda_plugin.proto, package wanda.plugin.v1. The host
// starts the executable with WANDA_PLUGIN_MAGIC_COOKIE=7d1f3a9c5e0b4286a1c3e5f70b2d4968 and
// PLUGIN_PROTOCOL_VERSIONS=1,2 (the application protocol versions it speaks, go-plugin's
// VersionedPlugins) in its environment; the plugin picks the highest version it speaks too
// and answers with go-plugin's handshake line on stdout ("1|2|unix|SOCKET|grpc": core
// version 1, application protocol version 2). A plugin that announces a version the host
// does not speak is refused (ErrProtocol) before any call. The host then calls Info (name,
// kind, protocol version, one-line description, accepted argument keys, whether a metric
// needs statistics, which statistics a refine plugin reads) and checks that the plugin
// reports the version chosen in the handshake and a kind that version has (ErrProtocol),
// the kind wanted (ErrKind) and the arguments (ErrArgs). gRPC messages are limited to 4 MiB
// both ways (grpc.MaxRecvMsgSize / MaxSendMsgSize on the plugin's server,
// MaxCallRecvMsgSize / MaxCallSendMsgSize on the host) since they never carry tensors.
//
// Version 1 has the Metric (Score) and Pattern (Select) services, one linear layer per call.
// Version 2 adds the Allocation (Observe, Allocate) and Refine (Applies, Refine) services and
// changes nothing else: a plugin built with the SDK before version 2 announces 1 and keeps
// working, and a metric or pattern plugin built with today's SDK offers 1 and 2, so it works
// with older hosts too; an allocation or refine plugin offers 2 only.
//
// Allocation (pipeline.Allocator): Observe gets one decoder layer of the dense model in the
// allocation pre-pass — all its prunable linears, each with its weights in the stored dtype
// and its input statistics — and returns a summary of at most MaxSummary finite numbers;
// Allocate gets every layer's summary and the target and returns one sparsity per layer, in
// [0, 1). The host calls Observe in layer order, but a resumed run starts a new process part
// way (the summaries of the finished layers come from the checkpoint), so a summary must
// depend on its layer only.
//
// Refine (pipeline.Refiner): Applies says whether a tensor is refined at all (asked once per
// tensor; the host gathers statistics only for those); Refine gets a block of a tensor's rows
// — dense float32 weights, the chosen mask and the statistics the plugin asked for — and
// returns the refined mask, which must prune as many weights in every row as the chosen one
// (for N:M targets, in every group of M); blocks are sent concurrently.
//
// # Shared tensor files
//
// Tensors travel through files the host creates in HostOptions.ScratchDir (os.TempDir()
// by default; a tmpfs such as /dev/shm avoids disk writeback), inside a directory
// wanda-plugin-XXXXXXXX that the host process owns (package internal/staging: an owner lock
// wanda-plugin-XXXXXXXX.lock beside it, held with flock(2)); go-plugin's socket directory
// lives in such a directory too, in os.TempDir() (or /tmp when that path is too long for a
// socket address). The files are named wanda-plugin-scratch-*, mapped with mmap and reused
// across calls (they only grow), and removed with their directory by Close; an allocation
// plugin's, which hold a whole decoder layer's weights, are removed when Allocate ends the
// pre-pass. When wanda is
// killed (SIGKILL, the OOM killer), the next plugin start removes the directories whose
// owner is dead. A request carries descriptors: path, byte offset (a multiple of 4096),
// dtype and shape. Every tensor is dense and row-major (last dimension fastest) with
// little-endian elements and no padding, and starts at a multiple of 4096 (one tensor after
// the other in this order):
//
//	input file   W       f32 [out, in] at offset 0          (Score)  element (i, j) at 4·(i·in + j)
//	             S       f32 [in] (Score; absent when the metric does not need statistics).
//	                     S_j = (1/N)·Σ_tokens x_j².
//	             scores  f32 [out, in] at offset 0          (Select)
//	             for each linear of the layer (Observe):
//	               W     [out, in] as stored: f32, bf16 or f16 (2 bytes: a binary32's high
//	                     half, IEEE binary16)
//	               S, then Sum and Var if the dense pass gathered them, f32 [in]
//	             W       f32 [rows, in] at offset 0, a block of rows (Refine)
//	             mask    u8  [rows, in], the chosen mask (Refine)
//	             S, Sum, Var  f32 [in], those the plugin asked for (Refine)
//	result file  scores  f32 [out, in] at offset 0          (Score)
//	             mask    u8  [out, in] at offset 0, 1 = prune, 0 = keep (Select; Refine:
//	                     [rows, in])
//
// Sum_j = (1/N)·Σ_tokens x_j and Var_j = Σ_sequences Σ_tokens (x_j − the sequence's mean)² /
// tokens (see pipeline.Stats). The plugin maps inputs read-only and writes the result in
// place (never resizing the file); its reply repeats the result descriptor with the shape it
// wrote. The host fills the result with NaN (scores) or 0xFF (mask) before the call, so a
// result the plugin did not write is caught. Summaries and sparsities (a few numbers per
// layer) travel in the messages.
//
// # Failures
//
// Every error is an *Error naming the plugin (its reported name, else NAME from the file)
// and its path, the layer (pipeline.LayerInfo) for a call, and wrapping
// pipeline.ErrStageFailed plus a cause: ErrCrashed (the process died during the call; its
// exit status is in the message), ErrTimeout (no reply within HostOptions.Timeout; the
// process group is killed), ErrResult with pipeline.ErrShape or pipeline.ErrNonFinite (a
// result of the wrong shape, NaN or ±Inf scores, a mask entry other than 0/1), ErrFailed
// (the plugin returned an error; the process stays usable), ErrProtocol, ErrKind, ErrArgs,
// ErrStart, ErrNotFound, ErrClosed (a call after Close, or after a crash or timeout).
// ErrResult also covers an allocation's summary with more than MaxSummary values (with
// pipeline.ErrShape) or non-finite ones, a number of sparsities other than the number of
// layers (pipeline.ErrShape), a sparsity outside [0, 1) (pipeline.ErrBadTarget) or not
// finite, and a refined mask that changes a row's (an N:M group's) pruned count; a failed
// Refine leaves the mask as it was. An Allocator's errors name the layer observed ("layer
// 4 (7 linears)") or none (Allocate); a Refiner's name the tensor. A failed Applies call
// answers true and the tensor's Refine returns the failure, so no tensor is skipped
// silently. Inputs are checked first: non-finite weights or statistics give
// pipeline.ErrNonFinite, and NaN scores given to a pattern too; statistics of the wrong
// length, or missing ones a refine plugin reads, give pipeline.ErrShape; invalid targets
// give pipeline.ErrBadTarget.
//
// # Checkpoints
//
// Each opened plugin's String (Metric, Pattern, Allocator, Refiner) is "plugin:NAME(KIND
// sha256=HEX key="value" ...)": its reported name and kind, the SHA-256 of the executable
// when it was started, and its arguments sorted by key. A run puts it in its checkpoint key,
// so --resume continues only with the same plugin binary and arguments.
//
// # Processes
//
// The plugin runs in its own process group (on Linux with SIGKILL as its parent-death
// signal). When the plugin process ends, for any reason, the host kills its whole group
// before reaping it, so nothing the plugin started (a wrapper script's background job)
// survives it; a crash, a timeout or a cancelled context kills the group at once. The
// host owns the read ends of the plugin's stdout and stderr and closes them shortly after
// the plugin ended, so a descendant that still holds them cannot make the host wait.
// Close waits a few seconds at most for a graceful exit, then kills the group; nothing
// waits unboundedly for go-plugin. Opening a plugin stops at its timeout or when its
// context is cancelled (SIGINT or SIGTERM in wanda). A plugin built with the SDK also
// exits by itself if wanda dies. Only a descendant that leaves the process group (setsid)
// can outlive the plugin.
//
// # Logging
//
// HostOptions.Logger (slog.Default() if nil) receives the plugin's output, tagged with
// plugin=NAME: lines in hclog's JSON form (what sdk.Logger writes) at their own level,
// other stdout/stderr lines at the level of a "[DEBUG]"/"[INFO]"/"[WARN]"/"[ERROR]" prefix
// (default info), go-plugin's own messages at debug.
//
// Writing plugins: see package plugins/sdk and the examples in plugins/examples.
package plugins
