package plugins

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/wanda-go/wanda/internal/staging"
	"github.com/wanda-go/wanda/pipeline"
	"github.com/wanda-go/wanda/plugins/internal/shm"
	"github.com/wanda-go/wanda/plugins/internal/wire"
	pb "github.com/wanda-go/wanda/plugins/proto"
)

// ProtocolVersion is the newest plugin protocol version this host speaks; it also speaks
// every version from MinProtocolVersion on, and a plugin gets the highest one it speaks too.
const ProtocolVersion = wire.ProtocolVersion

// MinProtocolVersion is the oldest plugin protocol version this host speaks (metric and
// pattern plugins built before protocol version 2).
const MinProtocolVersion = wire.MinProtocolVersion

// DefaultTimeout bounds a plugin's start and each of its calls when HostOptions.Timeout is 0.
const DefaultTimeout = 5 * time.Minute

// HostOptions configure a plugin connection.
type HostOptions struct {
	// Args are passed to every call (from --plugin-arg key=value). A plugin that declares its
	// keys rejects any other when it is opened.
	Args map[string]string
	// Timeout bounds the start and each call (DefaultTimeout if 0). A call still running
	// then fails with ErrTimeout and the plugin process is killed.
	Timeout time.Duration
	// Logger receives go-plugin's messages and the plugin's standard error (slog.Default()
	// if nil).
	Logger *slog.Logger
	// ScratchDir holds the shared tensor files (os.TempDir() if empty). A tmpfs such as
	// /dev/shm avoids disk writeback; it needs room for two copies of the largest matrix
	// (per call in flight), and for an allocation plugin one decoder layer's prunable weights
	// in their stored dtype.
	ScratchDir string
	// Env is added to the plugin's environment (after the host's, so it wins).
	Env []string

	// versions, if set, replaces the protocol versions offered (tests: an older host).
	versions []int
}

// Kind is a plugin's stage kind.
type Kind string

const (
	KindMetric     Kind = "metric"
	KindPattern    Kind = "pattern"
	KindAllocation Kind = "allocation" // protocol version 2
	KindRefine     Kind = "refine"     // protocol version 2
)

func kindOf(k pb.Kind) Kind {
	switch k {
	case pb.Kind_KIND_METRIC:
		return KindMetric
	case pb.Kind_KIND_PATTERN:
		return KindPattern
	case pb.Kind_KIND_ALLOCATION:
		return KindAllocation
	case pb.Kind_KIND_REFINE:
		return KindRefine
	}
	return Kind(fmt.Sprintf("unknown(%d)", int32(k)))
}

// ArgSpec documents one --plugin-arg key a plugin accepts.
type ArgSpec struct {
	Name string `json:"name"`
	Help string `json:"help,omitempty"`
}

// Info is what a plugin reports about itself.
type Info struct {
	Name            string `json:"name"`
	Path            string `json:"path"`
	Kind            Kind   `json:"kind"`
	ProtocolVersion int    `json:"protocol_version"`
	Description     string `json:"description"`
	NeedsStats      bool   `json:"needs_stats,omitempty"`
	// RefineStats are the statistics a refine plugin reads ("sumsq+sum+var"; "" otherwise).
	RefineStats string    `json:"refine_stats,omitempty"`
	Args        []ArgSpec `json:"args,omitempty"`
	// SHA256 is the hex SHA-256 of the executable when it was started.
	SHA256 string `json:"sha256,omitempty"`
}

// conn is one running plugin process.
type conn struct {
	path    string
	name    string // the plugin's reported name once known, else from the file name
	timeout time.Duration
	args    map[string]string
	log     *slog.Logger

	client *plugin.Client
	proc   *proc
	rpc    *wire.Clients
	info   Info
	stats  pipeline.StatsKind // a refine plugin's statistics
	// Owner-locked directories of this process (a later run removes them if it
	// is killed): scratch holds the tensor files, sock go-plugin's socket
	// directory (in os.TempDir(), whose path is short enough for a socket).
	// They are the same directory when ScratchDir is os.TempDir().
	scratch, sock *staging.Dir
	pool          *shm.Pool

	mu      sync.RWMutex // calls hold it shared; close holds it exclusively
	deadMu  sync.Mutex
	dead    error // why the process is gone; calls fail with it
	killed  bool
	closeMu sync.Once
}

