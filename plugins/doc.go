// Package plugins runs pruning stages out of process: metric and pattern plugins are
// executables (wanda-plugin-NAME) that wanda starts and talks to over gRPC with
// hashicorp/go-plugin. An opened plugin satisfies pipeline.Metric or pipeline.Pattern, like
// a built-in stage:
//
//	path, err := plugins.Resolve("plugin:ria", plugindirs)      // or a path
//	m, closer, err := plugins.OpenMetric(ctx, path, plugins.HostOptions{Args: args})
//	defer closer.Close()                                        // ends the process
//	scores, err := m.Score(ctx, w, stats, layerInfo)
//
// # Finding plugins
//
// Discover lists the executables named wanda-plugin-NAME in the given directories (from
// --plugin-dir) and then in $WANDA_PLUGIN_DIR (a path list); Resolve maps "plugin:NAME" to
// the first of them, and "plugin:PATH" (anything with a path separator or a leading ".")
// to that file. Probe starts a plugin just to read its Info (`wanda plugins list`).
//
// # Protocol (version 1)
//
// The wire protocol is plugins/proto/wanda_plugin.proto, package wanda.plugin.v1. The host
// starts the executable with WANDA_PLUGIN_MAGIC_COOKIE=7d1f3a9c5e0b4286a1c3e5f70b2d4968 in its
// environment; the plugin answers with go-plugin's handshake line on stdout
// ("1|1|unix|SOCKET|grpc": core version 1, application protocol version 1). A plugin that
// announces another application version is refused (ErrProtocol) before any call. The host
// then calls Info (name, kind, protocol version, one-line description, accepted
// --plugin-arg keys, whether a metric needs statistics) and checks the protocol version
// again, the kind (ErrKind) and the arguments (ErrArgs). Calls are Metric.Score and
// Pattern.Select, one linear layer each. gRPC messages are limited to 4 MiB both ways
// (grpc.MaxRecvMsgSize / MaxSendMsgSize on the plugin's server, MaxCallRecvMsgSize /
// MaxCallSendMsgSize on the host) since they never carry tensors.
//
// # Shared tensor files
//
// Tensors travel through files the host creates in HostOptions.ScratchDir (os.TempDir()
// by default; a tmpfs such as /dev/shm avoids disk writeback), inside a directory
// wanda-plugin-XXXXXXXX that the host process owns (package internal/staging: an owner lock
// wanda-plugin-XXXXXXXX.lock beside it, held with flock(2)); go-plugin's socket directory
// lives in such a directory too, in os.TempDir() (or /tmp when that path is too long for a
// socket address). The files are named wanda-plugin-scratch-*, mapped with mmap and reused
// across calls (they only grow), and removed with their directory by Close. When wanda is
// killed (SIGKILL, the OOM killer), the next plugin start removes the directories whose
// owner is dead. A request carries descriptors: path, byte offset (a multiple of 4096),
// dtype and shape. Every tensor is dense and row-major (last dimension fastest) with
// little-endian elements and no padding:
//
//	input file   W       f32 [out, in] at offset 0          (Score)  element (i, j) at 4·(i·in + j)
//	             S       f32 [in] at the next multiple of 4096 after W (Score; absent when
//	                     the metric does not need statistics). S_j = (1/N)·Σ_tokens x_j².
//	             scores  f32 [out, in] at offset 0          (Select)
//	result file  scores  f32 [out, in] at offset 0          (Score)
//	             mask    u8  [out, in] at offset 0, 1 = prune, 0 = keep (Select)
//
// The plugin maps inputs read-only and writes the result in place (never resizing the
// file); its reply repeats the result descriptor with the shape it wrote. The host fills
// the result with NaN (scores) or 0xFF (mask) before the call, so a result the plugin did
// not write is caught.
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
// Inputs are checked first: non-finite weights or statistics give pipeline.ErrNonFinite,
// and NaN scores given to a pattern too; invalid targets give pipeline.ErrBadTarget.
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
