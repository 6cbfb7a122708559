package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/wanda-go/wanda/internal/modelgen"
)

// demoText is the demo's calibration and evaluation text (written for this project).
var demoText = []string{
	`The lighthouse keeper climbed the stairs every evening before the sun went down. He cleaned the glass, trimmed the wick and wrote the weather in a thick book that his father had kept before him. Ships passed far out on the water, and some nights he counted more than twenty lights moving slowly to the north.`,
	`A garden needs patience more than skill. Seeds sleep in the cold ground through the winter, and in spring the first green points push through the soil. The gardener waters, pulls the weeds and waits; the tomatoes come in summer, the apples in autumn, and the work begins again.`,
	`The train left the city at seven in the morning and crossed the river on an old iron bridge. Passengers read newspapers, drank coffee from paper cups and watched the fields go by. By noon the hills were higher and the villages smaller, and the conductor called the names of stations that nobody seemed to know.`,
	`Numbers tell stories too. In 1969 two people walked on the moon; in 2007 a telephone learned to browse the web; and every year the machines that answer our questions grow a little larger. Making them smaller without making them worse is the point of pruning: remove the weights that matter least and keep the rest.`,
	`In the old market square the baker opened his shop before dawn. The smell of fresh bread drifted across the stones, and the first customers came with baskets and cloth bags. They talked about the rain, the price of flour and the festival that would fill the square with music at the end of the month.`,
}

func init() {
	register(&cli.Command{
		Name:  "demo",
		Usage: "generate a tiny model, measure its perplexity, prune it with Wanda and measure again",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "dir", Usage: "working directory (default: a new temporary directory, removed afterwards)"},
			&cli.StringFlag{Name: "method", Value: "wanda", Usage: "pruning method"},
			&cli.StringFlag{Name: "pattern", Value: "unstructured", Usage: "unstructured or N:M"},
		},
		Action: runDemo,
	})
}

func runDemo(c *cli.Context) error {
	dir := c.String("dir")
	if dir != "" {
		if err := checkDemoDir(dir); err != nil {
			return err
		}
	}
	if dir == "" {
		d, err := os.MkdirTemp("", "wanda-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	w := c.App.Writer
	model := filepath.Join(dir, "tiny-model")
	pruned := filepath.Join(dir, "tiny-model-pruned")
	opt := modelgen.Default()
	opt.Layers, opt.Hidden, opt.Intermediate = 4, 128, 256
	fmt.Fprintf(w, "== generating a tiny random %s model (%d layers, hidden %d, %s) in %s\n", opt.Arch, opt.Layers, opt.Hidden, opt.DType, model)
	if err := modelgen.Write(model, opt); err != nil {
		return err
	}
	calib := filepath.Join(dir, "calib.jsonl")
	var b strings.Builder
	for i := 0; i < 8; i++ {
		for j, p := range demoText {
			doc := p + " " + demoText[(i+j+1)%len(demoText)]
			line, _ := json.Marshal(map[string]string{"text": doc})
			b.Write(line)
			b.WriteByte('\n')
		}
	}
	if err := os.WriteFile(calib, []byte(b.String()), 0o644); err != nil {
		return err
	}
	evalText := filepath.Join(dir, "eval.txt")
	if err := os.WriteFile(evalText, []byte(strings.Join(demoText, "\n\n")), 0o644); err != nil {
		return err
	}
	app := newApp()
	app.Writer, app.ErrWriter = w, c.App.ErrWriter
	run := func(args ...string) error { return app.Run(append([]string{"wanda"}, args...)) }
	fmt.Fprintln(w, "== dense perplexity")
	if err := run("eval", "--model", model, "--data", evalText, "--format", "text", "--seqlen", "64"); err != nil {
		return err
	}
	fmt.Fprintf(w, "== pruning with %s (%s, 50%%)\n", c.String("method"), c.String("pattern"))
	if err := run("prune", "--model", model, "--out", pruned, "--method", c.String("method"), "--pattern", c.String("pattern"),
		"--calib", calib, "--nsamples", "16", "--seqlen", "64", "--force"); err != nil {
		return err
	}
	fmt.Fprintln(w, "== pruned perplexity")
	if err := run("eval", "--model", pruned, "--data", evalText, "--format", "text", "--seqlen", "64"); err != nil {
		return err
	}
	fmt.Fprintln(w, "== what the pruned model holds (wanda inspect)")
	return run("inspect", "--model", pruned)
}

// demoFiles are what the demo writes into its directory.
var demoFiles = []string{"tiny-model", "tiny-model-pruned", "calib.jsonl", "eval.txt"}

// checkDemoDir refuses a --dir that holds anything but a previous demo's
// files: the demo overwrites those, and must not overwrite anything else.
func checkDemoDir(dir string) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w: --dir: %w", errUsage, err)
	}
	var other []string
	for _, e := range ents {
		n := e.Name()
		if !slices.Contains(demoFiles, n) && !strings.HasPrefix(n, ".tiny-model-pruned.") {
			other = append(other, n)
		}
	}
	if len(other) > 0 {
		return fmt.Errorf("%w: --dir %s holds files the demo did not write (%s); give a new or empty directory",
			errUsage, dir, strings.Join(other[:min(len(other), 5)], ", "))
	}
	return nil
}
