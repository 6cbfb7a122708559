#!/bin/sh
# Compare MatMulT on float32 weights with MatMulTMat on the same weights
# stored as float32, bfloat16 and float16 (tensor.BenchmarkMatMulTMat),
# repeated in rounds that rotate the order of the variants, and print per
# shape and variant the best and median GFLOP/s (wall) and the median
# GFLOP per CPU-second, with ratios to fp32-MatMulT.
#
#   bench/gemm/mat.sh [rounds [benchtime [bench regexp]]]
#
# e.g. bench/gemm/mat.sh 3 300x 'MatMulTMat$/small'
#
# Defaults: 3 rounds, -benchtime=1x (one call per variant and round; the
# large shapes take seconds per call), all shapes (about 1 GB of memory).
# TENSOR_TEST=path uses a test binary built before (go test -c ./tensor)
# instead of building one. GOMAXPROCS sets the threads as usual.
set -eu
cd "$(dirname "$0")/../.."
rounds=${1:-3}
benchtime=${2:-1x}
pattern=${3:-'MatMulTMat$'}
out=$(mktemp)
if [ -n "${TENSOR_TEST:-}" ]; then
	bin=$TENSOR_TEST
	trap 'rm -f "$out"' EXIT
else
	bin=$(mktemp)
	trap 'rm -f "$bin" "$out"' EXIT
	go test -c -o "$bin" ./tensor
fi
grep -o -w 'avx2\|fma\|f16c\|avx512f\|avx512_bf16' /proc/cpuinfo 2>/dev/null | sort -u | tr '\n' ' ' | sed 's/^/cpu flags: /;s/$/\n/' || true
echo "rounds=$rounds benchtime=$benchtime cpus=$(nproc) GOMAXPROCS=${GOMAXPROCS:-default} load: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)"
r=0
while [ "$r" -lt "$rounds" ]; do
	"$bin" -test.run '^$' -test.bench "$pattern" -test.benchtime "$benchtime" -matbench.rotate "$r" >>"$out"
	r=$((r + 1))
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)"
awk '
/^BenchmarkMatMulTMat\/.* GFLOP\/s/ {
	name = $1; sub(/^BenchmarkMatMulTMat\//, "", name); sub(/-[0-9]+$/, "", name)
	v = name; sub(/.*\//, "", v); s = name; sub(/\/[^\/]*$/, "", s)
	for (i = 2; i < NF; i++) {
		if ($(i+1) == "GFLOP/s") w = $i
		if ($(i+1) == "GFLOP/cpu-s") c = $i
	}
	k = s SUBSEP v
	nw[k]++; W[k, nw[k]] = w; C[k, nw[k]] = c
	if (!(s in seen)) { seen[s] = 1; order[++ns] = s }
	if (!(v in vseen)) { vseen[v] = 1; vorder[++nv] = v }
}
function sortv(A, k, n,   i, j, t) {
	for (i = 1; i <= n; i++) tmp[i] = A[k, i] + 0
	for (i = 2; i <= n; i++) { t = tmp[i]; for (j = i - 1; j >= 1 && tmp[j] > t; j--) tmp[j+1] = tmp[j]; tmp[j+1] = t }
}
function best(A, k, n) { sortv(A, k, n); return tmp[n] }
function med(A, k, n) { sortv(A, k, n); return n % 2 ? tmp[(n+1)/2] : (tmp[n/2] + tmp[n/2+1]) / 2 }
END {
	printf "%-38s %-13s %4s %9s %9s %9s %11s %11s\n", "shape", "variant", "n", "best", "median", "cpu-s med", "ratio best", "ratio cpu-s"
	for (a = 1; a <= ns; a++) {
		s = order[a]; ref = s SUBSEP "fp32-MatMulT"
		rb = best(W, ref, nw[ref]); rc = med(C, ref, nw[ref])
		for (b = 1; b <= nv; b++) {
			k = s SUBSEP vorder[b]
			if (!(k in nw)) continue
			bw = best(W, k, nw[k]); mw = med(W, k, nw[k]); mc = med(C, k, nw[k])
			printf "%-38s %-13s %4d %9.1f %9.1f %9.1f %11.3f %11.3f\n", s, vorder[b], nw[k], bw, mw, mc, bw / rb, mc / rc
		}
	}
}' "$out"
