package main

import (
	"fmt"
	"path/filepath"

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
	nsamples := c.Int("nsamples")
	if nsamples <= 0 {
		return nil, info, fmt.Errorf("%w: --nsamples %d must be positive", errUsage, nsamples)
	}
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
		if c.IsSet("nsamples") && nsamples < len(w) {
			w = w[:nsamples]
		}
		abs, _ := filepath.Abs(tokFile)
		info = pipeline.CalibInfo{Source: abs + "#" + key, Kind: "tokens", Windows: len(w), SeqLen: len(w[0])}
		return w, info, nil
	}
	seqlen := c.Int("seqlen")
	if seqlen <= 0 {
		var capped bool
		seqlen, capped = defaultSeqLen(cfg)
		if capped {
			fmt.Fprintf(c.App.ErrWriter, "note: seqlen defaults to max_position_embeddings (%d), capped at %d\n", cfg.MaxPositionEmbeddings, seqlen)
		}
	}
	w, err := sampleCalibration(c, file, seqlen, nsamples, c.Int64("seed"))
	if err != nil {
		return nil, info, err
	}
	abs, _ := filepath.Abs(file)
	info = pipeline.CalibInfo{Source: abs, Kind: "text", Windows: len(w), SeqLen: seqlen, Seed: c.Int64("seed")}
	return w, info, nil
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
