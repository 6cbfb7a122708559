package plugins

import (
	"errors"
	"fmt"
	"strings"

	"github.com/wanda-go/wanda/pipeline"
)

// Sentinel errors; every *Error also matches pipeline.ErrStageFailed.
var (
	ErrNotFound = errors.New("plugin not found")
	ErrStart    = errors.New("plugin failed to start")
	ErrProtocol = errors.New("plugin protocol version mismatch")
	ErrKind     = errors.New("wrong plugin kind")
	ErrArgs     = errors.New("plugin arguments rejected")
	ErrCrashed  = errors.New("plugin crashed")
	ErrTimeout  = errors.New("plugin timed out")
	ErrFailed   = errors.New("plugin returned an error")
	ErrResult   = errors.New("malformed plugin result")
	ErrClosed   = errors.New("plugin closed")
)

// Error is the error of a plugin operation. It names the plugin and, for a call, the layer;
// errors.Is matches pipeline.ErrStageFailed and every error in Errs.
type Error struct {
	Plugin string              // the plugin's name (as it reported, else from its file name)
	Path   string              // the executable
	Op     string              // "start", "info", "score", "select", ...
	Layer  *pipeline.LayerInfo // the layer of a call; nil otherwise
	Errs   []error             // the causes (sentinels of this package or pipeline, details)
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "plugin %q (%s)", e.Plugin, e.Path)
	if e.Layer != nil {
		fmt.Fprintf(&b, ": %s", e.Layer)
	}
	if e.Op != "" {
		fmt.Fprintf(&b, ": %s", e.Op)
	}
	for _, err := range e.Errs {
		fmt.Fprintf(&b, ": %v", err)
	}
	return b.String()
}

// Unwrap lets errors.Is and errors.As see pipeline.ErrStageFailed and the causes.
func (e *Error) Unwrap() []error { return append([]error{pipeline.ErrStageFailed}, e.Errs...) }
