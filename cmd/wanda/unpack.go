package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/wanda-go/wanda/transform"
)

func init() {
	register(&cli.Command{
		Name:      "unpack",
		Usage:     "restore the dense model from a packed (compressed-tensors sparse) model directory",
		UsageText: "wanda unpack --model PACKED --out DIR [--max-shard-size 5GB]",
		Description: `Writes a plain dense Hugging Face directory: every packed weight is restored under its
dense name with exactly the bytes it had before "wanda pack", other tensors and files are
copied, and config.json loses its quantization_config.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "model", Required: true, Usage: "packed model `DIR`"},
			&cli.StringFlag{Name: "out", Required: true, Usage: "output `DIR` (must not exist unless --force)"},
			&cli.BoolFlag{Name: "force", Usage: "replace --out if it is a model directory or a previous wanda output (the old one is removed only once the new one is in place)"},
			&cli.StringFlag{Name: "max-shard-size", Value: "5GB", Usage: "largest output shard (e.g. 2GB, 500MiB); 0 = one file"},
		},
		Action: func(c *cli.Context) error {
			maxShard, err := parseSize(c.String("max-shard-size"))
			if err != nil {
				return fmt.Errorf("--max-shard-size: %w", err)
			}
			if err := transform.Unpack(c.String("model"), c.String("out"), transform.Options{MaxShardBytes: maxShard, Force: c.Bool("force")}); err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "wrote %s\n", c.String("out"))
			return nil
		},
	})
}
