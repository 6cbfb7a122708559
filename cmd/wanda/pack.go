package main

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/wanda-go/wanda/format/sparse"
	"github.com/wanda-go/wanda/transform"
)

func init() {
	register(&cli.Command{
		Name:      "pack",
		Usage:     "pack a pruned dense model into a compressed-tensors sparse layout (" + sparse.FormatList() + ")",
		UsageText: "wanda pack --model DIR --out DIR [--format auto|" + strings.ReplaceAll(sparse.FormatList(), ", ", "|") + "] [--max-shard-size 5GB]",
		Description: `Writes a copy of the pruned model DIR in which the prunable linears of every layer (by the
architecture table: attention, dense MLP, every expert and shared expert, Phi-3's fused qkv_proj
and gate_up_proj; never a router; only those listed in sparsity_masks.safetensors when DIR has
one) are stored in a compressed-tensors (<= 0.14.0) sparse layout: <p>.compressed, <p>.bitmask,
<p>.shape (and <p>.row_offsets for sparse-bitmask). config.json gains a quantization_config with
the sparsity_config; every other file is copied. --format auto picks the first layout of
` + sparse.FormatList() + ` that can store every packed linear (sparse-24-bitmask needs 2:4).
A linear the chosen layout cannot store, or that holds -0.0, is refused by name, with the words
"wanda inspect" uses for it. "wanda unpack" restores the dense model bit for bit.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "model", Required: true, Usage: "pruned dense model `DIR`"},
			&cli.StringFlag{Name: "out", Required: true, Usage: "output `DIR` (must not exist unless --force)"},
			&cli.BoolFlag{Name: "force", Usage: "replace --out if it is a model directory or a previous wanda output (the old one is removed only once the new one is in place)"},
			&cli.StringFlag{Name: "format", Value: "auto", Usage: "auto or one of " + sparse.FormatList()},
			&cli.StringFlag{Name: "max-shard-size", Value: "5GB", Usage: "largest output shard (e.g. 2GB, 500MiB); 0 = one file"},
			&cli.BoolFlag{Name: "json", Usage: "print the result as JSON"},
		},
		Action: func(c *cli.Context) error {
			f, err := transform.ParseFormat(c.String("format"))
			if err != nil {
				return fmt.Errorf("%w: --format %q (want auto, %s)", errUsage, c.String("format"), sparse.FormatList())
			}
			maxShard, err := parseSize(c.String("max-shard-size"))
			if err != nil {
				return fmt.Errorf("--max-shard-size: %w", err)
			}
			res, err := transform.Pack(c.String("model"), c.String("out"), transform.Options{Format: f, MaxShardBytes: maxShard, Force: c.Bool("force")})
			if err != nil {
				return err
			}
			ratio := 0.0
			if res.DenseBytes > 0 {
				ratio = float64(res.PackedBytes) / float64(res.DenseBytes)
			}
			if c.Bool("json") {
				enc := json.NewEncoder(c.App.Writer)
				enc.SetIndent("", "  ")
				return enc.Encode(map[string]any{
					"out": c.String("out"), "format": res.Format, "sparsity_structure": res.Structure,
					"packed_tensors": len(res.Packed), "dense_bytes": res.DenseBytes, "packed_bytes": res.PackedBytes,
					"packed_ratio": ratio, "global_sparsity": res.GlobalSparsity, "linear_sparsity": res.LinearSparsity,
				})
			}
			fmt.Fprintf(c.App.Writer, "packed %d linears as %s (%s): %d -> %d bytes (%.1f%%); sparsity %.4f of the packed linears' weights, %.4f of all float weights\nwrote %s\n",
				len(res.Packed), res.Format, res.Structure, res.DenseBytes, res.PackedBytes, 100*ratio, res.LinearSparsity, res.GlobalSparsity, c.String("out"))
			return nil
		},
	})
}
