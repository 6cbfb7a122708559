package tokenizer

import (
	"strings"
	"unicode/utf8"
)

// GPT-2's reversible byte <-> unicode map: printable Latin-1 bytes map to
// themselves, the other 68 bytes to U+0100.. in byte order.
var (
	byteToRune   [256]rune
	byteToString [256]string
	runeToByte   = map[rune]byte{}
)

func init() {
	n := 0
	for b := 0; b < 256; b++ {
		printable := (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)
		r := rune(b)
		if !printable {
			r = rune(256 + n)
			n++
		}
		byteToRune[b] = r
		byteToString[b] = string(r)
		runeToByte[r] = byte(b)
	}
}

// lossyUTF8 converts bytes to a string the way Rust's String::from_utf8_lossy
// does: each maximal prefix of an invalid sequence becomes one U+FFFD.
func lossyUTF8(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	var sb strings.Builder
	sb.Grow(len(b) + 8)
	for i := 0; i < len(b); {
		c := b[i]
		if c < utf8.RuneSelf {
			sb.WriteByte(c)
			i++
			continue
		}
		if r, size := utf8.DecodeRune(b[i:]); r != utf8.RuneError || size > 1 {
			sb.Write(b[i : i+size])
			i += size
			continue
		}
		need, lo, hi := 0, byte(0x80), byte(0xBF)
		switch {
		case c >= 0xC2 && c <= 0xDF:
			need = 1
		case c == 0xE0:
			need, lo = 2, 0xA0
		case (c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF:
			need = 2
		case c == 0xED:
			need, hi = 2, 0x9F
		case c == 0xF0:
			need, lo = 3, 0x90
		case c >= 0xF1 && c <= 0xF3:
			need = 3
		case c == 0xF4:
			need, hi = 3, 0x8F
		}
		n := 1
		if need > 0 && i+1 < len(b) && b[i+1] >= lo && b[i+1] <= hi {
			n = 2
			for k := 2; k <= need && i+k < len(b) && b[i+k] >= 0x80 && b[i+k] <= 0xBF; k++ {
				n = k + 1
			}
		}
		sb.WriteString("\uFFFD")
		i += n
	}
	return sb.String()
}