func nameFromPath(path string) string {
	return strings.TrimPrefix(strings.TrimSuffix(filepath.Base(path), ".exe"), Prefix)
}

func (c *conn) errf(op string, li *pipeline.LayerInfo, errs ...error) *Error {
	return &Error{Plugin: c.name, Path: c.path, Op: op, Layer: li, Errs: errs}
}

// start launches the plugin at path, checks the handshake and its Info, and wants kind
// (any kind if want is "").
func start(ctx context.Context, path string, opts HostOptions, want Kind) (*conn, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, &Error{Plugin: nameFromPath(path), Path: path, Op: "start", Errs: []error{ErrNotFound, err}}
	}
	c := &conn{path: abs, name: nameFromPath(abs), timeout: opts.Timeout, args: opts.Args, log: opts.Logger}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	if err := checkExecutable(abs); err != nil {
		return nil, c.errf("start", nil, ErrNotFound, err)
	}
	sum, err := fileSHA256(abs)
	if err != nil {
		return nil, c.errf("start", nil, ErrNotFound, err)
	}
	scratch := opts.ScratchDir
	if scratch == "" {
		scratch = os.TempDir()
	}
	if scratch, err = filepath.Abs(scratch); err != nil {
		return nil, c.errf("start", nil, err)
	}

	// The tensor files and the plugin's socket live in directories of this
	// process, owner-locked: a later run removes them if this one is killed.
	sockParent := socketParent()
	if c.sock, err = staging.Temp(sockParent, "wanda-plugin"); err != nil {
		return nil, c.errf("start", nil, ErrStart, err)
	}
	c.scratch = c.sock
	if tmp, _ := filepath.Abs(sockParent); scratch != tmp {
		if c.scratch, err = staging.Temp(scratch, "wanda-plugin"); err != nil {
			c.removeScratch()
			return nil, c.errf("start", nil, ErrStart, err)
		}
	}
	c.proc = newProc(abs, opts.Env)
	c.client = plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  wire.Handshake,
		VersionedPlugins: wire.HostPlugins(opts.versions...),
		RunnerFunc:       c.proc.runnerFunc,
		SkipHostEnv:      true, // the runner adds it, before opts.Env
		UnixSocketConfig: &plugin.UnixSocketConfig{TempDir: c.sock.Path},
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		Logger:           newHCLog(c.log, c.name),
		GRPCDialOptions:  wire.DialOptions(),
		StartTimeout:     c.timeout,
		SyncStdout:       &lineLogger{l: c.log.With("plugin", c.name), stream: "stdout", def: slog.LevelInfo},
		SyncStderr:       &lineLogger{l: c.log.With("plugin", c.name), stream: "stderr", def: slog.LevelInfo},
	})
	ok := false
	defer func() {
		if !ok {
			c.kill(nil)
			c.removeScratch()
		}
	}()
	proto, err := c.handshake(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil, c.errf("start", nil, ErrStart, ctx.Err())
		}
		if strings.Contains(strings.ToLower(err.Error()), "incompatible api version") {
			return nil, c.errf("handshake", nil, ErrProtocol,
				fmt.Errorf("host speaks protocol versions %s: %v", versionList(opts.versions), oneLine(err)))
		}
		msg := oneLine(err)
		if ps, exited := c.proc.exitState(drainGrace); exited && ps != nil {
			msg += " (process ended: " + ps.String() + ")"
		}
		return nil, c.errf("start", nil, ErrStart, errors.New(msg))
	}
	raw, err := proto.Dispense(wire.StageName)
	if err != nil {
		return nil, c.errf("start", nil, ErrStart, err)
	}
	c.rpc = raw.(*wire.Clients)

	negotiated := uint32(c.client.NegotiatedVersion())
	ictx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	resp, err := c.rpc.Plugin.Info(ictx, &pb.InfoRequest{HostProtocolVersion: negotiated, Args: opts.Args})
	if err != nil {
		if st, _ := status.FromError(err); st.Code() == codes.InvalidArgument {
			return nil, c.errf("info", nil, ErrArgs, errors.New(st.Message()))
		}
		return nil, c.callError(ctx, ictx, "info", nil, err)
	}
	if resp.Name != "" {
		c.name = resp.Name
	}
	c.info = Info{
		Name: c.name, Path: abs, Kind: kindOf(resp.Kind), ProtocolVersion: int(resp.ProtocolVersion),
		Description: resp.Description, NeedsStats: resp.NeedsStats, SHA256: sum,
	}
	for _, a := range resp.Args {
		c.info.Args = append(c.info.Args, ArgSpec{Name: a.Name, Help: a.Help})
	}
	if resp.ProtocolVersion != negotiated {
		return nil, c.errf("info", nil, ErrProtocol, fmt.Errorf("plugin reports protocol version %d, the handshake chose %d",
			resp.ProtocolVersion, negotiated))
	}
	first := wire.KindVersion(resp.Kind)
	if first == 0 {
		return nil, c.errf("info", nil, ErrKind, fmt.Errorf("unknown kind %d", int32(resp.Kind)))
	}
	if uint(negotiated) < first {
		return nil, c.errf("info", nil, ErrProtocol, fmt.Errorf("%s plugins need protocol version %d or later; the plugin speaks %d",
			c.info.Kind, first, negotiated))
	}
	if want != "" && c.info.Kind != want {
		return nil, c.errf("info", nil, ErrKind, fmt.Errorf("it is %s plugin, not %s plugin", article(c.info.Kind), article(want)))
	}
	if c.info.Kind == KindRefine {
		if c.stats, err = statsKind(resp.RefineStats); err != nil {
			return nil, c.errf("info", nil, ErrProtocol, err)
		}
		if c.stats != 0 {
			c.info.RefineStats = c.stats.String()
		}
	} else if len(resp.RefineStats) > 0 {
		return nil, c.errf("info", nil, ErrProtocol, fmt.Errorf("a %s plugin reports refine statistics", c.info.Kind))
	}
	if err := checkArgs(opts.Args, c.info.Args); err != nil {
		return nil, c.errf("info", nil, ErrArgs, err)
	}
	c.pool = shm.NewPool(c.scratch.Path)
	ok = true
	return c, nil
}

