package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/wanda-go/wanda/format/dtype"
	"github.com/wanda-go/wanda/format/safetensors"
	"github.com/wanda-go/wanda/internal/testenv"
	"github.com/wanda-go/wanda/stages/eval"
)

// evalShared returns ../shared/rel next to the module root, skipping the test
// when it is absent (failing when CI=true).
func evalShared(t *testing.T, rel string) string {
	t.Helper()
	return testenv.SharedPath(t, rel)
}

// evalRun runs the CLI in-process, returning stdout and stderr.
func evalRun(args ...string) (string, string, error) {
	app := newApp()
	var out, errOut bytes.Buffer
	app.Writer, app.ErrWriter = &out, &errOut
	app.ExitErrHandler = func(*cli.Context, error) {}
	err := app.Run(append([]string{"wanda", "eval"}, args...))
	return out.String(), errOut.String(), err
}

func evalRunJSON(t *testing.T, args ...string) evalResultJSON {
	t.Helper()
	out, _, err := evalRun(append(args, "--json")...)
	if err != nil {
		t.Fatalf("eval %v: %v", args, err)
	}
	var r evalResultJSON
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		t.Fatalf("--json output %q: %v", out, err)
	}
	return r
}

// evalRefNLL is the mean NLL of the reference sequence implied by the logits
// transformers stored for it.
func evalRefNLL(t *testing.T, path string) float64 {
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	it, _ := f.Tensor("input_ids")
	ids, err := it.Int64s()
	if err != nil {
		t.Fatal(err)
	}
	lt, _ := f.Tensor("logits")
	logits, err := lt.Float32()
	if err != nil {
		t.Fatal(err)
	}
	V := len(logits) / len(ids)
	var s float64
	for p := 0; p+1 < len(ids); p++ {
		row := logits[p*V : (p+1)*V]
		mx := math.Inf(-1)
		for _, v := range row {
			mx = math.Max(mx, float64(v))
		}
		var z float64
		for _, v := range row {
			z += math.Exp(float64(v) - mx)
		}
		s += mx + math.Log(z) - float64(row[ids[p+1]])
	}
	return s / float64(len(ids)-1)
}

// TestEvalTokensAgainstTransformers: one window of the 41 reference ids gives
// exp of the NLL implied by transformers' logits; the same ids stored twice
// over (plus a dropped remainder) as I64 in another file give two windows
// with the same number.
func TestEvalTokensAgainstTransformers(t *testing.T) {
	model := evalShared(t, "models/tiny-llama-a")
	ref := evalShared(t, "reference/tiny-llama-a/transformers_logits.safetensors")
	want := math.Exp(evalRefNLL(t, ref))
	r := evalRunJSON(t, "--model", model, "--tokens", ref, "--tokens-key", "input_ids", "--seqlen", "41")
	if r.Windows != 1 || r.Tokens != 41 || r.SeqLen != 41 || !(r.Seconds > 0) || !(r.TokensPerSecond > 0) {
		t.Errorf("result %+v", r)
	}
	if math.Abs(r.PPL-want)/want > 1e-5 {
		t.Errorf("ppl %.6f, from transformers' logits %.6f", r.PPL, want)
	}

	// The same ids as I64 [41], twice over plus 10: two windows of 41.
	f, err := safetensors.Open(ref)
	if err != nil {
		t.Fatal(err)
	}
	it, _ := f.Tensor("input_ids")
	ids, err := it.Int64s()
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	all := append(append(append([]int64(nil), ids...), ids...), ids[:10]...)
	raw := make([]byte, 8*len(all))
	for i, v := range all {
		for b := range 8 {
			raw[8*i+b] = byte(uint64(v) >> (8 * b))
		}
	}
	p := filepath.Join(t.TempDir(), "ids.safetensors")
	if err := safetensors.WriteFile(p, []safetensors.Spec{{Name: "ids", DType: dtype.I64, Shape: []int64{int64(len(all))}}}, [][]byte{raw}, nil); err != nil {
		t.Fatal(err)
	}
	r2 := evalRunJSON(t, "--model", model, "--tokens", p, "--tokens-key", "ids", "--seqlen", "41")
	if r2.Windows != 2 || r2.Tokens != 82 || math.Abs(r2.PPL-want)/want > 1e-5 {
		t.Errorf("two windows: %+v, want ppl %.6f", r2, want)
	}
	out, _, err := evalRun("--model", model, "--tokens", p, "--tokens-key", "ids", "--seqlen", "41", "--max-windows", "1")
	if err != nil || !strings.HasPrefix(out, "ppl ") || !strings.Contains(out, "1 windows × 41 tokens") {
		t.Errorf("text output %q, %v", out, err)
	}
}

