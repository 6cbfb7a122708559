package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/wanda-go/wanda/format/config"
	"github.com/wanda-go/wanda/format/safetensors"
	"github.com/wanda-go/wanda/pipeline"
)

// defaultSeqLen is the reference's seqlen (max_position_embeddings) capped at 4096: the
// reference's uncapped value is the usual cause of out-of-memory reports on newer models.
func defaultSeqLen(cfg *config.Config) (n int, capped bool) {
	n = cfg.MaxPositionEmbeddings
	if n > 4096 {
		return 4096, true
	}
	return n, false
}

// loadCalibration returns the calibration windows of a prune run.
func loadCalibration(c *cli.Context, cfg *config.Config) ([][]int32, pipeline.CalibInfo, error) {
	var info pipeline.CalibInfo
	file, tokFile := c.String("calib"), c.String("calib-tokens")
	switch {
	case file != "" && tokFile != "":
		return nil, info, fmt.Errorf("%w: give --calib or --calib-tokens, not both", errUsage)
	case file == "" && tokFile == "":
		return nil, info, fmt.Errorf("%w: --method %s needs calibration data: --calib FILE (.jsonl or text) or --calib-tokens FILE --calib-key NAME", errUsage, c.String("method"))
	}
	nsamples := c.Int("nsamples") // at least 1 (flags.go)
	if tokFile != "" {
		key := c.String("calib-key")
		if key == "" {
			return nil, info, fmt.Errorf("%w: --calib-tokens needs --calib-key NAME", errUsage)
		}
		w, err := readTokenWindows(tokFile, key, cfg)
		if err != nil {
			return nil, info, err
		}
		if c.IsSet("seqlen") && c.Int("seqlen") != len(w[0]) {
			if c.Int("seqlen") > len(w[0]) {
				return nil, info, fmt.Errorf("%w: --seqlen %d is longer than the windows of %s (%d tokens)", errUsage, c.Int("seqlen"), tokFile, len(w[0]))
			}
			for i := range w {
				w[i] = w[i][:c.Int("seqlen")]
			}
		}
		if !c.IsSet("nsamples") && len(w) != nsamples {
			fmt.Fprintf(c.App.ErrWriter, "note: using the %d windows of %s#%s (give --nsamples to use fewer)\n", len(w), tokFile, key)
		}
		if c.IsSet("nsamples") {
			if nsamples > len(w) {
				return nil, info, fmt.Errorf("%w: --nsamples %d asks for more windows than %s#%s holds (%d windows of %d tokens)",
					errUsage, nsamples, tokFile, key, len(w), len(w[0]))
			}
			w = w[:nsamples]
		}
		warnSeqLen(c, cfg, len(w[0]))
		if err := checkCalibSize(c, cfg, len(w), len(w[0])); err != nil {
			return nil, info, err
		}
		abs, _ := filepath.Abs(tokFile)
		info = pipeline.CalibInfo{Source: abs + "#" + key, Kind: "tokens", Windows: len(w), SeqLen: len(w[0])}
		return w, info, nil
	}
	seqlen := c.Int("seqlen") // at least 1 when given (flags.go)
	if !c.IsSet("seqlen") || seqlen <= 0 {
		var capped bool
		seqlen, capped = defaultSeqLen(cfg)
		if capped {
			fmt.Fprintf(c.App.ErrWriter, "note: seqlen defaults to max_position_embeddings (%d), capped at %d\n", cfg.MaxPositionEmbeddings, seqlen)
		}
	}
	warnSeqLen(c, cfg, seqlen)
	// Bound the memory before sampling allocates any of it.
	if err := checkCalibSize(c, cfg, nsamples, seqlen); err != nil {
		return nil, info, err
	}
	w, err := sampleCalibration(c, file, seqlen, nsamples, c.Int64("seed"))
	if err != nil {
		return nil, info, err
	}
	abs, _ := filepath.Abs(file)
	info = pipeline.CalibInfo{Source: abs, Kind: "text", Windows: len(w), SeqLen: seqlen, Seed: c.Int64("seed")}
	return w, info, nil
}

