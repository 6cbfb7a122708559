package eval

import (
	"context"
	"errors"
	"math"
	"path/filepath"
	"testing"

	"github.com/wanda-go/wanda/format/config"
	"github.com/wanda-go/wanda/format/safetensors"
	"github.com/wanda-go/wanda/internal/testenv"
)

// sharedPath returns ../shared/rel relative to the module root, skipping the
// test (or failing under CI=true) when it is absent.
func sharedPath(t testing.TB, rel string) string {
	t.Helper()
	return testenv.SharedPath(t, rel)
}

func openTiny(t testing.TB) (*safetensors.Set, *config.Config) {
	t.Helper()
	dir := sharedPath(t, "models/tiny-llama-a")
	cfg, err := config.Load(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { set.Close() })
	return set, cfg
}

// readInts reads an integer tensor of a safetensors file as int32.
func readInts(t testing.TB, path, name string) []int32 {
	t.Helper()
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tt, ok := f.Tensor(name)
	if !ok {
		t.Fatalf("%s: no tensor %q", path, name)
	}
	v, err := tt.Int64s()
	if err != nil {
		t.Fatal(err)
	}
	out := make([]int32, len(v))
	for i, x := range v {
		out[i] = int32(x)
	}
	return out
}

// refWindowNLL is the mean NLL of the 41-token sequence computed from the
// logits transformers produced for it.
func refWindowNLL(t testing.TB) ([]int32, float64) {
	path := sharedPath(t, "reference/tiny-llama-a/transformers_logits.safetensors")
	ids := readInts(t, path, "input_ids")
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
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
	return ids, s / float64(len(ids)-1)
}

// TestProtocolAgainstTransformers: three copies of the reference sequence
// plus a partial one give three identical windows (the remainder is dropped)
// whose NLL is the one implied by transformers' logits, however the windows
// are chunked.
func TestProtocolAgainstTransformers(t *testing.T) {
	set, cfg := openTiny(t)
	ids, want := refWindowNLL(t)
	T := len(ids)
	var all []int32
	for range 3 {
		all = append(all, ids...)
	}
	all = append(all, ids[:T-1]...)
	for _, cw := range []int{1, 2, 0} {
		var calls int
		var last Progress
		res, err := Perplexity(context.Background(), set, cfg, all, Options{SeqLen: T, ChunkWindows: cw,
			Progress: func(p Progress) { calls++; last = p }})
		if err != nil {
			t.Fatal(err)
		}
		if res.Windows != 3 || res.Tokens != 3*T || res.SeqLen != T || len(res.WindowNLL) != 3 {
			t.Fatalf("chunk %d: windows %d tokens %d seqlen %d nll %v", cw, res.Windows, res.Tokens, res.SeqLen, res.WindowNLL)
		}
		for i, v := range res.WindowNLL {
			if math.Abs(v-want) > 1e-5 {
				t.Errorf("chunk %d: window %d NLL %.7f, transformers %.7f", cw, i, v, want)
			}
		}
		if math.Abs(res.PPL-math.Exp(want))/math.Exp(want) > 1e-5 {
			t.Errorf("chunk %d: ppl %.6f, want %.6f", cw, res.PPL, math.Exp(want))
		}
		if last.Done != last.Total || last.WindowsDone != 3 || calls < 2 {
			t.Errorf("chunk %d: last progress %+v after %d calls", cw, last, calls)
		}
	}
	// MaxWindows keeps the first windows only.
	res, err := Perplexity(context.Background(), set, cfg, all, Options{SeqLen: T, MaxWindows: 2})
	if err != nil {
		t.Fatal(err)
	}
	if res.Windows != 2 {
		t.Errorf("MaxWindows 2: %d windows", res.Windows)
	}
}

func TestErrors(t *testing.T) {
	set, cfg := openTiny(t)
	ctx := context.Background()
	if _, err := Perplexity(ctx, set, cfg, make([]int32, 10), Options{SeqLen: 11}); !errors.Is(err, ErrTooFewTokens) {
		t.Errorf("too few tokens: %v", err)
	}
	if _, err := Perplexity(ctx, set, cfg, make([]int32, 10), Options{SeqLen: 1}); !errors.Is(err, ErrBadOptions) {
		t.Errorf("seqlen 1: %v", err)
	}
	if _, err := Perplexity(ctx, set, cfg, []int32{1, 2, 4096, 3}, Options{SeqLen: 4}); err == nil {
		t.Error("id 4096 accepted with vocab 4096")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := Perplexity(cctx, set, cfg, make([]int32, 64), Options{SeqLen: 32}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

func TestChunkWindows(t *testing.T) {
	cfg := &config.Config{HiddenSize: 384, IntermediateSize: 1024, NumHeads: 6, NumKVHeads: 6, HeadDim: 64}
	// Per token: hidden + (x + qkv + attn + gate/up) = 384 + 384+1152+384+2048 floats = 17408 bytes.
	if got, want := ChunkWindows(cfg, 512, 512<<20), (512<<20)/(17408*512); got != want {
		t.Errorf("ChunkWindows = %d, want %d", got, want)
	}
	if got := ChunkWindows(cfg, 4096, 1); got != 1 {
		t.Errorf("tiny budget: %d windows, want 1", got)
	}
}

// BenchmarkPerplexity measures evaluation throughput on tiny-llama-a with 8
// windows of 512 tokens.
func BenchmarkPerplexity(b *testing.B) {
	set, cfg := openTiny(b)
	ids := readInts(b, sharedPath(b, "reference/tiny-llama-a/reference.safetensors"), "wikitext_test_ids")
	const windows, T = 8, 512
	var tokens int
	b.ResetTimer()
	for b.Loop() {
		res, err := Perplexity(context.Background(), set, cfg, ids, Options{SeqLen: T, MaxWindows: windows})
		if err != nil {
			b.Fatal(err)
		}
		tokens += res.Tokens
	}
	b.ReportMetric(float64(tokens)/b.Elapsed().Seconds(), "tokens/s")
}
