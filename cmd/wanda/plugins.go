package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/wanda-go/wanda/pipeline"
	"github.com/wanda-go/wanda/plugins"
)

func init() {
	register(&cli.Command{
		Name:  "plugins",
		Usage: "out-of-process metric, pattern, allocation and refine plugins (wanda-plugin-NAME executables)",
		Description: `A plugin is an executable named wanda-plugin-NAME in a --plugin-dir or in a directory of
$WANDA_PLUGIN_DIR (a path list). wanda starts it and talks gRPC to it (plugin protocol
versions ` + fmt.Sprint(plugins.MinProtocolVersion) + ` to ` + fmt.Sprint(plugins.ProtocolVersion) + `; allocation and refine plugins need ` + fmt.Sprint(plugins.ProtocolVersion) + `). Use it with
'wanda prune --method plugin:NAME' (a metric), '--pattern plugin:NAME' (a pattern),
'--allocation plugin:NAME' (layer-wise sparsities) or '--refine plugin:NAME' (mask
refinement), or give a path instead of NAME.`,
		Subcommands: []*cli.Command{{
			Name:      "list",
			Usage:     "list the plugins found, with what each reports (name, kind, protocol version, description)",
			UsageText: "wanda plugins list [--plugin-dir DIR]... [--json]",
			Description: `Starts every plugin found to ask for its description. A plugin that fails the handshake
(another protocol version, not a plugin, crashes, hangs) is listed as FAILED with the reason.
When the same NAME is in several directories, the first one is used; the others are marked
"shadowed".`,
			Flags: []cli.Flag{
				&cli.StringSliceFlag{Name: "plugin-dir", Usage: "directory holding wanda-plugin-NAME executables (repeatable; searched before $WANDA_PLUGIN_DIR)"},
				&cli.BoolFlag{Name: "json", Usage: "print the list as JSON"},
				&cli.DurationFlag{Name: "timeout", Value: 10 * time.Second, Usage: "how long a plugin may take to start and describe itself"},
			},
			Action: runPluginsList,
		}},
	})
}

// pluginFlags are the flags a command that opens plugins adds (prune).
func pluginFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: "plugin-dir", Usage: "directory holding wanda-plugin-NAME executables (repeatable; searched before $WANDA_PLUGIN_DIR)"},
		&cli.StringSliceFlag{Name: "plugin-arg", Usage: "key=value passed to the metric and pattern plugins (repeatable)"},
		&cli.StringSliceFlag{Name: "allocation-arg", Usage: "key=value passed to the --allocation plugin (repeatable)"},
		&cli.StringSliceFlag{Name: "refine-arg", Usage: "key=value passed to the --refine plugin (repeatable)"},
		&cli.DurationFlag{Name: "plugin-timeout", Value: plugins.DefaultTimeout, Usage: "longest a plugin may take to start or to answer one call; then it is killed"},
	}
}

// pluginHostOptions builds the host options from pluginFlags (and --scratch-dir, if the
// command has it), with the arguments of --plugin-arg.
func pluginHostOptions(c *cli.Context) (plugins.HostOptions, error) {
	return pluginHostOptionsArgs(c, "plugin-arg")
}

// pluginHostOptionsArgs is pluginHostOptions with the arguments of flag argFlag.
func pluginHostOptionsArgs(c *cli.Context, argFlag string) (plugins.HostOptions, error) {
	args, err := plugins.ParseArgs(c.StringSlice(argFlag))
	if err != nil {
		return plugins.HostOptions{}, fmt.Errorf("%w: --%s: %w", errUsage, argFlag, err)
	}
	return plugins.HostOptions{
		Args:       args,
		Timeout:    c.Duration("plugin-timeout"),
		Logger:     slog.Default(),
		ScratchDir: c.String("scratch-dir"),
	}, nil
}