// article prefixes a kind with "a" or "an".
func article(k Kind) string {
	if strings.ContainsRune("aeiou", rune(k[0])) {
		return "an " + string(k)
	}
	return "a " + string(k)
}

// versionList formats the protocol versions offered ("1-2", or the test override).
func versionList(vs []int) string {
	if len(vs) == 0 {
		return fmt.Sprintf("%d-%d", wire.MinProtocolVersion, wire.ProtocolVersion)
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	return strings.Trim(strings.ReplaceAll(fmt.Sprint(s), " ", ", "), "[]")
}

// statsKind converts a refine plugin's statistics.
func statsKind(ss []pb.Stat) (pipeline.StatsKind, error) {
	var k pipeline.StatsKind
	for _, s := range ss {
		switch s {
		case pb.Stat_STAT_SUM_SQ:
			k |= pipeline.StatsSumSq
		case pb.Stat_STAT_SUM:
			k |= pipeline.StatsSum
		case pb.Stat_STAT_VAR:
			k |= pipeline.StatsVar
		default:
			return 0, fmt.Errorf("unknown statistic %d", int32(s))
		}
	}
	return k, nil
}

// fileSHA256 returns the hex SHA-256 of the file at path.
func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// key identifies the plugin for a run's checkpoint: what it reports, its executable's
// contents and the arguments it gets (sorted).
func (c *conn) key() string {
	keys := make([]string, 0, len(c.args))
	for k := range c.args {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	fmt.Fprintf(&b, "plugin:%s(%s sha256=%s", c.info.Name, c.info.Kind, c.info.SHA256)
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%q", k, c.args[k])
	}
	b.WriteString(")")
	return b.String()
}

// socketParent is where the plugin's socket directory goes: os.TempDir(), or
// /tmp when that path is too long for a Unix socket address (at most 107 bytes
// on Linux, 103 on macOS) with what go-plugin and the plugin append to it.
func socketParent() string {
	const tail = len("/wanda-plugin-01234567/plugin-dir0123456789/plugin0123456789")
	d := os.TempDir()
	if len(d)+tail <= 100 {
		return d
	}
	if fi, err := os.Stat("/tmp"); err == nil && fi.IsDir() {
		return "/tmp"
	}
	return d
}

// handshake starts the process and waits for go-plugin's handshake (bounded by
// the timeout), or for ctx: then it kills the process and returns.
func (c *conn) handshake(ctx context.Context) (plugin.ClientProtocol, error) {
	type result struct {
		proto plugin.ClientProtocol
		err   error
	}
	ch := make(chan result, 1)
	go func() {
		p, err := c.client.Client()
		ch <- result{p, err}
	}()
	select {
	case r := <-ch:
		return r.proto, r.err
	case <-ctx.Done():
		c.proc.kill() // makes Client return (the pipes close)
		select {
		case <-ch:
		case <-time.After(killWait):
		}
		return nil, ctx.Err()
	}
}

// removeScratch removes the scratch directories (tensor files and socket).
func (c *conn) removeScratch() error {
	var errs []error
	if c.scratch != nil {
		errs = append(errs, c.scratch.Remove())
	}
	if c.sock != nil && c.sock != c.scratch {
		errs = append(errs, c.sock.Remove())
	}
	c.scratch, c.sock = nil, nil
	return errors.Join(errs...)
}

func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

func checkExecutable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", path)
	}
	if fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not executable", path)
	}
	return nil
}

