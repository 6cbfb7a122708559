//go:build unix

package staging

import (
	"bufio"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A helper process: with STAGING_HELPER_OUT set, the test binary creates a
// staging directory for that output, writes a file into it, prints its path
// and waits to be killed.
func TestMain(m *testing.M) {
	if out := os.Getenv("STAGING_HELPER_OUT"); out != "" {
		d, err := New(out)
		if err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(2)
		}
		os.WriteFile(filepath.Join(d.Path, "model.safetensors"), make([]byte, 1<<16), 0o644)
		os.Stdout.WriteString(d.Path + "\n")
		// Sleep, not select{}: with no other goroutine the runtime reports a
		// blocked select as a deadlock and exits, releasing the lock.
		for {
			time.Sleep(time.Hour)
		}
	}
	os.Exit(m.Run())
}

// owner starts a helper process owning a staging directory of out and returns
// the process and the directory.
func owner(t *testing.T, out string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "STAGING_HELPER_OUT="+out)
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
		t.Fatalf("helper: %v", err)
	}
	return cmd, strings.TrimSpace(line)
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return !errors.Is(err, fs.ErrNotExist)
}

func TestSweepRemovesOnlyDeadOwners(t *testing.T) {
	root := t.TempDir()
	out := filepath.Join(root, "pruned")

	killed, deadDir := owner(t, out)
	_, liveDir := owner(t, out)
	_, otherDir := owner(t, filepath.Join(root, "pruned-2:4")) // another output, dead too
	if err := killed.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed.Wait()
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
	if exists(deadDir) || exists(deadDir+".lock") {
		t.Errorf("staging directory of a killed process not removed: %s", deadDir)
	}
	for _, keep := range []string{liveDir, liveDir + ".lock", otherDir, nolock, d.Path, d.Path + ".lock"} {
		if !exists(keep) {
			t.Errorf("%s was removed", keep)
		}
	}
	if got := Sweep(out); len(got) != 0 {
		t.Errorf("second sweep removed %q; the owners are alive", got)
	}

	if err := d.Commit(out); err != nil {
		t.Fatal(err)
	}
	if !exists(out) || exists(d.Path) || exists(d.Path+".lock") {
		t.Errorf("after Commit: out %v, staging %v, lock %v", exists(out), exists(d.Path), exists(d.Path+".lock"))
	}
	if err := d.Remove(); err != nil || !exists(out) {
		t.Errorf("Remove after Commit: err %v, out exists %v", err, exists(out))
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