// loadMetricPlugin resolves spec ("plugin:NAME" or a path) with --plugin-dir and
// $WANDA_PLUGIN_DIR and starts the metric plugin; close ends its process.
func loadMetricPlugin(c *cli.Context, spec string) (m pipeline.Metric, close func(), err error) {
	path, opts, err := pluginSetup(c, spec)
	if err != nil {
		return nil, nil, err
	}
	m, closer, err := plugins.OpenMetric(c.Context, path, opts)
	if err != nil {
		return nil, nil, err
	}
	return m, func() { closer.Close() }, nil
}

// loadPatternPlugin is loadMetricPlugin for a pattern plugin.
func loadPatternPlugin(c *cli.Context, spec string) (p pipeline.Pattern, close func(), err error) {
	path, opts, err := pluginSetup(c, spec)
	if err != nil {
		return nil, nil, err
	}
	p, closer, err := plugins.OpenPattern(c.Context, path, opts)
	if err != nil {
		return nil, nil, err
	}
	return p, func() { closer.Close() }, nil
}

// loadAllocationPlugin resolves spec ("plugin:NAME" or a path) and starts the allocation
// plugin (--allocation) with the --allocation-arg pairs; close ends its process.
func loadAllocationPlugin(c *cli.Context, spec string) (a pipeline.Allocator, close func(), err error) {
	path, opts, err := pluginSetupArgs(c, spec, "allocation-arg")
	if err != nil {
		return nil, nil, err
	}
	a, closer, err := plugins.OpenAllocator(c.Context, path, opts)
	if err != nil {
		return nil, nil, err
	}
	return a, func() { closer.Close() }, nil
}

// loadRefinePlugin resolves spec and starts the refine plugin (--refine) with the
// --refine-arg pairs; close ends its process.
func loadRefinePlugin(c *cli.Context, spec string) (r pipeline.Refiner, close func(), err error) {
	path, opts, err := pluginSetupArgs(c, spec, "refine-arg")
	if err != nil {
		return nil, nil, err
	}
	r, closer, err := plugins.OpenRefiner(c.Context, path, opts)
	if err != nil {
		return nil, nil, err
	}
	return r, func() { closer.Close() }, nil
}

// checkStageArgs refuses --allocation-arg and --refine-arg without the plugin they are for
// (isPlugin tells a plugin spec from a built-in name).
func checkStageArgs(c *cli.Context, isPlugin func(string) bool) error {
	for _, f := range []struct{ arg, stage string }{{"allocation-arg", "allocation"}, {"refine-arg", "refine"}} {
		if len(c.StringSlice(f.arg)) > 0 && !isPlugin(c.String(f.stage)) {
			return fmt.Errorf("%w: --%s goes to a --%s plugin (plugin:NAME), and --%s is %q", errUsage, f.arg, f.stage, f.stage, c.String(f.stage))
		}
	}
	return nil
}

func pluginSetup(c *cli.Context, spec string) (string, plugins.HostOptions, error) {
	return pluginSetupArgs(c, spec, "plugin-arg")
}

func pluginSetupArgs(c *cli.Context, spec, argFlag string) (string, plugins.HostOptions, error) {
	dirs := c.StringSlice("plugin-dir")
	if err := checkDirs(dirs); err != nil {
		return "", plugins.HostOptions{}, err
	}
	path, err := plugins.Resolve(spec, dirs)
	if err != nil {
		return "", plugins.HostOptions{}, fmt.Errorf("%w: %w", errUsage, err)
	}
	opts, err := pluginHostOptionsArgs(c, argFlag)
	return path, opts, err
}

// checkDirs reports a --plugin-dir that is not a directory (a typo would otherwise just
// find nothing).
func checkDirs(dirs []string) error {
	for _, d := range dirs {
		fi, err := os.Stat(d)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("%w: --plugin-dir %s does not exist", errUsage, d)
			}
			return err
		}
		if !fi.IsDir() {
			return fmt.Errorf("%w: --plugin-dir %s is not a directory", errUsage, d)
		}
	}
	return nil
}

