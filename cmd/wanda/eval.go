package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/wanda-go/wanda/format/safetensors"
	"github.com/wanda-go/wanda/format/textdata"
	"github.com/wanda-go/wanda/format/tokenizer"
	"github.com/wanda-go/wanda/model"
	"github.com/wanda-go/wanda/model/arch"
	"github.com/wanda-go/wanda/stages/eval"
	"github.com/wanda-go/wanda/tensor"
	"github.com/wanda-go/wanda/transform"
)

// defaultSeqLenCap caps the default window (max_position_embeddings) as the
// reference's LLaMA-2 evaluation uses 4096 and Llama-3's 131072 is impractical.
const defaultSeqLenCap = 4096

func init() {
	register(&cli.Command{
		Name:  "eval",
		Usage: "measure perplexity (reference protocol: text tokenized once with BOS, non-overlapping windows)",
		Description: "Evaluates a model directory (dense, or packed by \"wanda pack\" / \"prune --pack\") on an\n" +
			"evaluation text (--data) or on pre-tokenized ids\n" +
			"(--tokens FILE.safetensors --tokens-key NAME). The ids are cut into numel/seqlen\n" +
			"non-overlapping windows; ppl = exp(mean over windows of the mean next-token NLL).",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "model", Required: true, Usage: "model `DIR` (config.json, *.safetensors, tokenizer.json)"},
			&cli.StringFlag{Name: "data", Usage: "evaluation text `FILE` (WikiText raw, JSONL or plain text)"},
			&cli.StringFlag{Name: "tokens", Usage: "pre-tokenized ids: a safetensors `FILE` with an integer tensor"},
			&cli.StringFlag{Name: "tokens-key", Usage: "tensor `NAME` in --tokens (flattened; any integer dtype)"},
			&cli.IntFlag{Name: "seqlen", Usage: "window length in tokens (default: max_position_embeddings, capped at 4096)"},
			&cli.IntFlag{Name: "max-windows", Usage: "evaluate only the first `K` windows (0 = all)"},
			&cli.StringFlag{Name: "format", Value: "auto", Usage: "format of --data: auto, wikitext, jsonl or text"},
			&cli.BoolFlag{Name: "json", Usage: "print the result as one JSON object"},
			&cli.IntFlag{Name: "threads", Usage: "compute threads (default: all CPUs)"},
			&cli.IntFlag{Name: "memory-mib", Value: eval.DefaultMemoryBudget >> 20, Usage: "activation budget per chunk of windows, in MiB"},
		},
		Action: runEval,
	})
}

// transform.Reader is the dense view eval reads a model directory through.
var _ model.Source = transform.Reader(nil)

// evalResultJSON is the --json output.
type evalResultJSON struct {
	PPL             float64 `json:"ppl"`
	Windows         int     `json:"windows"`
	Tokens          int     `json:"tokens"`
	SeqLen          int     `json:"seqlen"`
	Seconds         float64 `json:"seconds"`
	TokensPerSecond float64 `json:"tokens_per_second"`
}

