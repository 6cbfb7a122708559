package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/wanda-go/wanda/calib"
	"github.com/wanda-go/wanda/format/textdata"
	"github.com/wanda-go/wanda/format/tokenizer"
)

// sampleCalibration draws nsamples windows of seqlen tokens from the documents of file the
// way the reference does (Python random seeded with seed; a random document longer than
// seqlen, a random offset in it).
func sampleCalibration(c *cli.Context, file string, seqlen, nsamples int, seed int64) ([][]int32, error) {
	f, err := textdata.ParseFormat(c.String("calib-format"))
	if err != nil {
		return nil, fmt.Errorf("%w: --calib-format: %w", errUsage, err)
	}
	docs, err := textdata.Documents(file, f)
	if err != nil {
		return nil, err
	}
	tok, err := loadTokenizer(c.String("model"))
	if err != nil {
		return nil, err
	}
	return calib.SampleWindows(docs, tok, nsamples, seqlen, seed)
}

// loadTokenizer reads DIR/tokenizer.json.
func loadTokenizer(modelDir string) (*tokenizer.Tokenizer, error) {
	p := filepath.Join(modelDir, "tokenizer.json")
	if _, err := os.Stat(p); err != nil {
		return nil, fmt.Errorf("%s: the model has no tokenizer.json (needed to tokenize text; pre-tokenized windows can be given with --calib-tokens): %w", modelDir, err)
	}
	return tokenizer.Load(p)
}
