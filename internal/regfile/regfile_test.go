//go:build unix

package regfile

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestRefusesNonRegularWithoutBlocking(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "config.json")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "s")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	link := filepath.Join(dir, "link")
	os.Symlink(fifo, link)
	for _, tc := range []struct{ path, says string }{
		{fifo, "a named pipe (FIFO)"},
		{link, "a named pipe (FIFO)"},
		{sock, "a socket"},
		{"/dev/zero", "a character device"},
		{dir, "a directory"},
	} {
		done := make(chan error, 2)
		go func() {
			_, err := ReadFile(tc.path)
			done <- err
			f, err := Open(tc.path)
			if f != nil {
				f.Close()
			}
			done <- err
		}()
		for range 2 {
			select {
			case err := <-done:
				if !errors.Is(err, ErrNotRegular) || !strings.Contains(err.Error(), tc.path) || !strings.Contains(err.Error(), tc.says) {
					t.Errorf("%s: %v, want ErrNotRegular naming it as %s", tc.path, err, tc.says)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("%s: blocked", tc.path)
			}
		}
	}
}

func TestReadsRegularFiles(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []int{0, 1, 511, 512, 513, 100000} {
		p := filepath.Join(dir, "f")
		want := strings.Repeat("x", n)
		os.WriteFile(p, []byte(want), 0o644)
		got, err := ReadFile(p)
		if err != nil || string(got) != want {
			t.Fatalf("ReadFile of %d bytes: %d bytes, %v", n, len(got), err)
		}
		l := filepath.Join(dir, "l")
		os.Remove(l)
		os.Symlink(p, l)
		if got, err := ReadFile(l); err != nil || string(got) != want {
			t.Fatalf("through a link: %v", err)
		}
	}
	if _, err := ReadFile(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}
