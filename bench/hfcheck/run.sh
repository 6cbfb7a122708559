#!/bin/sh
# bench/hfcheck/run.sh [WORKDIR] — check wanda's outputs with transformers, PEFT
# and PyTorch (check.py says what is checked) on ../shared's tiny-llama-a.
# Needs go, and python3 with torch, transformers (5.x), peft, safetensors and
# numpy; uses CUDA when present (the 2:4 semi-structured check needs it).
# CI has no PyTorch and does not run this; README.md quotes its last result.
set -eu
cd "$(dirname "$0")/../.."
mkdir -p bench/.bin
go build -o bench/.bin/wanda-hfcheck ./cmd/wanda
exec python3 bench/hfcheck/check.py --wanda bench/.bin/wanda-hfcheck \
	--model ../shared/models/tiny-llama-a \
	--reference ../shared/reference/tiny-llama-a/reference.safetensors \
	--results ../shared/reference/tiny-llama-a/results.json \
	--work "${1:-${TMPDIR:-/tmp}/wanda-hfcheck}"
