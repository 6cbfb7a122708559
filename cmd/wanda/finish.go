package main

import (
	"github.com/urfave/cli/v2"

	"github.com/wanda-go/wanda/format/config"
	"github.com/wanda-go/wanda/pipeline"
)

// finishOutput adds the extras of a pruned output directory before it is moved into place.
func finishOutput(c *cli.Context, cfg *config.Config, dir string, rep *pipeline.Report) error {
	return nil
}
