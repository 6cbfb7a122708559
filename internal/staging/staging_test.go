//go:build unix

package staging

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A helper process, selected by STAGING_HELPER:
//
//	own OUT           creates a staging directory for OUT, writes a file into it,
//	                  prints its path and waits to be killed
//	lockdir DIR       takes LockDir(DIR), prints "locked" and waits to be killed
//	temp DIR          creates Temp(DIR, "scratch"), prints its path and waits
//	replace OUT POINT [fallback]
//	                  builds a new output (file "new") for OUT and replaces OUT with it,
//	                  killing itself with SIGKILL at POINT of Replace
func TestMain(m *testing.M) {
	if h := os.Getenv("STAGING_HELPER"); h != "" {
		helper(strings.Fields(h))
	}
	os.Exit(m.Run())
}

func helper(args []string) {
	die := func(err error) {
		os.Stderr.WriteString(err.Error() + "\n")
		os.Exit(2)
	}
	switch args[0] {
	case "own":
		d, err := New(args[1])
		if err != nil {
			die(err)
		}
		os.WriteFile(filepath.Join(d.Path, "model.safetensors"), make([]byte, 1<<16), 0o644)
		os.Stdout.WriteString(d.Path + "\n")
	case "lockdir":
		if _, err := LockDir(args[1]); err != nil {
			die(err)
		}
		os.Stdout.WriteString("locked\n")
	case "temp":
		d, err := Temp(args[1], "scratch")
		if err != nil {
			die(err)
		}
		os.Stdout.WriteString(d.Path + "\n")
	case "replace":
		out, point := args[1], args[2]
		if len(args) > 3 {
			exchangeFn = func(a, b string) error { return errUnsupported }
		}
		crashHook = func(p string) {
			if p == point {
				syscall.Kill(os.Getpid(), syscall.SIGKILL)
				select {}
			}
		}
		d, err := New(out)
		if err != nil {
			die(err)
		}
		for _, f := range []string{"config.json", "model.safetensors", "new"} {
			os.WriteFile(filepath.Join(d.Path, f), nil, 0o644)
		}
		if err := d.Replace(out); err != nil {
			die(err)
		}
		os.Exit(0)
	}
	for {
		time.Sleep(time.Hour) // until killed
	}
}

// start runs a helper and returns it with its first output line.
func start(t *testing.T, args ...string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "STAGING_HELPER="+strings.Join(args, " "))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("helper %v: %v", args, err)
	}
	return cmd, strings.TrimSpace(line)
}

func kill(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return !errors.Is(err, fs.ErrNotExist)
}

func TestSweepRemovesOnlyDeadOwners(t *testing.T) {
	root := t.TempDir()
	out := filepath.Join(root, "pruned")

	killed, deadDir := start(t, "own", out)
	other, otherDir := start(t, "own", filepath.Join(root, "pruned-2:4")) // another output, alive
	kill(t, killed)
	// A directory the dead owner derived from its staging directory's name.
	if err := os.Mkdir(deadDir+".packed", 0o755); err != nil {
		t.Fatal(err)
	}
	// A staging-like directory without a lock file (an older version's, or
	// someone else's) is left alone.
	nolock := filepath.Join(root, ".pruned.tmp-deadbeef")
	if err := os.Mkdir(nolock, 0o755); err != nil {
		t.Fatal(err)
	}

	d, err := New(out)
	if err != nil {
		t.Fatal(err)
	}
	if exists(deadDir) || exists(deadDir+".lock") || exists(deadDir+".packed") {
		t.Errorf("staging directory of a killed process not removed: %s", deadDir)
	}
	for _, keep := range []string{otherDir, otherDir + ".lock", nolock, d.Path, d.Path + ".lock"} {
		if !exists(keep) {
			t.Errorf("%s was removed", keep)
		}
	}
	if got := Sweep(filepath.Join(root, "pruned-2:4")); len(got) != 0 {
		t.Errorf("sweep removed %q; the owner is alive", got)
	}
	_ = other

	if err := d.Commit(out); err != nil {
		t.Fatal(err)
	}
	for _, gone := range []string{d.Path, d.Path + ".lock", outLockPath(out)} {
		if exists(gone) {
			t.Errorf("after Commit: %s exists", gone)
		}
	}
	if !exists(out) {
		t.Errorf("after Commit: %s missing", out)
	}
	if err := d.Remove(); err != nil || !exists(out) {
		t.Errorf("Remove after Commit: err %v, out exists %v", err, exists(out))
	}
}