func TestEvalErrors(t *testing.T) {
	model := evalShared(t, "models/tiny-llama-a")
	ref := evalShared(t, "reference/tiny-llama-a/transformers_logits.safetensors")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--model", model}, "--data"},
		{[]string{"--model", model, "--data", "x", "--tokens", ref, "--tokens-key", "input_ids"}, "mutually exclusive"},
		{[]string{"--model", model, "--tokens", ref}, "--tokens-key"},
		{[]string{"--model", model, "--tokens", ref, "--tokens-key", "nope"}, "input_ids"},
		{[]string{"--model", model, "--tokens", ref, "--tokens-key", "logits"}, "integer"},
		// The default seqlen (512) exceeds the 41 tokens.
		{[]string{"--model", model, "--tokens", ref, "--tokens-key", "input_ids"}, "exceeds the 41 tokens"},
		{[]string{"--model", model, "--tokens", ref, "--tokens-key", "input_ids", "--seqlen", "1"}, "at least 2"},
		{[]string{"--model", model, "--data", ref, "--format", "xml"}, "format"},
	} {
		_, _, err := evalRun(c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want one mentioning %q", c.args, err, c.want)
		}
	}
	if _, _, err := evalRun("--model", model, "--tokens", ref, "--tokens-key", "input_ids"); !errors.Is(err, eval.ErrTooFewTokens) {
		t.Errorf("seqlen > tokens: %v should wrap eval.ErrTooFewTokens", err)
	}
}

// TestEvalWikiTextWindows: `wanda eval --data` on the raw WikiText-2 text scores the first
// windows exactly as `--tokens` on the token ids the reference itself evaluated: the CLI's
// text path (rows joined by "\n\n", tokenized once, windows cut in order) is the
// reference's. format/tokenizer's tests show the whole text tokenizes to exactly those ids.
func TestEvalWikiTextWindows(t *testing.T) {
	model := evalShared(t, "models/tiny-llama-a")
	data := evalShared(t, "data/wikitext-2/wiki.test.raw")
	refIDs := evalShared(t, "reference/tiny-llama-a/reference.safetensors")
	windows := "8"
	if testenv.Full() {
		windows = "64"
	}
	fromText := evalRunJSON(t, "--model", model, "--data", data, "--seqlen", "512", "--max-windows", windows)
	fromIDs := evalRunJSON(t, "--model", model, "--tokens", refIDs, "--tokens-key", "wikitext_test_ids", "--seqlen", "512", "--max-windows", windows)
	t.Logf("first %s windows: --data ppl %.17g, --tokens ppl %.17g", windows, fromText.PPL, fromIDs.PPL)
	if fromText.PPL != fromIDs.PPL || fromText.Windows != fromIDs.Windows || strconv.Itoa(fromIDs.Windows) != windows {
		t.Errorf("--data gives ppl %v over %d windows, --tokens %v over %d (want %s)", fromText.PPL, fromText.Windows, fromIDs.PPL, fromIDs.Windows, windows)
	}
}

// TestEvalWikiTextReference is the end-to-end check against locuslab/wanda: the dense
// WikiText-2 perplexity of tiny-llama-a at seqlen 512 over all 903 windows, from the raw
// text. It runs with WANDA_TEST_FULL=1 or =ci.
func TestEvalWikiTextReference(t *testing.T) {
	if testing.Short() {
		t.Skip("long: a full WikiText-2 evaluation")
	}
	testenv.RequireFull(t, "a full WikiText-2 evaluation")
	model := evalShared(t, "models/tiny-llama-a")
	data := evalShared(t, "data/wikitext-2/wiki.test.raw")
	resultsPath := evalShared(t, "reference/tiny-llama-a/results.json")
	var results struct {
		Runs []struct {
			Method string  `json:"method"`
			PPL    float64 `json:"wikitext2_ppl"`
		} `json:"runs"`
	}
	b, err := os.ReadFile(resultsPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &results); err != nil {
		t.Fatal(err)
	}
	var want float64
	for _, r := range results.Runs {
		if r.Method == "dense" {
			want = r.PPL
		}
	}
	if want == 0 {
		t.Fatal("results.json has no dense run")
	}
	fromText := evalRunJSON(t, "--model", model, "--data", data, "--seqlen", "512")
	rel := math.Abs(fromText.PPL-want) / want
	t.Logf("--data: ppl %.5f (reference %.5f, rel %.2g), %d windows, %d tokens, %.1f s, %.0f tokens/s",
		fromText.PPL, want, rel, fromText.Windows, fromText.Tokens, fromText.Seconds, fromText.TokensPerSecond)
	if rel > 1e-3 {
		t.Errorf("--data: ppl %g differs from the reference %g by more than 0.1%%", fromText.PPL, want)
	}
}
