package main

import (
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/wanda-go/wanda/format/tokenizer"
)

func init() {
	register(&cli.Command{
		Name:      "tokenize",
		Usage:     "print the token ids of a text as a JSON array",
		UsageText: "wanda tokenize (--model DIR | --tokenizer FILE) [--no-special] [--text S]",
		Description: `Encodes the text with the model's tokenizer.json exactly as Hugging Face tokenizers'
encode(text, add_special_tokens=True) does (with --no-special: add_special_tokens=False).
Without --text the whole of standard input is read and encoded as is (a trailing newline
is part of the text).`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "model", Usage: "model directory holding tokenizer.json"},
			&cli.StringFlag{Name: "tokenizer", Usage: "path of a tokenizer.json"},
			&cli.BoolFlag{Name: "no-special", Usage: "do not add special tokens (BOS)"},
			&cli.StringFlag{Name: "text", Usage: "text to encode (default: read standard input)"},
		},
		Action: runTokenize,
	})
}

func runTokenize(c *cli.Context) error {
	path := c.String("tokenizer")
	switch {
	case c.IsSet("model") && c.IsSet("tokenizer"):
		return fmt.Errorf("%w: give --model or --tokenizer, not both", errUsage)
	case c.IsSet("model"):
		path = filepath.Join(c.String("model"), "tokenizer.json")
	case !c.IsSet("tokenizer"):
		return fmt.Errorf("%w: --model DIR or --tokenizer FILE is required", errUsage)
	}
	tok, err := tokenizer.Load(path)
	if err != nil {
		return err
	}
	text := c.String("text")
	if !c.IsSet("text") {
		in := c.App.Reader
		if in == nil {
			return fmt.Errorf("%w: no --text and no standard input", errUsage)
		}
		b, err := io.ReadAll(in)
		if err != nil {
			return fmt.Errorf("reading standard input: %w", err)
		}
		text = string(b)
	}
	ids := tok.Encode(text, !c.Bool("no-special"))
	if ids == nil {
		ids = []int32{}
	}
	out, err := json.Marshal(ids)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(c.App.Writer, "%s\n", out)
	return err
}
