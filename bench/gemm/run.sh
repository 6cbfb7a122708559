#!/bin/sh
# Compare tensor.Sgemm with OpenBLAS sgemm on wanda's GEMM shapes.
# Installs libopenblas-dev if it is missing (needs root and apt), then runs
# the interleaved benchmark. Extra arguments go to the program, e.g.
#   bench/gemm/run.sh -threads 2 -reps 5 -big=false
set -eu
cd "$(dirname "$0")/../.."
if ! [ -e /usr/include/x86_64-linux-gnu/cblas.h ] && ! [ -e /usr/include/cblas.h ] && \
   ! ldconfig -p 2>/dev/null | grep -q libopenblas.so; then
	echo "installing libopenblas-dev" >&2
	apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y libopenblas-dev
fi
CGO_ENABLED=1 go run -tags openblas ./bench/gemm "$@"