// pluginEntry is one line of `wanda plugins list`.
type pluginEntry struct {
	Name            string            `json:"name"` // NAME of wanda-plugin-NAME: what --method plugin:NAME takes
	Path            string            `json:"path"`
	Kind            plugins.Kind      `json:"kind,omitempty"`
	ProtocolVersion int               `json:"protocol_version,omitempty"`
	ReportedName    string            `json:"reported_name,omitempty"` // the name the plugin gives itself
	Description     string            `json:"description,omitempty"`
	NeedsStats      bool              `json:"needs_stats,omitempty"`
	RefineStats     string            `json:"refine_stats,omitempty"` // a refine plugin's statistics, e.g. "sumsq+sum+var"
	Args            []plugins.ArgSpec `json:"args,omitempty"`
	Shadowed        bool              `json:"shadowed,omitempty"` // an earlier directory has the same NAME
	Error           string            `json:"error,omitempty"`    // why the handshake failed
}

func runPluginsList(c *cli.Context) error {
	// Ctrl-C or SIGTERM stops the probes (killing their plugins) and the command;
	// a second one kills wanda at once.
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop()
	}()
	dirs := c.StringSlice("plugin-dir")
	if err := checkDirs(dirs); err != nil {
		return err
	}
	found, err := plugins.Discover(dirs...)
	if err != nil {
		return err
	}
	entries := make([]pluginEntry, len(found))
	seen := map[string]bool{}
	for i, f := range found {
		entries[i] = pluginEntry{Name: f.Name, Path: f.Path, Shadowed: seen[f.Name]}
		seen[f.Name] = true
	}
	// Probe a few at a time: a hung plugin costs --timeout, not the whole list.
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	opts := plugins.HostOptions{Timeout: c.Duration("timeout"), Logger: slog.Default()}
	for i := range entries {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			e := &entries[i]
			info, err := plugins.Probe(ctx, e.Path, opts)
			if err != nil {
				e.Error = errorReason(err, e.Path)
				return
			}
			e.Kind, e.ProtocolVersion, e.Description = info.Kind, info.ProtocolVersion, info.Description
			e.NeedsStats, e.RefineStats, e.Args = info.NeedsStats, info.RefineStats, info.Args
			if info.Name != e.Name {
				e.ReportedName = info.Name
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("plugins list: interrupted (%w)", err)
	}

	if c.Bool("json") {
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		return enc.Encode(entries)
	}
	if len(entries) == 0 {
		searched := plugins.SearchDirs(dirs...)
		if len(searched) == 0 {
			fmt.Fprintln(c.App.Writer, "no plugin directory: give --plugin-dir DIR or set $"+plugins.EnvDir)
		} else {
			fmt.Fprintf(c.App.Writer, "no plugins (wanda-plugin-NAME executables) in %s\n", strings.Join(searched, ", "))
		}
		return nil
	}
	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tKIND\tPROTOCOL\tDESCRIPTION\tPATH")
	for _, e := range entries {
		desc := e.Description
		kind, proto := string(e.Kind), fmt.Sprint(e.ProtocolVersion)
		if e.Error != "" {
			kind, proto, desc = "-", "-", "FAILED: "+e.Error
		}
		if e.ReportedName != "" {
			desc += fmt.Sprintf(" (calls itself %q)", e.ReportedName)
		}
		if e.RefineStats != "" {
			desc += " [reads: " + e.RefineStats + "]"
		}
		if len(e.Args) > 0 {
			var names []string
			for _, a := range e.Args {
				names = append(names, a.Name)
			}
			desc += " [args: " + strings.Join(names, ", ") + "]"
		}
		if e.Shadowed {
			desc += " (shadowed by an earlier directory)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.Name, kind, proto, desc, e.Path)
	}
	return tw.Flush()
}

// errorReason shortens a probe error for the list: the plugin and path are on the line already.
func errorReason(err error, path string) string {
	var pe *plugins.Error
	if errors.As(err, &pe) {
		var parts []string
		for _, e := range pe.Errs {
			parts = append(parts, e.Error())
		}
		return strings.Join(parts, ": ")
	}
	return strings.ReplaceAll(err.Error(), path, "")
}