func checkArgs(args map[string]string, specs []ArgSpec) error {
	if len(specs) == 0 {
		return nil
	}
	var names []string
	for _, s := range specs {
		names = append(names, s.Name)
	}
	var bad []string
	for k := range args {
		if !slices.Contains(names, k) {
			bad = append(bad, k)
		}
	}
	if len(bad) > 0 {
		slices.Sort(bad)
		return fmt.Errorf("unknown argument(s) %s (accepted: %s)", strings.Join(bad, ", "), strings.Join(names, ", "))
	}
	return nil
}

// How long kill waits for go-plugin's Client.Kill: first for a graceful exit
// (go-plugin itself waits up to 2 s for it), then, after the process group was
// killed, for its goroutines to finish. It never waits longer.
const (
	gracefulWait = 3 * time.Second
	killWait     = 2 * time.Second
)

// kill ends the process (its whole process group) and records why; safe to call
// repeatedly. It never blocks for more than gracefulWait+killWait: go-plugin's
// Client.Kill waits for the plugin's stdio pipes, which a child of a wrapper
// script may hold, so it runs aside and the process group is killed regardless.
func (c *conn) kill(reason error) {
	c.deadMu.Lock()
	if c.dead == nil && reason != nil {
		c.dead = reason
	}
	if c.killed {
		c.deadMu.Unlock()
		return
	}
	c.killed = true
	c.deadMu.Unlock()
	if reason != nil {
		// The plugin is hung or misbehaving: no graceful shutdown.
		c.proc.kill()
	}
	done := make(chan struct{})
	go func() {
		c.client.Kill()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(gracefulWait):
	}
	c.proc.kill() // anything the plugin started
	select {
	case <-done:
	case <-time.After(killWait):
		c.log.Warn("plugin: gave up waiting for the plugin's connection to close", "plugin", c.name, "path", c.path)
	}
}

