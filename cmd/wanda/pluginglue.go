package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/wanda-go/wanda/pipeline"
)

func openMetricPlugin(c *cli.Context, spec string) (pipeline.Metric, func(), error) {
	return nil, nil, fmt.Errorf("%w: plugin %s: plugins are not wired yet", errUsage, spec)
}

func openPatternPlugin(c *cli.Context, spec string) (pipeline.Pattern, func(), error) {
	return nil, nil, fmt.Errorf("%w: plugin %s: plugins are not wired yet", errUsage, spec)
}