// TestConcurrentWriterRefused: a second writer of the same output fails at
// New, naming the first one's pid, and touches nothing of it.
func TestConcurrentWriterRefused(t *testing.T) {
	root := t.TempDir()
	out := filepath.Join(root, "pruned")
	owner, dir := start(t, "own", out)
	_, err := New(out)
	if !errors.Is(err, ErrBusy) {
		t.Fatalf("New while another process writes %s: %v, want ErrBusy", out, err)
	}
	if want := fmt.Sprintf("process %d ", owner.Process.Pid); !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not name %q", err, want)
	}
	if err := CheckTarget(out, false); !errors.Is(err, ErrBusy) {
		t.Errorf("CheckTarget while another process writes %s: %v, want ErrBusy", out, err)
	}
	if !exists(dir) || !exists(filepath.Join(dir, "model.safetensors")) {
		t.Errorf("the other run's staging directory was touched")
	}
	// In one process too (flock locks are per open file).
	kill(t, owner)
	d1, err := New(out)
	if err != nil {
		t.Fatalf("New after the owner died: %v", err)
	}
	if exists(dir) {
		t.Errorf("dead owner's staging directory not swept")
	}
	if _, err := New(out); !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), fmt.Sprintf("process %d ", os.Getpid())) {
		t.Errorf("second New in the same process: %v", err)
	}
	if err := d1.Remove(); err != nil {
		t.Fatal(err)
	}
	d2, err := New(out)
	if err != nil {
		t.Fatalf("New after Remove: %v", err)
	}
	d2.Remove()
	ents, _ := os.ReadDir(root)
	if len(ents) != 0 {
		t.Errorf("left behind: %v", ents)
	}
}

func TestRemove(t *testing.T) {
	root := t.TempDir()
	d, err := New(filepath.Join(root, "x"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d.Path, "f"), []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := d.Remove(); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(root)
	if len(ents) != 0 {
		t.Errorf("left behind: %v", ents)
	}
}

// writeModel makes dir a minimal model directory holding the file marker.
func writeModel(t *testing.T, dir, marker string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"config.json", "model.safetensors", marker} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCommitRefusesExisting(t *testing.T) {
	root := t.TempDir()
	out := filepath.Join(root, "out")
	d, err := New(out)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Remove()
	// Appears while the output is built, even as an empty directory (which a
	// plain rename(2) would silently replace).
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(out, "theirs"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := d.Commit(out); !errors.Is(err, ErrExists) {
		t.Fatalf("Commit onto an existing directory: %v, want ErrExists", err)
	}
	if !exists(filepath.Join(out, "theirs")) {
		t.Fatal("existing directory changed")
	}
	os.Remove(filepath.Join(out, "theirs"))
	if err := d.Commit(out); !errors.Is(err, ErrExists) {
		t.Fatalf("Commit onto an existing empty directory: %v, want ErrExists", err)
	}
}

func TestReplace(t *testing.T) {
	for _, fallback := range []bool{false, true} {
		t.Run(fmt.Sprintf("fallback=%v", fallback), func(t *testing.T) {
			if fallback {
				exchangeFn = func(a, b string) error { return errUnsupported }
				defer func() { exchangeFn = exchange }()
			}
			root := t.TempDir()
			out := filepath.Join(root, "out")
			writeModel(t, out, "old")
			d, err := New(out)
			if err != nil {
				t.Fatal(err)
			}
			writeModel(t, d.Path, "new")
			if err := d.Replace(out); err != nil {
				t.Fatal(err)
			}
			if !exists(filepath.Join(out, "new")) || exists(filepath.Join(out, "old")) {
				t.Errorf("out does not hold the new output")
			}
			ents, _ := os.ReadDir(root)
			if len(ents) != 1 {
				t.Errorf("left behind: %v", ents)
			}
		})
	}
}

// TestReplaceKilled kills a process at every point of Replace and checks that
// the name always holds the old or the new output, and that the next
// CheckTarget sweeps what is left.
func TestReplaceKilled(t *testing.T) {
	for _, tc := range []struct {
		point    string
		fallback bool
		want     string // marker file expected in out afterwards
	}{
		{"exchanged", false, "new"},
		{"aside", true, "old"},
		{"renamed-in", true, "new"},
	} {
		t.Run(tc.point, func(t *testing.T) {
			root := t.TempDir()
			out := filepath.Join(root, "out")
			writeModel(t, out, "old")
			args := []string{"replace", out, tc.point}
			if tc.fallback {
				args = append(args, "fallback")
			}
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), "STAGING_HELPER="+strings.Join(args, " "))
			cmd.Stderr = os.Stderr
			err := cmd.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("helper did not die at %s: %v", tc.point, err)
			}
			if tc.point != "aside" && !exists(filepath.Join(out, tc.want)) {
				t.Fatalf("after a kill at %s, %s does not hold the %s output", tc.point, out, tc.want)
			}
			if err := CheckTarget(out, true); err != nil {
				t.Fatalf("CheckTarget after the kill: %v", err)
			}
			if !exists(filepath.Join(out, tc.want)) {
				t.Fatalf("after the sweep, %s does not hold the %s output", out, tc.want)
			}
			ents, _ := os.ReadDir(root)
			if len(ents) != 1 {
				var names []string
				for _, e := range ents {
					names = append(names, e.Name())
				}
				t.Errorf("left behind after the sweep: %v", names)
			}
		})
	}
}

