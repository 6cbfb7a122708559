package calib

import (
	"errors"
	"fmt"
	"math"

	"github.com/wanda-go/wanda/calib/pyrandom"
)

// Encoder tokenizes one document; addSpecial adds BOS (and whatever else the
// tokenizer's post-processor adds), as HF's tokenizer(text) does by default.
type Encoder interface {
	Encode(text string, addSpecial bool) []int32
}

var (
	// ErrNoLongDocument reports that no document has more than seqlen
	// tokens, so the reference's rejection loop would never end.
	ErrNoLongDocument = errors.New("calib: no document is longer than seqlen tokens")
	// ErrBadArgument reports an invalid count, length or empty input.
	ErrBadArgument = errors.New("calib: invalid argument")
)

// SampleWindows reproduces get_c4's calibration sampling:
//
//	random.seed(seed)
//	for each sample:
//	    repeat: i = randint(0, len(docs)-1); enc = tokenize(docs[i])  until len(enc) > seqlen
//	    j = randint(0, len(enc)-seqlen-1); window = enc[j:j+seqlen]
//
// Each document is tokenized at most once. Before drawing, documents are
// tokenized in order until one is long enough; if none is,
// ErrNoLongDocument is returned instead of looping forever.
func SampleWindows(docs []string, tok Encoder, nsamples, seqlen int, seed int64) ([][]int32, error) {
	switch {
	case tok == nil:
		return nil, fmt.Errorf("%w: nil tokenizer", ErrBadArgument)
	case len(docs) == 0:
		return nil, fmt.Errorf("%w: no documents", ErrBadArgument)
	case nsamples < 0:
		return nil, fmt.Errorf("%w: nsamples %d < 0", ErrBadArgument, nsamples)
	case seqlen < 1:
		return nil, fmt.Errorf("%w: seqlen %d < 1", ErrBadArgument, seqlen)
	case nsamples > math.MaxInt/4/seqlen:
		return nil, fmt.Errorf("%w: %d windows of %d tokens do not fit in memory", ErrBadArgument, nsamples, seqlen)
	}
	cache := make(map[int][]int32)
	encode := func(i int) []int32 {
		enc, ok := cache[i]
		if !ok {
			enc = tok.Encode(docs[i], true)
			cache[i] = enc
		}
		return enc
	}
	found := false
	for i := range docs {
		if len(encode(i)) > seqlen {
			found = true
			break
		}
	}
	if !found {
		return nil, fmt.Errorf("%w: %d documents, seqlen %d", ErrNoLongDocument, len(docs), seqlen)
	}

	r := pyrandom.New(seed)
	out := make([][]int32, 0, min(nsamples, 1<<16)) // grows past that only as windows are drawn
	for range nsamples {
		var enc []int32
		for {
			i, err := r.RandInt(0, int64(len(docs)-1))
			if err != nil {
				return nil, err
			}
			enc = encode(int(i))
			if len(enc) > seqlen {
				break
			}
		}
		j, err := r.RandInt(0, int64(len(enc)-seqlen-1))
		if err != nil {
			return nil, err
		}
		out = append(out, append([]int32(nil), enc[j:int(j)+seqlen]...))
	}
	return out, nil
}
