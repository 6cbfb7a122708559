package tokenizer

import (
	"encoding/json"
	"fmt"
)

// postProcessor is reduced to what a single sequence needs: the ids added
// before and after it when addSpecial is true.
type postProcessor struct {
	prefix, suffix []int32
}

func parsePostProcessor(raw json.RawMessage, where string) (postProcessor, error) {
	var pp postProcessor
	if isNull(raw) {
		return pp, nil
	}
	var t typed
	if err := json.Unmarshal(raw, &t); err != nil {
		return pp, fmt.Errorf("%s: %w: %w", where, err, ErrMalformed)
	}
	bad := func(e error) (postProcessor, error) {
		return pp, fmt.Errorf("%s: %w: %w", where, e, ErrMalformed)
	}
	switch t.Type {
	case "Sequence":
		var v struct {
			Processors []json.RawMessage `json:"processors"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return bad(err)
		}
		for i, r := range v.Processors {
			p, err := parsePostProcessor(r, fmt.Sprintf("%s.processors[%d]", where, i))
			if err != nil {
				return pp, err
			}
			// Each processor wraps the output of the previous one.
			pp.prefix = append(append([]int32(nil), p.prefix...), pp.prefix...)
			pp.suffix = append(pp.suffix, p.suffix...)
		}
		return pp, nil
	case "ByteLevel":
		return pp, nil // only trims offsets
	case "TemplateProcessing":
		var v struct {
			Single []struct {
				SpecialToken *struct {
					ID string `json:"id"`
				} `json:"SpecialToken"`
				Sequence *struct {
					ID string `json:"id"`
				} `json:"Sequence"`
			} `json:"single"`
			SpecialTokens map[string]struct {
				ID  string  `json:"id"`
				IDs []int64 `json:"ids"`
			} `json:"special_tokens"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return bad(err)
		}
		seen := false
		for i, item := range v.Single {
			switch {
			case item.Sequence != nil:
				if item.Sequence.ID != "A" {
					return pp, fmt.Errorf("%s: single[%d]: sequence %q in a single template: %w", where, i, item.Sequence.ID, ErrMalformed)
				}
				if seen {
					return pp, fmt.Errorf("%s: single[%d]: $A twice: %w", where, i, ErrUnsupported)
				}
				seen = true
			case item.SpecialToken != nil:
				st, ok := v.SpecialTokens[item.SpecialToken.ID]
				if !ok {
					return pp, fmt.Errorf("%s: single[%d]: special token %q not in special_tokens: %w", where, i, item.SpecialToken.ID, ErrUnknownToken)
				}
				for _, id := range st.IDs {
					if id < 0 || id > maxID {
						return pp, fmt.Errorf("%s: special token %q: id %d out of range: %w", where, item.SpecialToken.ID, id, ErrMalformed)
					}
					if seen {
						pp.suffix = append(pp.suffix, int32(id))
					} else {
						pp.prefix = append(pp.prefix, int32(id))
					}
				}
			default:
				return pp, fmt.Errorf("%s: single[%d]: neither SpecialToken nor Sequence: %w", where, i, ErrMalformed)
			}
		}
		if !seen {
			return pp, fmt.Errorf("%s: single template has no $A: %w", where, ErrMalformed)
		}
		return pp, nil
	case "BertProcessing", "RobertaProcessing":
		var v struct {
			Sep []any `json:"sep"`
			Cls []any `json:"cls"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return bad(err)
		}
		cls, err := tokenPair(v.Cls)
		if err != nil {
			return pp, fmt.Errorf("%s: cls: %w", where, err)
		}
		sep, err := tokenPair(v.Sep)
		if err != nil {
			return pp, fmt.Errorf("%s: sep: %w", where, err)
		}
		pp.prefix = []int32{cls}
		pp.suffix = []int32{sep}
		return pp, nil
	case "":
		return pp, fmt.Errorf("%s: missing \"type\": %w", where, ErrMalformed)
	default:
		return pp, fmt.Errorf("%s: post-processor type %q: %w", where, t.Type, ErrUnsupported)
	}
}

// tokenPair decodes ["[CLS]", 101].
func tokenPair(v []any) (int32, error) {
	if len(v) != 2 {
		return 0, fmt.Errorf("want [token, id]: %w", ErrMalformed)
	}
	f, ok := v[1].(float64)
	if !ok || f < 0 || f > maxID || f != float64(int32(f)) {
		return 0, fmt.Errorf("want [token, id]: %w", ErrMalformed)
	}
	return int32(f), nil
}