// warnSeqLen warns when the calibration windows are longer than the model's
// positions (eval does the same): the model was not trained on such lengths.
func warnSeqLen(c *cli.Context, cfg *config.Config, seqlen int) {
	if cfg.MaxPositionEmbeddings > 0 && seqlen > cfg.MaxPositionEmbeddings {
		fmt.Fprintf(c.App.ErrWriter, "warning: seqlen %d exceeds max_position_embeddings %d of the model\n", seqlen, cfg.MaxPositionEmbeddings)
	}
}

// checkCalibSize refuses, before anything is allocated, a calibration that
// cannot fit this machine: n windows of t tokens are n·t int32 ids in memory,
// and their activations two stores of n·t·hidden float32 each, in memory when
// a store fits half of --activation-budget, else in scratch files in
// --scratch-dir. The refusal gives the sizes it would need.
func checkCalibSize(c *cli.Context, cfg *config.Config, n, t int) error {
	budget, err := parseSize(c.String("activation-budget"))
	if err != nil {
		return fmt.Errorf("--activation-budget: %w", err)
	}
	ids := float64(n) * float64(t) * 4
	store := float64(n) * float64(t) * float64(cfg.HiddenSize) * 4
	what := fmt.Sprintf("%d calibration windows of %d tokens (hidden size %d) need %s of token ids and %s of activations",
		n, t, cfg.HiddenSize, sizeString(ids), sizeString(2*store))
	ram, ramOK := physicalMemory()
	inRAM := ids
	if budget > 0 && store <= float64(budget)/2 {
		inRAM += 2 * store
	}
	switch {
	case ramOK && inRAM > float64(ram):
		return fmt.Errorf("%w: %s: %s in memory, more than this machine's %s; lower --nsamples or --seqlen",
			errUsage, what, sizeString(inRAM), pipeline.FormatBytes(ram))
	case !ramOK && inRAM > 1<<50:
		return fmt.Errorf("%w: %s: %s in memory; lower --nsamples or --seqlen", errUsage, what, sizeString(inRAM))
	}
	if inRAM == ids { // the activations go to scratch files
		dir := c.String("scratch-dir")
		if dir == "" {
			dir = os.TempDir()
		}
		if free, ok := pipeline.FreeSpace(dir); ok && 2*store > float64(free) {
			return fmt.Errorf("%w: %s: beyond --activation-budget %s they go to scratch files, and %s has %s free; lower --nsamples or --seqlen, or give --scratch-dir",
				errUsage, what, c.String("activation-budget"), dir, pipeline.FormatBytes(free))
		}
	}
	return nil
}

// sizeString is pipeline.FormatBytes for sizes that may exceed an int64.
func sizeString(b float64) string {
	if b < 1<<62 {
		return pipeline.FormatBytes(int64(b))
	}
	return fmt.Sprintf("%.3g bytes", b)
}

// physicalMemory returns the machine's memory (Linux /proc/meminfo MemTotal).
func physicalMemory() (int64, bool) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			f := strings.Fields(rest)
			if len(f) == 2 && f[1] == "kB" {
				if kb, err := strconv.ParseInt(f[0], 10, 64); err == nil {
					return kb << 10, true
				}
			}
		}
	}
	return 0, false
}

// readTokenWindows reads an integer tensor [N, T] of token windows and checks the ids.
func readTokenWindows(path, key string, cfg *config.Config) ([][]int32, error) {
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	t, ok := f.Tensor(key)
	if !ok {
		return nil, fmt.Errorf("%s: %w: %q", path, safetensors.ErrMissingTensor, key)
	}
	if len(t.Shape) != 2 || t.Shape[0] == 0 || t.Shape[1] < 2 {
		return nil, fmt.Errorf("%s: tensor %q has shape %v; calibration windows must be [N, T] with T >= 2", path, key, t.Shape)
	}
	ids, err := t.Int64s()
	if err != nil {
		return nil, fmt.Errorf("%s: tensor %q: %w", path, key, err)
	}
	n, T := int(t.Shape[0]), int(t.Shape[1])
	out := make([][]int32, n)
	for i := range out {
		out[i] = make([]int32, T)
		for j := range out[i] {
			v := ids[i*T+j]
			if v < 0 || v >= int64(cfg.VocabSize) {
				return nil, fmt.Errorf("%s: tensor %q: token id %d at [%d, %d] outside the vocabulary [0, %d)", path, key, v, i, j, cfg.VocabSize)
			}
			out[i][j] = int32(v)
		}
	}
	return out, nil
}
