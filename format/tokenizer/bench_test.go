package tokenizer

import (
	"strings"
	"testing"
	"time"

	"github.com/wanda-go/wanda/format/textdata"
	"github.com/wanda-go/wanda/internal/testenv"
)

// benchText returns English text: the WikiText-2 test split (rows joined as
// the eval does) when ../shared is present, else generated text.
func benchText(b *testing.B) string {
	b.Helper()
	if p, ok := sharedPath("data/wikitext-2/wiki.test.raw"); ok {
		rows, err := textdata.ReadWikiTextRaw(p)
		if err != nil {
			b.Fatal(err)
		}
		return strings.Join(rows, "\n\n")
	}
	return generatedEnglish(1 << 20)
}

// sharedPath is sharedFile without skipping.
func sharedPath(rel string) (string, bool) {
	return testenv.LookupShared(rel)
}

// benchTokenizers returns the Llama-style (SentencePiece BPE) and byte-level
// tokenizers: from ../shared when present, else the synthetic fixtures.
func benchTokenizers(b *testing.B) map[string]*Tokenizer {
	b.Helper()
	out := map[string]*Tokenizer{}
	if p, ok := sharedPath("models/tiny-llama-a/tokenizer.json"); ok {
		t, err := Load(p)
		if err != nil {
			b.Fatal(err)
		}
		out["tiny-llama-a"] = t
	} else {
		out["synthetic-spm"] = mustParse(b, syntheticSPM())
	}
	if p, ok := sharedPath("reference/tokenizers/gpt2/tokenizer.json"); ok {
		t, err := Load(p)
		if err != nil {
			b.Fatal(err)
		}
		out["gpt2"] = t
	} else {
		out["synthetic-bytelevel"] = mustParse(b, syntheticByteLevel())
	}
	return out
}

// BenchmarkEncode measures steady-state encoding throughput (the word cache
// warm after the first iteration) on English text, one goroutine. Besides
// the wall-clock MB/s it reports cpu-MB/s, the bytes per second of process
// CPU time (all threads, GC included), which stays meaningful on a shared,
// oversubscribed machine.
func BenchmarkEncode(b *testing.B) {
	text := benchText(b)
	for name, tok := range benchTokenizers(b) {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(text)))
			b.ReportAllocs()
			c0, ok := processCPU()
			for b.Loop() {
				tok.Encode(text, true)
			}
			reportCPU(b, c0, ok, len(text))
		})
	}
}

func reportCPU(b *testing.B, c0 time.Duration, ok bool, n int) {
	c1, ok1 := processCPU()
	if ok && ok1 && c1 > c0 {
		b.ReportMetric(float64(n)*float64(b.N)/1e6/(c1-c0).Seconds(), "cpu-MB/s")
	}
}

// BenchmarkEncodeCold is BenchmarkEncode with the word cache emptied before
// every iteration (first-touch cost).
func BenchmarkEncodeCold(b *testing.B) {
	text := benchText(b)
	for name, tok := range benchTokenizers(b) {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(text)))
			c0, ok := processCPU()
			for b.Loop() {
				tok.model.mu.Lock()
				clear(tok.model.cache)
				tok.model.mu.Unlock()
				tok.Encode(text, true)
			}
			reportCPU(b, c0, ok, len(text))
		})
	}
}
