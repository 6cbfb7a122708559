package main

import (
	"encoding/json"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/wanda-go/wanda/format/sparse"
	"github.com/wanda-go/wanda/transform"
)

func init() {
	register(&cli.Command{
		Name:      "pack",
		Usage:     "pack a pruned dense model into compressed-tensors sparse-24-bitmask / sparse-bitmask",
		UsageText: "wanda pack --model DIR --out DIR [--format auto|sparse-24-bitmask|sparse-bitmask] [--max-shard-size 5GB]",
		Description: `Writes a copy of the pruned model DIR in which the seven linears of every layer (only those
listed in sparsity_masks.safetensors when DIR has one) are stored in a compressed-tensors
(<= 0.14.0) sparse layout: <p>.compressed, <p>.bitmask, <p>.shape (and <p>.row_offsets for
sparse-bitmask). config.json gains a quantization_config with the sparsity_config; every other
file is copied. --format auto picks sparse-24-bitmask when every packed linear is 2:4, else
sparse-bitmask. A linear that is not 2:4 under --format sparse-24-bitmask, or that holds -0.0,
is refused by name. "wanda unpack" restores the dense model bit for bit.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "model", Required: true, Usage: "pruned dense model `DIR`"},
			&cli.StringFlag{Name: "out", Required: true, Usage: "output `DIR` (must not exist unless --force)"},
			&cli.BoolFlag{Name: "force", Usage: "replace --out if it is a model directory or a previous wanda output (the old one is removed only once the new one is in place)"},
			&cli.StringFlag{Name: "format", Value: "auto", Usage: "auto, sparse-24-bitmask or sparse-bitmask"},
			&cli.StringFlag{Name: "max-shard-size", Value: "5GB", Usage: "largest output shard (e.g. 2GB, 500MiB); 0 = one file"},
			&cli.BoolFlag{Name: "json", Usage: "print the result as JSON"},
		},
		Action: func(c *cli.Context) error {
			f := sparse.Format(c.String("format"))
			switch f {
			case transform.FormatAuto, sparse.Format24, sparse.FormatBitmask:
			default:
				return fmt.Errorf("%w: --format %q (want auto, %s or %s)", errUsage, f, sparse.Format24, sparse.FormatBitmask)
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
					"packed_ratio": ratio, "global_sparsity": res.GlobalSparsity,
				})
			}
			fmt.Fprintf(c.App.Writer, "packed %d tensors as %s (%s): %d -> %d bytes (%.1f%%), global sparsity %.4f\nwrote %s\n",
				len(res.Packed), res.Format, res.Structure, res.DenseBytes, res.PackedBytes, 100*ratio, res.GlobalSparsity, c.String("out"))
			return nil
		},
	})
}
