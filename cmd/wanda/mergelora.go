package main

import (
	"fmt"
	"math"

	"github.com/urfave/cli/v2"

	"github.com/wanda-go/wanda/transform"
)

func init() {
	register(&cli.Command{
		Name:      "merge-lora",
		Usage:     "merge a PEFT LoRA adapter into a pruned model, keeping its sparsity pattern",
		UsageText: "wanda merge-lora --model PRUNED --adapter ADAPTER_DIR --out DIR [--scale S]",
		Description: `Computes W + S·scaling·(lora_B·lora_A) in float32 for every module of the adapter
(adapter_config.json + adapter_model.safetensors; scaling = lora_alpha/r, or lora_alpha/sqrt(r)
with use_rslora; rank_pattern and alpha_pattern honoured), then sets every pruned weight back to
+0.0 so the pruning pattern is exactly preserved, and writes the model's dtype. The mask comes
from PRUNED/sparsity_masks.safetensors when present, else from the exact zeros of W. PRUNED may
be packed; the output is dense. Mixture-of-experts adapters made with PEFT's target_parameters
on transformers 5's fused experts (mlp.experts.gate_up_proj and mlp.experts.down_proj, as the
LoRA template of a pruned MoE model names them) are split back into the checkpoint's per-expert
tensors (gate rows, up rows, down) and merged into each with its own mask; Phi-3's fused
qkv_proj and gate_up_proj merge as the single tensors they are. Adapters that do not fit the
model (unknown modules or parameters, wrong shapes, non-LoRA, fan_in_fan_out, DoRA, missing
files) are refused before anything is written.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "model", Required: true, Usage: "pruned model `DIR` (dense or packed)"},
			&cli.StringFlag{Name: "adapter", Required: true, Usage: "PEFT adapter `DIR`"},
			&cli.StringFlag{Name: "out", Required: true, Usage: "output `DIR` (must not exist unless --force)"},
			&cli.BoolFlag{Name: "force", Usage: "replace --out if it is a model directory or a previous wanda output (the old one is removed only once the new one is in place)"},
			&cli.Float64Flag{Name: "scale", Value: 1, Usage: "extra factor on every module's LoRA scaling"},
			&cli.StringFlag{Name: "max-shard-size", Value: "5GB", Usage: "largest output shard (e.g. 2GB, 500MiB); 0 = one file"},
		},
		Action: func(c *cli.Context) error {
			s := c.Float64("scale")
			if s == 0 || math.IsNaN(s) || math.IsInf(s, 0) {
				return fmt.Errorf("%w: --scale %g must be finite and nonzero", errUsage, s)
			}
			maxShard, err := parseSize(c.String("max-shard-size"))
			if err != nil {
				return fmt.Errorf("--max-shard-size: %w", err)
			}
			res, err := transform.MergeLoRA(c.String("model"), c.String("adapter"), c.String("out"),
				transform.MergeOptions{Scale: s, MaxShardBytes: maxShard, Force: c.Bool("force")})
			if err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "merged %d weights (mask from %s, %d pruned weights kept at +0.0)\nwrote %s\n",
				len(res.Merged), res.MaskSource, res.Pruned, c.String("out"))
			if res.KeptZeros > 0 {
				fmt.Fprintf(c.App.Writer, "note: %d kept weights are exactly zero after the merge\n", res.KeptZeros)
			}
			return nil
		},
	})
}
