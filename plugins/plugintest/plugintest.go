// Package plugintest builds the example plugins and the test-only faulty plugin for tests,
// here and in other packages (an end-to-end test of `wanda prune --method plugin:ria`):
//
//	dir, _ := os.MkdirTemp("", "plugins")
//	paths, err := plugintest.Build(dir)   // paths["ria"] = dir/wanda-plugin-ria, ...
//
// It runs the go command, so it needs the Go toolchain (on $PATH or in $GOROOT/bin).
package plugintest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Packages maps each plugin name to its main package.
var Packages = map[string]string{
	"wanda":    "github.com/wanda-go/wanda/plugins/examples/wanda",
	"ria":      "github.com/wanda-go/wanda/plugins/examples/ria",
	"schedule": "github.com/wanda-go/wanda/plugins/examples/schedule",
	"owl":      "github.com/wanda-go/wanda/plugins/examples/owl",
	"dsnot":    "github.com/wanda-go/wanda/plugins/examples/dsnot",
	"faulty":   "github.com/wanda-go/wanda/plugins/internal/faulty",
}

// GoTool returns the path of the go command.
func GoTool() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	if root := os.Getenv("GOROOT"); root != "" {
		p := filepath.Join(root, "bin", "go")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("plugintest: the go command is not on $PATH")
}

// Build compiles every plugin of Packages into dir as wanda-plugin-NAME (one go build
// invocation) and returns name -> path. The working directory must be inside the module.
func Build(dir string) (map[string]string, error) {
	gotool, err := GoTool()
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(dir, "build-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	args := []string{"build", "-ldflags=-s -w", "-o", tmp + string(filepath.Separator)}
	for _, pkg := range Packages {
		args = append(args, pkg)
	}
	cmd := exec.Command(gotool, args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("plugintest: go %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	paths := map[string]string{}
	for name, pkg := range Packages {
		exe := filepath.Base(pkg)
		if _, err := os.Stat(filepath.Join(tmp, exe+".exe")); err == nil {
			exe += ".exe"
		}
		dst := filepath.Join(dir, "wanda-plugin-"+name+filepath.Ext(exe))
		if err := os.Rename(filepath.Join(tmp, exe), dst); err != nil {
			return nil, err
		}
		paths[name] = dst
	}
	return paths, nil
}