func TestCheckTarget(t *testing.T) {
	root := t.TempDir()
	model := filepath.Join(root, "models", "M")
	writeModel(t, model, "weights")
	work := filepath.Join(root, "work")
	os.Mkdir(work, 0o755)
	prev := filepath.Join(root, "prev")
	os.Mkdir(prev, 0o755)
	os.WriteFile(filepath.Join(prev, ReportFile), []byte("{}"), 0o644)
	empty := filepath.Join(root, "empty")
	os.Mkdir(empty, 0o755)
	misc := filepath.Join(root, "home")
	os.Mkdir(misc, 0o755)
	os.WriteFile(filepath.Join(misc, "thesis.tex"), nil, 0o644)
	os.WriteFile(filepath.Join(misc, "config.json"), nil, 0o644)
	file := filepath.Join(root, "file")
	os.WriteFile(file, nil, 0o644)
	fifo := filepath.Join(root, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(root, "link-to-M")
	os.Symlink(model, link)
	dangling := filepath.Join(root, "dangling")
	os.Symlink(filepath.Join(root, "nowhere"), dangling)
	t.Chdir(work)

	protect := []string{model, "", filepath.Join(root, "adapter")}
	for _, tc := range []struct {
		name  string
		out   string
		force bool
		want  error  // nil: accepted
		says  string // the error mentions it
		extra string // another protected path
	}{
		{"empty", "", true, ErrUnsafeTarget, "no output directory", ""},
		{"blank", "  ", false, ErrUnsafeTarget, "no output directory", ""},
		{"new", filepath.Join(root, "new"), false, nil, "", ""},
		{"new nested", filepath.Join(root, "a", "b", "c"), false, nil, "", ""},
		{"relative, inside the working directory", "pruned", false, nil, "", ""},
		{"inside a protected work directory", "pruned", false, ErrUnsafeTarget, "lies inside " + work, work},
		{"working directory", ".", true, ErrUnsafeTarget, "is the working directory", ""},
		{"working directory spelled differently", "../work/./", true, ErrUnsafeTarget, "is the working directory", ""},
		{"parent of the working directory", "..", true, ErrUnsafeTarget, "contains the working directory", ""},
		{"root", "/", true, ErrUnsafeTarget, "contains the working directory", ""},
		{"the model", model, true, ErrUnsafeTarget, model + " is an input of this run", ""},
		{"the model spelled M/./", model + "/./", true, ErrUnsafeTarget, model + " is an input of this run", ""},
		{"a link to the model", link, true, ErrUnsafeTarget, "is " + model, ""},
		{"inside the model", filepath.Join(model, "pruned"), false, ErrUnsafeTarget, "lies inside " + model, ""},
		{"parent of the model", filepath.Join(root, "models"), true, ErrUnsafeTarget, "contains " + model, ""},
		{"existing without force", prev, false, ErrExists, prev, ""},
		{"previous output with force", prev, true, nil, "", ""},
		{"model directory with force", func() string { d := filepath.Join(root, "other"); writeModel(t, d, "x"); return d }(), true, nil, "", ""},
		{"empty directory with force", empty, true, nil, "", ""},
		{"unrecognised directory with force", misc, true, ErrUnsafeTarget, "config.json, thesis.tex", ""},
		{"regular file", file, true, ErrNotDir, "a regular file", ""},
		{"FIFO", fifo, true, ErrNotDir, "a named pipe (FIFO)", ""},
		{"FIFO without force", fifo, false, ErrNotDir, "a named pipe (FIFO)", ""},
		{"device node", "/dev/null", true, ErrNotDir, "a character device", ""},
		{"dangling link", dangling, true, ErrNotDir, "a symbolic link", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckTarget(tc.out, tc.force, append(protect, tc.extra)...)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("CheckTarget(%q, %v) = %v, want %v", tc.out, tc.force, err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.says) {
				t.Errorf("error %q does not say %q", err, tc.says)
			}
		})
	}
	// Nothing was created or removed.
	for _, p := range []string{filepath.Join(model, "weights"), filepath.Join(misc, "thesis.tex"), fifo, file} {
		if !exists(p) {
			t.Errorf("%s disappeared", p)
		}
	}
	if exists(filepath.Join(root, "new")) || exists(filepath.Join(root, "a")) {
		t.Errorf("CheckTarget created the output")
	}
}

