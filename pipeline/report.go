package pipeline

import (
	"encoding/json"
	"fmt"
	"os"
)

// TensorReport is one pruned tensor's outcome.
type TensorReport struct {
	Name     string  `json:"name"`
	Layer    int     `json:"layer"`
	Shape    []int   `json:"shape"`
	Zeros    int     `json:"zeros"`
	Sparsity float64 `json:"sparsity"`
	// Target is the sparsity asked of this tensor, when it differs from the run's target
	// (a sparsity file, an allocation); Source says which.
	Target *float64 `json:"target_sparsity,omitempty"`
	Source string   `json:"target_source,omitempty"`
}

// AllocationReport is what an Allocator chose.
type AllocationReport struct {
	Name       string      `json:"name"`
	Summaries  [][]float64 `json:"layer_summaries"`
	Sparsities []float64   `json:"layer_sparsities"`
	// PrePassSeconds is the wall time of the dense pre-pass (this process's part when
	// resumed; 0 when a checkpointed allocation was reused), LayerSeconds each layer's share.
	PrePassSeconds float64   `json:"prepass_seconds"`
	LayerSeconds   []float64 `json:"prepass_layer_seconds,omitempty"`
}

// LayerReport is one decoder layer's timing.
type LayerReport struct {
	// ExpertTokens are the calibration tokens routed to each expert of a mixture-of-experts
	// layer in its dense pass; EmptyExperts those that got none (their statistics are zero).
	ExpertTokens []int64 `json:"expert_tokens,omitempty"`
	EmptyExperts []int   `json:"empty_experts,omitempty"`
	Layer        int     `json:"layer"`
	Seconds      float64 `json:"seconds"`
	DenseSeconds float64 `json:"dense_forward_seconds"`
	PruneSeconds float64 `json:"prune_seconds"`
	PrunedFwdSec float64 `json:"pruned_forward_seconds"`
	Sparsity     float64 `json:"sparsity"`
}

// Report is written as wanda_report.json into the output directory.
type Report struct {
	Tool           string            `json:"tool"`
	Model          string            `json:"model"`
	ModelType      string            `json:"model_type"`
	Method         string            `json:"method"`
	Pattern        string            `json:"pattern"`
	Sparsity       float64           `json:"target_sparsity"`
	Group          string            `json:"group"`
	Variant        bool              `json:"variant"`
	Calibration    *CalibInfo        `json:"calibration,omitempty"`
	Allocation     *AllocationReport `json:"allocation,omitempty"`
	Refine         string            `json:"refine,omitempty"`
	Ignored        []string          `json:"ignored,omitempty"` // linears kept dense by Options.Ignore
	GlobalSparsity float64           `json:"global_sparsity"`
	Tensors        []TensorReport    `json:"tensors"`
	Layers         []LayerReport     `json:"layers"`
	Seconds        float64           `json:"seconds"`
	PeakRSSAnon    int64             `json:"peak_rss_anon_bytes"`
	PeakRSS        int64             `json:"peak_rss_bytes"`
	ActivationsOn  string            `json:"activation_store"`
	Output         string            `json:"output"`
	Extra          map[string]any    `json:"extra,omitempty"`
}

// ReportFile is the report's file name inside the output directory.
const ReportFile = "wanda_report.json"

func newReport(opt *Options, out string, seqlen int) *Report {
	t := opt.Target
	rep := &Report{
		Tool: "wanda", Model: opt.ModelDir, ModelType: opt.Model.Config().ModelType, Method: opt.Method.Name,
		Pattern: patternName(t), Sparsity: t.Sparsity, Group: t.Group.String(),
		Variant: t.Variant, Output: out, ActivationsOn: "none",
	}
	if t.Structured() {
		rep.Sparsity = float64(t.N) / float64(t.M)
	}
	if opt.Method.Refiner != nil {
		rep.Refine = opt.Method.Refiner.Name()
	}
	if len(opt.Calib) > 0 {
		ci := opt.CalibInfo
		ci.Windows, ci.SeqLen = len(opt.Calib), seqlen
		rep.Calibration = &ci
	}
	return rep
}

func patternName(t Target) string {
	if t.Structured() {
		return fmt.Sprintf("%d:%d", t.N, t.M)
	}
	return "unstructured"
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