func runEval(c *cli.Context) error {
	if c.NArg() > 0 {
		return fmt.Errorf("eval: unexpected arguments %q", c.Args().Slice())
	}
	dir := c.String("model")
	data, tokPath, key := c.String("data"), c.String("tokens"), c.String("tokens-key")
	switch {
	case data == "" && tokPath == "":
		return errors.New("eval: give --data FILE or --tokens FILE --tokens-key NAME")
	case data != "" && tokPath != "":
		return errors.New("eval: --data and --tokens are mutually exclusive")
	case tokPath != "" && key == "":
		return errors.New("eval: --tokens needs --tokens-key NAME")
	case tokPath == "" && key != "":
		return errors.New("eval: --tokens-key needs --tokens FILE")
	}
	if c.Int("max-windows") < 0 || c.Int("seqlen") < 0 || c.Int("memory-mib") < 0 || c.Int("threads") < 0 {
		return errors.New("eval: --seqlen, --max-windows, --memory-mib and --threads must not be negative")
	}
	if n := c.Int("threads"); n > 0 {
		defer tensor.SetThreads(tensor.SetThreads(n))
	}
	stderr := c.App.ErrWriter
	if stderr == nil {
		stderr = os.Stderr
	}

	cfg, _, err := arch.LoadDir(dir)
	if err != nil {
		return fmt.Errorf("eval: %w", err)
	}
	seqlen := c.Int("seqlen")
	if seqlen == 0 {
		seqlen = cfg.MaxPositionEmbeddings
		if seqlen > defaultSeqLenCap {
			seqlen = defaultSeqLenCap
			fmt.Fprintf(stderr, "note: max_position_embeddings %d capped to seqlen %d (set --seqlen to change)\n",
				cfg.MaxPositionEmbeddings, seqlen)
		}
	} else if seqlen > cfg.MaxPositionEmbeddings {
		slog.Warn("seqlen exceeds max_position_embeddings", "seqlen", seqlen, "max_position_embeddings", cfg.MaxPositionEmbeddings)
	}
	if seqlen < 2 {
		return fmt.Errorf("eval: seqlen %d: need at least 2 tokens per window", seqlen)
	}

	var ids []int32
	if data != "" {
		ids, err = tokenizeEvalText(dir, data, c.String("format"))
	} else {
		ids, err = readTokenIDs(tokPath, key)
	}
	if err != nil {
		return fmt.Errorf("eval: %w", err)
	}
	if seqlen > len(ids) {
		return fmt.Errorf("eval: seqlen %d exceeds the %d tokens of the data: %w", seqlen, len(ids), eval.ErrTooFewTokens)
	}

	// A dense view: packed (compressed-tensors) linears are unpacked as each
	// block is loaded, giving the same float32 weights as the dense model.
	src, err := transform.Open(dir)
	if err != nil {
		return fmt.Errorf("eval: %w", err)
	}
	defer src.Close()

	opt := eval.Options{SeqLen: seqlen, MaxWindows: c.Int("max-windows"), MemoryBudget: int64(c.Int("memory-mib")) << 20}
	if stderr == os.Stderr { // the console: a bar on a terminal, nothing otherwise
		opt.Progress = func(p eval.Progress) {
			console.Progress(fmt.Sprintf("eval %d/%d windows", p.WindowsDone, p.Windows), p.Done, p.Total)
		}
	}
	slog.Debug("eval", "model", dir, "format", src.Format(), "config", cfg.String(), "tokens", len(ids), "seqlen", seqlen)
	res, err := eval.PerplexityFrom(c.Context, src, cfg, ids, opt)
	console.Finish()
	if err != nil {
		return fmt.Errorf("eval: %w", err)
	}

	out := c.App.Writer
	if c.Bool("json") {
		b, err := json.Marshal(evalResultJSON{PPL: res.PPL, Windows: res.Windows, Tokens: res.Tokens, SeqLen: res.SeqLen,
			Seconds: res.Seconds, TokensPerSecond: res.TokensPerSecond})
		if err != nil {
			return fmt.Errorf("eval: %w", err)
		}
		_, err = fmt.Fprintf(out, "%s\n", b)
		return err
	}
	_, err = fmt.Fprintf(out, "ppl %.4f  (%d windows × %d tokens = %d tokens, %.1f s, %.0f tokens/s)\n",
		res.PPL, res.Windows, res.SeqLen, res.Tokens, res.Seconds, res.TokensPerSecond)
	return err
}

// tokenizeEvalText reads the evaluation text of path and encodes it once
// with the model's tokenizer.json, BOS included.
func tokenizeEvalText(modelDir, path, format string) ([]int32, error) {
	f, err := textdata.ParseFormat(format)
	if err != nil {
		return nil, fmt.Errorf("--format: %w", err)
	}
	tok, err := tokenizer.Load(filepath.Join(modelDir, "tokenizer.json"))
	if err != nil {
		return nil, err
	}
	text, err := textdata.EvalText(path, f)
	if err != nil {
		return nil, err
	}
	return tok.Encode(text, true), nil
}

// readTokenIDs reads the integer tensor key of a safetensors file, flattened.
func readTokenIDs(path, key string) ([]int32, error) {
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	t, ok := f.Tensor(key)
	if !ok {
		var names []string
		for _, t := range f.Tensors() {
			if t.DType.IsInt() {
				names = append(names, t.Name)
			}
		}
		return nil, fmt.Errorf("%s: no tensor %q (integer tensors: %s): %w", path, key, strings.Join(names, ", "), safetensors.ErrMissingTensor)
	}
	if !t.DType.IsInt() {
		return nil, fmt.Errorf("%s: tensor %q has dtype %s, want an integer dtype", path, key, t.DType)
	}
	v, err := t.Int64s()
	if err != nil {
		return nil, err
	}
	ids := make([]int32, len(v))
	for i, x := range v {
		if x < 0 || x > math.MaxInt32 {
			return nil, fmt.Errorf("%s: tensor %q: element %d = %d is not a token id", path, key, i, x)
		}
		ids[i] = int32(x)
	}
	return ids, nil
}
