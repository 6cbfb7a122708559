package tokenizer

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// decoder is tokenizers' Decoder::decode_chain: tokens in, strings out; the
// final text is the concatenation of the output.
type decoder interface {
	decodeChain(tokens []string) []string
}

type seqDecoder []decoder

func (q seqDecoder) decodeChain(t []string) []string {
	for _, d := range q {
		t = d.decodeChain(t)
	}
	return t
}

type replaceDecoder struct{ from, to string }

func (r replaceDecoder) decodeChain(t []string) []string {
	for i, s := range t {
		t[i] = strings.ReplaceAll(s, r.from, r.to)
	}
	return t
}

// byteFallbackDecoder turns runs of <0xNN> tokens back into text; an invalid
// UTF-8 run becomes one U+FFFD per byte.
type byteFallbackDecoder struct{}

func parseByteToken(tok string) (byte, bool) {
	if len(tok) != 6 || !strings.HasPrefix(tok, "<0x") || tok[5] != '>' {
		return 0, false
	}
	// Rust's u8::from_str_radix accepts a leading '+'.
	v, err := strconv.ParseUint(strings.TrimPrefix(tok[3:5], "+"), 16, 8)
	if err != nil || tok[3:5] == "+" || strings.HasPrefix(tok[3:5], "-") {
		return 0, false
	}
	return byte(v), true
}

func (byteFallbackDecoder) decodeChain(t []string) []string {
	out := t[:0:0]
	var pending []byte
	flush := func() {
		if len(pending) == 0 {
			return
		}
		if utf8.Valid(pending) {
			out = append(out, string(pending))
		} else {
			for range pending {
				out = append(out, "\uFFFD")
			}
		}
		pending = pending[:0]
	}
	for _, s := range t {
		if b, ok := parseByteToken(s); ok {
			pending = append(pending, b)
			continue
		}
		flush()
		out = append(out, s)
	}
	flush()
	return out
}

type fuseDecoder struct{}

func (fuseDecoder) decodeChain(t []string) []string { return []string{strings.Join(t, "")} }

// stripDecoder removes up to start leading and stop trailing content chars
// from every token.
type stripDecoder struct {
	content     rune
	start, stop int
}

func (d stripDecoder) decodeChain(t []string) []string {
	for i, s := range t {
		chars := []rune(s)
		startCut := 0
		for k := 0; k < d.start && k < len(chars); k++ {
			if chars[k] != d.content {
				break
			}
			startCut = k + 1
		}
		stopCut := len(chars)
		for k := 0; k < d.stop; k++ {
			idx := len(chars) - k - 1
			if idx < 0 || chars[idx] != d.content {
				break
			}
			stopCut = idx
		}
		if stopCut < startCut {
			stopCut = startCut
		}
		t[i] = string(chars[startCut:stopCut])
	}
	return t
}

// byteLevelDecoder maps GPT-2's unicode alphabet back to bytes; a token with
// a char outside the alphabet contributes its UTF-8 bytes unchanged.
type byteLevelDecoder struct{}

func (byteLevelDecoder) decodeChain(t []string) []string {
	var buf []byte
	for _, s := range t {
		n := len(buf)
		ok := true
		for _, r := range s {
			b, found := runeToByte[r]
			if !found {
				ok = false
				break
			}
			buf = append(buf, b)
		}
		if !ok {
			buf = append(buf[:n], s...)
		}
	}
	return []string{lossyUTF8(buf)}
}

// metaspaceDecoder turns the replacement char into spaces, dropping them in
// the first token unless prepend_scheme is "never".
type metaspaceDecoder struct {
	replR  rune
	scheme prependScheme
}

func (d metaspaceDecoder) decodeChain(t []string) []string {
	for i, s := range t {
		var sb strings.Builder
		for _, r := range s {
			if r == d.replR {
				if i == 0 && d.scheme != prependNever {
					continue
				}
				sb.WriteByte(' ')
			} else {
				sb.WriteRune(r)
			}
		}
		t[i] = sb.String()
	}
	return t
}

func parseDecoder(raw json.RawMessage, where string) (decoder, error) {
	if isNull(raw) {
		return nil, nil
	}
	var t typed
	if err := json.Unmarshal(raw, &t); err != nil {
		return nil, fmt.Errorf("%s: %w: %w", where, err, ErrMalformed)
	}
	switch t.Type {
	case "Sequence":
		var v struct {
			Decoders []json.RawMessage `json:"decoders"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fmt.Errorf("%s: %w: %w", where, err, ErrMalformed)
		}
		q, err := parseSequence(v.Decoders, where+".decoders", parseDecoder)
		if err != nil {
			return nil, err
		}
		return seqDecoder(q), nil
	case "Replace":
		from, to, err := parseReplace(raw, where)
		if err != nil {
			return nil, err
		}
		return replaceDecoder{from, to}, nil
	case "ByteFallback":
		return byteFallbackDecoder{}, nil
	case "Fuse":
		return fuseDecoder{}, nil
	case "Strip":
		var v struct {
			Content *string `json:"content"`
			Start   int     `json:"start"`
			Stop    int     `json:"stop"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fmt.Errorf("%s: %w: %w", where, err, ErrMalformed)
		}
		if v.Content == nil || utf8.RuneCountInString(*v.Content) != 1 || v.Start < 0 || v.Stop < 0 {
			return nil, fmt.Errorf("%s: Strip needs a one-char \"content\" and non-negative start/stop: %w", where, ErrMalformed)
		}
		r, _ := utf8.DecodeRuneInString(*v.Content)
		return stripDecoder{r, v.Start, v.Stop}, nil
	case "ByteLevel":
		return byteLevelDecoder{}, nil
	case "Metaspace":
		st, err := parseMetaspace(raw, where)
		if err != nil {
			return nil, err
		}
		return metaspaceDecoder{st.replR, st.scheme}, nil
	case "":
		return nil, fmt.Errorf("%s: missing \"type\": %w", where, ErrMalformed)
	default:
		return nil, fmt.Errorf("%s: decoder type %q: %w", where, t.Type, ErrUnsupported)
	}
}