func (c *conn) deadErr() error {
	c.deadMu.Lock()
	defer c.deadMu.Unlock()
	return c.dead
}

// closedErr is the error of a call to a dead plugin; dead says why it is gone.
func (c *conn) closedErr(op string, li *pipeline.LayerInfo, dead error) error {
	if errors.Is(dead, ErrClosed) {
		return c.errf(op, li, ErrClosed)
	}
	return c.errf(op, li, ErrClosed, dead)
}

// pid returns the plugin's process id (0 if it never started).
func (c *conn) pid() int {
	if c.proc == nil {
		return 0
	}
	return c.proc.Pid()
}

// Close ends the plugin process and removes the scratch files.
func (c *conn) Close() error {
	var err error
	c.closeMu.Do(func() {
		c.deadMu.Lock()
		if c.dead == nil {
			c.dead = ErrClosed
		}
		c.deadMu.Unlock()
		c.kill(nil)
		c.mu.Lock() // wait for calls in flight (they fail fast now)
		defer c.mu.Unlock()
		if c.pool != nil {
			err = c.pool.Close()
		}
		err = errors.Join(err, c.removeScratch())
	})
	return err
}

// call runs rpc under the per-call timeout and turns its failure into an *Error.
func (c *conn) call(ctx context.Context, op string, li *pipeline.LayerInfo, rpc func(ctx context.Context) error) error {
	if err := c.deadErr(); err != nil {
		return c.closedErr(op, li, err)
	}
	cctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	err := rpc(cctx)
	if err == nil {
		return nil
	}
	return c.callError(ctx, cctx, op, li, err)
}

// callError classifies a failed RPC: timeout, cancellation, crash, or an error the plugin
// returned. All but the last leave the process killed.
func (c *conn) callError(ctx, cctx context.Context, op string, li *pipeline.LayerInfo, err error) error {
	st, _ := status.FromError(err)
	if dead := c.deadErr(); dead != nil {
		return c.closedErr(op, li, dead)
	}
	switch {
	case ctx.Err() != nil:
		c.kill(fmt.Errorf("call abandoned: %w", ctx.Err()))
		return c.errf(op, li, ctx.Err())
	case errors.Is(cctx.Err(), context.DeadlineExceeded) || st.Code() == codes.DeadlineExceeded:
		e := fmt.Errorf("%w after %v; process killed", ErrTimeout, c.timeout)
		c.kill(e)
		return c.errf(op, li, ErrTimeout, fmt.Errorf("no reply after %v; process killed", c.timeout))
	case st.Code() == codes.Unavailable || st.Code() == codes.Canceled || c.exited():
		how := c.waitExit(2 * time.Second)
		c.kill(fmt.Errorf("%w (%s)", ErrCrashed, how))
		return c.errf(op, li, ErrCrashed, fmt.Errorf("%s: %s", how, st.Message()))
	}
	return c.errf(op, li, ErrFailed, fmt.Errorf("%s: %s", st.Code(), st.Message()))
}

// exited reports whether the plugin process has ended.
func (c *conn) exited() bool {
	_, ok := c.proc.exitState(0)
	return ok
}

// waitExit waits up to d for the process to exit and says how it ended.
func (c *conn) waitExit(d time.Duration) string {
	ps, ok := c.proc.exitState(d)
	switch {
	case !ok:
		return "connection lost"
	case ps != nil:
		return "process ended: " + ps.String()
	}
	return "process ended"
}

// Probe starts the plugin at path, asks for its Info and stops it.
func Probe(ctx context.Context, path string, opts HostOptions) (Info, error) {
	c, err := start(ctx, path, opts, "")
	if err != nil {
		return Info{}, err
	}
	info := c.info
	return info, c.Close()
}

var _ io.Closer = (*conn)(nil)
