package pattern

import "github.com/wanda-go/wanda/pipeline"

func init() {
	pipeline.RegisterPattern(pipeline.PatternEntry{
		Name: "unstructured", Help: "the lowest-scored fraction of each comparison group",
		For: func(t pipeline.Target) bool { return !t.Structured() },
		New: func() pipeline.Pattern { return Unstructured{} },
	})
	pipeline.RegisterPattern(pipeline.PatternEntry{
		Name: "nm", Help: "N of every M consecutive input columns of each row (2:4, 4:8)",
		For: func(t pipeline.Target) bool { return t.Structured() },
		New: func() pipeline.Pattern { return NM{} },
	})
}
