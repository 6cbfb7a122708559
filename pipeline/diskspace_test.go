package pipeline

import (
	"errors"
	"runtime"
	"strings"
	"testing"
)

func TestFormatBytes(t *testing.T) {
	for _, tc := range []struct {
		n    int64
		want string
	}{
		{0, "0 bytes"}, {1023, "1023 bytes"}, {1024, "1.00 KiB"}, {1536, "1.50 KiB"},
		{1 << 20, "1.00 MiB"}, {13 << 20, "13.0 MiB"}, {5 << 30, "5.00 GiB"}, {250 << 30, "250 GiB"},
		{1 << 40, "1.00 TiB"}, {1<<63 - 1, "8.00 EiB"},
	} {
		if got := FormatBytes(tc.n); got != tc.want {
			t.Errorf("FormatBytes(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}

// TestRequireFreeMessage: the refusal gives both amounts in units that show
// them (it printed "need 0.00 GiB, 0.00 GiB free" for small models).
func TestRequireFreeMessage(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no statfs")
	}
	dir := t.TempDir()
	free, ok := FreeSpace(dir)
	if !ok || free <= 0 {
		t.Skip("free space unknown")
	}
	err := requireFree(dir, free+3<<20)
	if !errors.Is(err, ErrNoSpace) {
		t.Fatalf("requireFree(free + 3 MiB) = %v", err)
	}
	msg := err.Error()
	if strings.Contains(msg, " 0.00 ") || !strings.Contains(msg, "need "+FormatBytes(free+3<<20)) || !strings.Contains(msg, FormatBytes(free)+" free") {
		t.Errorf("message %q", msg)
	}
	if err := requireFree(dir, 1); err != nil {
		t.Errorf("requireFree(1 byte): %v", err)
	}
}
