package sdk

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"
)

func TestArgFloat(t *testing.T) {
	args := map[string]string{"a": "0.25", "bad": "x"}
	if v, err := ArgFloat(args, "a", 1); v != 0.25 || err != nil {
		t.Errorf("a: %v, %v", v, err)
	}
	if v, err := ArgFloat(args, "missing", 1); v != 1 || err != nil {
		t.Errorf("missing: %v, %v", v, err)
	}
	if _, err := ArgFloat(args, "bad", 1); err == nil {
		t.Error("bad: no error")
	}
	if v, err := (LayerInfo{Args: args}).Float("a", 0); v != 0.25 || err != nil {
		t.Errorf("LayerInfo.Float: %v, %v", v, err)
	}
}

func TestNewTensorAndMask(t *testing.T) {
	shape := []int{3, 5}
	x := NewTensor(shape...)
	shape[0] = 9 // the tensor keeps its own copy of the shape
	if len(x.Data) != 15 || x.Shape[0] != 3 || x.Shape[1] != 5 {
		t.Errorf("tensor %v with %d values", x.Shape, len(x.Data))
	}
	if m := NewMask(2, 4); len(m.Pruned) != 8 {
		t.Errorf("mask with %d values", len(m.Pruned))
	}
}

// The records of Logger use hclog's JSON keys, which the host parses for level and message.
func TestLoggerFormat(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(slog.NewJSONHandler(&buf, loggerOptions))
	l.Warn("careful", "layer", 3)
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatal(err)
	}
	if rec["@level"] != "warn" || rec["@message"] != "careful" || rec["layer"] != float64(3) {
		t.Errorf("record %v", rec)
	}
	if ts, ok := rec["@timestamp"].(string); !ok || len(ts) != len("2006-01-02T15:04:05.000000Z") && len(ts) != len("2006-01-02T15:04:05.000000+00:00") {
		t.Errorf("timestamp %v", rec["@timestamp"])
	}
}
