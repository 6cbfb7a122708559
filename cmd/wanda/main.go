// Command wanda prunes LLaMA-family language models (Hugging Face safetensors) with Wanda,
// magnitude and SparseGPT, streaming one decoder layer at a time.
package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"

	"github.com/urfave/cli/v2"

	"github.com/wanda-go/wanda/internal/staging"
	"github.com/wanda-go/wanda/internal/termui"
)

// console is standard error: log lines, and a progress bar when it is a terminal.
var console = termui.New(os.Stderr)

// commands is filled by the init functions of this package's files, one file per subcommand.
var commands []*cli.Command

// register adds a subcommand, with the flag validation of flags.go run before it.
func register(c *cli.Command) {
	withValidation(c)
	commands = append(commands, c)
}

func newApp() *cli.App {
	sort.Slice(commands, func(i, j int) bool { return commands[i].Name < commands[j].Name })
	return &cli.App{
		Name:  "wanda",
		Usage: "prune LLaMA-family models with Wanda (|W|·‖X‖), magnitude or SparseGPT, one layer at a time",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error"},
		},
		Before: func(c *cli.Context) error {
			var lvl slog.Level
			if err := lvl.UnmarshalText([]byte(c.String("log-level"))); err != nil {
				return fmt.Errorf("--log-level: %w", err)
			}
			slog.SetDefault(slog.New(console.Handler(lvl)))
			return nil
		},
		Commands:        commands,
		HideHelpCommand: true,
	}
}

func main() {
	if err := newApp().Run(os.Args); err != nil {
		if errors.Is(err, staging.ErrExists) {
			err = fmt.Errorf("%w (use --force to replace it)", err)
		}
		fmt.Fprintln(os.Stderr, "wanda:", err)
		os.Exit(1)
	}
}
