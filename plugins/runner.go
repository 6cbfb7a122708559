package plugins

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin/runner"
)

// drainGrace is how long the plugin's stdout and stderr may stay open after
// the plugin process ended and its process group was killed (only a
// descendant that left the group can hold them): then the host closes its
// ends, so that nothing waits for them.
const drainGrace = 500 * time.Millisecond

// proc runs the plugin executable for go-plugin (a runner.Runner) in a way that
// can never hang the host:
//
//   - the plugin runs in a process group of its own (and, on Linux, gets
//     SIGKILL when the host dies);
//   - when the plugin process ends, for any reason, its whole group is killed
//     before the process is reaped (so that the group id cannot have been
//     reused), so nothing it started outlives it;
//   - its stdout and stderr are pipes whose read ends the host owns: go-plugin
//     waits for them to reach end-of-file before it notices that the process
//     ended, and a child that inherited them (a wrapper script's background
//     job) would otherwise keep them open forever. drainGrace after the
//     process ended, the host closes them, and readers see end-of-file;
//   - Kill kills the group at once and can be called at any time, even before
//     Start (then Start refuses to start).
type proc struct {
	path string
	env  []string // added after the host's environment, before go-plugin's

	mu      sync.Mutex
	cmd     *exec.Cmd
	pid     int
	killed  bool // Kill was called
	reaped  bool // the process was waited for: its pid may be reused, never signal it
	stdout  *os.File
	stderr  *os.File
	exited  chan struct{} // closed once the process ended and was reaped
	waitErr error         // valid after exited is closed
	state   *os.ProcessState
}

var _ runner.Runner = (*proc)(nil)

func newProc(path string, env []string) *proc {
	return &proc{path: path, env: env, exited: make(chan struct{})}
}

// runnerFunc is go-plugin's ClientConfig.RunnerFunc: spec carries the
// environment go-plugin wants the plugin to see.
func (p *proc) runnerFunc(_ hclog.Logger, spec *exec.Cmd, _ string) (runner.Runner, error) {
	cmd := exec.Command(p.path)
	cmd.Env = append(append(os.Environ(), p.env...), spec.Env...)
	cmd.Stdin = nil // /dev/null: a plugin must not read wanda's standard input
	setProcessGroup(cmd)
	p.mu.Lock()
	p.cmd = cmd
	p.mu.Unlock()
	return p, nil
}

// Start starts the process with pipes for stdout and stderr.
func (p *proc) Start(context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.killed {
		return errors.New("plugin start abandoned")
	}
	if p.cmd == nil || p.pid != 0 {
		return errors.New("plugin runner: Start without a command, or twice")
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return err
	}
	p.cmd.Stdout, p.cmd.Stderr = outW, errW
	err = p.cmd.Start()
	outW.Close() // the child has its own copies
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		return err
	}
	p.stdout, p.stderr, p.pid = outR, errR, p.cmd.Process.Pid
	go p.wait()
	return nil
}

// wait waits for the process to end, kills its group, reaps it, and closes
// the pipes after drainGrace.
func (p *proc) wait() {
	if waitNoReap(p.pid) {
		// The process ended but is not reaped: its pid, and so its group id,
		// cannot have been reused yet.
		p.mu.Lock()
		killGroup(p.pid)
		p.waitErr = p.cmd.Wait()
	} else {
		err := p.cmd.Wait()
		p.mu.Lock()
		killGroup(p.pid) // best effort: the group outlives its leader while it has members
		p.waitErr = err
	}
	p.state, p.reaped = p.cmd.ProcessState, true
	p.mu.Unlock()
	close(p.exited)
	time.Sleep(drainGrace)
	p.stdout.Close() // readers see end-of-file (see eofReader)
	p.stderr.Close()
}

// Wait waits for the process to end (go-plugin calls it once the pipes are
// at end-of-file).
func (p *proc) Wait(context.Context) error {
	<-p.exited
	return p.waitErr
}

// Kill kills the plugin's process group; it never waits.
func (p *proc) Kill(context.Context) error {
	p.kill()
	return nil
}

func (p *proc) kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.killed = true
	if p.pid > 0 && !p.reaped {
		killGroup(p.pid)
	}
}

// exitState returns how the process ended, waiting up to d; ok is false when it
// is still running.
func (p *proc) exitState(d time.Duration) (state *os.ProcessState, ok bool) {
	select {
	case <-p.exited:
		return p.state, true
	default:
	}
	if d <= 0 {
		return nil, false
	}
	select {
	case <-p.exited:
		return p.state, true
	case <-time.After(d):
		return nil, false
	}
}

// Pid returns the process id (0 before Start).
func (p *proc) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pid
}

func (p *proc) Stdout() io.ReadCloser { return eofReader{p.stdout} }
func (p *proc) Stderr() io.ReadCloser { return eofReader{p.stderr} }
func (p *proc) Name() string          { return p.path }

func (p *proc) ID() string {
	if pid := p.Pid(); pid > 0 {
		return strconv.Itoa(pid)
	}
	return ""
}

func (p *proc) Diagnose(context.Context) string {
	return fmt.Sprintf("%s is not a wanda plugin, or failed before its handshake (its first line on stdout must be go-plugin's \"1|1|unix|SOCKET|grpc\")", p.path)
}

func (p *proc) PluginToHost(network, addr string) (string, string, error) { return network, addr, nil }
func (p *proc) HostToPlugin(network, addr string) (string, string, error) { return network, addr, nil }

// eofReader reads a pipe whose closing by the host (after drainGrace) means
// end-of-file, not an error.
type eofReader struct{ f *os.File }

func (r eofReader) Read(b []byte) (int, error) {
	n, err := r.f.Read(b)
	if errors.Is(err, os.ErrClosed) {
		err = io.EOF
	}
	return n, err
}

func (r eofReader) Close() error { return nil } // the host closes the pipe (wait)