func TestLockDir(t *testing.T) {
	dir := t.TempDir()
	holder, _ := start(t, "lockdir", dir)
	_, err := LockDir(dir)
	if !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), fmt.Sprintf("process %d ", holder.Process.Pid)) {
		t.Fatalf("LockDir while another process holds it: %v", err)
	}
	kill(t, holder) // its lock file stays, unlocked
	release, err := LockDir(dir)
	if err != nil {
		t.Fatalf("LockDir after the holder died: %v", err)
	}
	if _, err := LockDir(dir); !errors.Is(err, ErrBusy) {
		t.Fatalf("second LockDir in the same process: %v", err)
	}
	release()
	release() // repeated: no-op
	if exists(filepath.Join(dir, LockFile)) {
		t.Errorf("lock file not removed by release")
	}
	if err := os.Remove(dir); err != nil {
		t.Errorf("directory not empty after release: %v", err)
	}
	if _, err := LockDir(filepath.Join(dir, "missing")); err == nil {
		t.Errorf("LockDir of a missing directory succeeded")
	}
}

func TestTemp(t *testing.T) {
	root := t.TempDir()
	dead, deadDir := start(t, "temp", root)
	_, liveDir := start(t, "temp", root)
	kill(t, dead)
	d, err := Temp(root, "scratch")
	if err != nil {
		t.Fatal(err)
	}
	if exists(deadDir) || exists(deadDir+".lock") {
		t.Errorf("dead owner's scratch directory not swept")
	}
	if !exists(liveDir) || !exists(d.Path) {
		t.Errorf("a live owner's scratch directory was removed")
	}
	if !strings.HasPrefix(filepath.Base(d.Path), "scratch-") {
		t.Errorf("name %s", d.Path)
	}
	if err := d.Remove(); err != nil || exists(d.Path) || exists(d.Path+".lock") {
		t.Errorf("Remove: %v", err)
	}
}
