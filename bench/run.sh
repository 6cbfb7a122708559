#!/usr/bin/env bash
# bench/run.sh — regenerate BENCHMARKS.md on the current machine.
#
#   bench/run.sh [--large] [--huge] [--old BINARY] [--reps N] [--eval-windows K] [--no-gemm] [--no-cgroup]
#                [--no-resume] [--only gemm,eval,prune,large] [--large-gen-args 'FLAGS']
#                [--out FILE] [--work DIR] [--keep]
#
#   --huge             add the "Huge layers" section (bench/huge.sh: 405B-, 70B- and
#                      Mixtral-8x22B-shaped two-layer models and the 7B preset; peak RssAnon;
#                      about 45 GB free in --work and 1.5 hours)
#   --old BINARY       with --huge: a previous build, timed against this one (tiny-llama-a
#                      prune wall time, 7B forward GFLOP/s)
#   --reps N           timed runs per measurement (default 3)
#   --eval-windows K   windows of 512 tokens per eval run (default 64; 0 = all)
#   --only LIST        run only these sections (large implies --large)
#   --large-gen-args   extra gentiny flags for the large model, e.g. '-layers 4'
#   --no-cgroup        skip the 4 GiB memory-cgroup rerun of the large prune
#   --no-resume        skip the kill -9 / --resume rerun of the large prune
#   --keep             keep the generated 7B-shaped model in --work
#
# Measures, in one run, with the command line, machine, Go version and date:
#   - GEMM GFLOP/s of tensor.Sgemm and its ratio to OpenBLAS sgemm
#     (bench/gemm/run.sh, which apt-installs libopenblas-dev if needed);
#   - `wanda eval` tokens/s on ../shared/models/tiny-llama-a with the
#     WikiText-2 test tokens of ../shared/reference/tiny-llama-a;
#   - `wanda prune` wall time and peak RSS on tiny-llama-a (wanda, magnitude,
#     sparsegpt; 128×512 calibration windows of the reference), compared with
#     the reference implementation's prune_seconds in results.json;
#   - with --large: a 7B-shaped model (internal/modelgen preset llama-7b, 13.5 GB,
#     written to --work and deleted afterwards unless --keep) pruned with
#     --nsamples 8 --seqlen 256 on C4 text: wall time, peak RssAnon, GFLOP/s of
#     the forward passes, whether it completes in a 4 GiB memory cgroup, and
#     whether a run killed with SIGKILL halfway and continued with --resume
#     writes byte-identical output (needs about 55 GB free in --work).
#
# The binary is built once into bench/.bin/ (git-ignored). Timings use
# hyperfine when it is installed, otherwise a plain repeat loop; peak RSS
# comes from /usr/bin/time -v and from wanda's own --json report.
# Needs: go, jq, awk, /usr/bin/time. Every figure depends on the load of the
# machine: the load average at start and end is recorded in the file.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
SHARED=$(cd "$ROOT/.." && pwd)/shared

LARGE=0 HUGE=0 OLD="" REPS=3 EVAL_WINDOWS=64 GEMM=1 CGROUP=1 RESUME=1 KEEP=0 ONLY="" LARGE_GEN_ARGS=""
OUT=$ROOT/BENCHMARKS.md
WORK=${TMPDIR:-/tmp}/wanda-bench
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
	case $1 in
	--large) LARGE=1 ;;
	--huge) HUGE=1 ;;
	--old) OLD=$2; shift ;;
	--reps) REPS=$2; shift ;;
	--eval-windows) EVAL_WINDOWS=$2; shift ;;
	--no-gemm) GEMM=0 ;;
	--no-cgroup) CGROUP=0 ;;
	--no-resume) RESUME=0 ;;
	--out) OUT=$2; shift ;;
	--work) WORK=$2; shift ;;
	--keep) KEEP=1 ;;
	--only) ONLY=$2; shift ;;
	--large-gen-args) LARGE_GEN_ARGS=$2; shift ;;
	-h|--help) usage 0 ;;
	*) echo "bench/run.sh: unknown argument $1" >&2; usage 2 ;;
	esac
	shift
done
want() { [ -z "$ONLY" ] || case ",$ONLY," in *",$1,"*) true ;; *) false ;; esac; }
want large && [ -n "$ONLY" ] && LARGE=1
for tool in go jq awk /usr/bin/time; do
	command -v "$tool" >/dev/null || { echo "bench/run.sh: $tool is required" >&2; exit 1; }
done
[ -d "$SHARED/models/tiny-llama-a" ] || { echo "bench/run.sh: $SHARED/models/tiny-llama-a not found" >&2; exit 1; }

BIN=$ROOT/bench/.bin/wanda
MODEL=$SHARED/models/tiny-llama-a
REFST=$SHARED/reference/tiny-llama-a/reference.safetensors
RESULTS=$SHARED/reference/tiny-llama-a/results.json
C4=$SHARED/data/c4/c4_train00000_head1000.jsonl
mkdir -p "$WORK"
TMP=$(mktemp -d "$WORK/run.XXXXXX")
# Keep the measurements when the script fails part-way (a 7B run takes long).
trap 'rc=$?; if [ "$rc" = 0 ]; then rm -rf "$TMP"; else echo "bench/run.sh: failed (exit $rc); measurements so far kept in $TMP" >&2; fi' EXIT
log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }

# ---------------------------------------------------------------- helpers
now() { date +%s.%N; }
# sub A B: A-B with 2 decimals
sub() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f\n", a-b}'; }
div() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b == 0) print "n/a"; else printf "%.2f", a/b }'; }
mib() { awk -v b="$1" 'BEGIN{ if (b == "" || b == "null") print "n/a"; else printf "%.0f MiB", b/1048576 }'; }
kib_to_mib() { awk -v k="$1" 'BEGIN{ if (k == "") print "n/a"; else printf "%.0f MiB", k/1024 }'; }
# stats FILE: "best median" of the numbers in FILE (one per line); "max" picks the largest as best
stats() {
	sort -g "$1" | awk -v mode="${2:-min}" '{v[NR]=$1} END{
		if (NR == 0) { print "n/a n/a"; exit }
		best = (mode == "max") ? v[NR] : v[1]
		med = (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2
		printf "%.2f %.2f\n", best, med }'
}
# quote a command line for Markdown
cmdline() {
	local out="" a
	for a in "$@"; do
		a=${a//$ROOT\//}
		a=${a//$SHARED/../shared}
		a=${a//$WORK/\$WORK}
		case $a in *[[:space:]]*) a="'$a'" ;; esac
		out+="${out:+ }$a"
	done
	printf '%s' "$out"
}
# measure NAME CMD...: run CMD once under /usr/bin/time -v; writes
# $TMP/NAME.out (stdout), .err, .wall (seconds), .cpu (user+sys seconds),
# .maxrss (KiB), .rc
measure() {
	local name=$1; shift
	local t0 t1 rc=0
	t0=$(now)
	/usr/bin/time -v -o "$TMP/$name.time" "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" || rc=$?
	t1=$(now)
	sub "$t1" "$t0" >"$TMP/$name.wall"
	awk -F': ' '/Maximum resident set size/{print $2}' "$TMP/$name.time" >"$TMP/$name.maxrss"
	awk -F': ' '/User time \(seconds\)|System time \(seconds\)/{c += $2} END{printf "%.2f\n", c}' "$TMP/$name.time" >"$TMP/$name.cpu"
	echo "$rc" >"$TMP/$name.rc"
	return "$rc"
}
# repeat_runs NAME N CMD...: N timed runs of CMD; their wall times go to
# $TMP/NAME.walls and CPU times to NAME.cpus. One run is under measure (its
# output is NAME.out, with NAME.maxrss and NAME.cpu); with hyperfine the other
# N-1 are timed by hyperfine, otherwise all N are measured (NAME, NAME.2, ...).
# Sets TIMER.
repeat_runs() {
	local name=$1 n=$2 i; shift 2
	: >"$TMP/$name.walls"
	: >"$TMP/$name.cpus"
	if command -v hyperfine >/dev/null && [ "$n" -gt 1 ]; then
		TIMER="hyperfine ($((n - 1)) runs) + 1 run under /usr/bin/time -v"
		measure "$name" "$@" || return 1
		cat "$TMP/$name.wall" >>"$TMP/$name.walls"
		cat "$TMP/$name.cpu" >>"$TMP/$name.cpus"
		if ! hyperfine --runs "$((n - 1))" --warmup 0 --style none --export-json "$TMP/$name.hf.json" \
			"$(printf '%q ' "$@")" >/dev/null 2>"$TMP/$name.err"; then
			echo 1 >"$TMP/$name.rc"
			return 1
		fi
		jq -r '.results[0].times[]' "$TMP/$name.hf.json" >>"$TMP/$name.walls"
	else
		TIMER="a loop of $n runs under /usr/bin/time -v"
		for ((i = 1; i <= n; i++)); do
			local run=$name
			[ "$i" -gt 1 ] && run=$name.$i
			if ! measure "$run" "$@"; then
				if [ "$run" != "$name" ]; then cp "$TMP/$run.err" "$TMP/$name.err"; cp "$TMP/$run.rc" "$TMP/$name.rc"; fi
				return 1
			fi
			cat "$TMP/$run.wall" >>"$TMP/$name.walls"
			cat "$TMP/$run.cpu" >>"$TMP/$name.cpus"
		done
	fi
}
failed() { # failed NAME: the tail of the error output, for the report
	printf 'FAILED (exit %s):\n\n```\n%s\n```\n' "$(cat "$TMP/$1.rc" 2>/dev/null || echo ?)" \
		"$(tail -n 15 "$TMP/$1.err" 2>/dev/null)"
}
load() { cut -d' ' -f1-3 /proc/loadavg; }

# ---------------------------------------------------------------- machine
CPU=$(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)
CPU+=$(awk -F'\t*: ' '$1 == "cpu family" {f=$2} $1 == "model" {m=$2} $1 == "stepping" {s=$2; exit}
	END{ if (f != "") printf " (family %s, model %s, stepping %s)", f, m, s }' /proc/cpuinfo)
if command -v lscpu >/dev/null; then
	hv=$(lscpu | awk -F': *' '/^Hypervisor vendor/{print $2}')
	[ -n "$hv" ] && CPU+=", $hv guest"
fi
NCPU=$(nproc)
FLAGS=$(awk -F': ' '/^flags/{print $2; exit}' /proc/cpuinfo)
SIMD=$(for f in avx2 fma avx512f avx512bw avx512vl avx512_bf16; do case " $FLAGS " in *" $f "*) printf '%s ' "$f" ;; esac; done)
MEM=$(awk '/^MemTotal/{printf "%.1f GiB", $2/1048576}' /proc/meminfo)
GOV=$(go version | sed 's/^go version //')
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain 2>/dev/null | head -1)" ]; then COMMIT="$COMMIT + uncommitted changes"; fi
DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
LOAD_START=$(load)
THREADS=$NCPU
log "machine: $CPU, $NCPU CPUs, $MEM, $GOV; load $LOAD_START"

log "building $BIN"
mkdir -p "$ROOT/bench/.bin"
go build -o "$BIN" ./cmd/wanda

REPORT=$TMP/report.md
section() { printf '\n## %s\n\n' "$1" >>"$REPORT"; }
: >"$REPORT"

# ---------------------------------------------------------------- GEMM
want gemm && section "GEMM: tensor.Sgemm vs OpenBLAS sgemm"
if ! want gemm; then
	:
elif [ "$GEMM" = 0 ]; then
	echo "Skipped (--no-gemm)." >>"$REPORT"
elif [ ! -x "$ROOT/bench/gemm/run.sh" ] && [ ! -f "$ROOT/bench/gemm/run.sh" ]; then
	echo "Skipped: bench/gemm/run.sh does not exist yet." >>"$REPORT"
else
	big=false; [ "$LARGE" = 1 ] && big=true
	GEMM_CMD=(sh bench/gemm/run.sh -threads "$THREADS" -reps 5 -big="$big")
	log "GEMM: $(cmdline "${GEMM_CMD[@]}")"
	{
		printf 'Command: `%s` (both libraries with %s threads, timed interleaved in the same run; GFLOP/s = 2mnk/s, best of 5 samples, each sample repeating the call for about 100 ms after a wait for an idle machine, as the forward pass issues its calls back to back; the "one call after 300 ms idle" lines time single calls from idle instead, waking the threads included).\n\n' \
			"$(cmdline "${GEMM_CMD[@]}")" "$THREADS"
		if measure gemm "${GEMM_CMD[@]}"; then
			printf '```\n%s\n```\n' "$(cat "$TMP/gemm.out")"
			# Geometric mean of the ratio column, when the table has one.
			gm=$(awk 'NF >= 8 && $(NF-1) ~ /^[0-9.]+$/ && $(NF-2) ~ /^[0-9.]+$/ {s += log($(NF-1)); n++} END{ if (n) printf "%.2f over %d shapes", exp(s/n), n }' "$TMP/gemm.out")
			if [ -n "$gm" ]; then printf '\nGeometric mean of ours/OpenBLAS: %s.\n' "$gm"; fi
		else
			failed gemm
		fi
	} >>"$REPORT"
fi

# ---------------------------------------------------------------- eval
if want eval; then
section "Perplexity evaluation throughput (tiny-llama-a, WikiText-2 test)"
EVAL_CMD=("$BIN" eval --model "$MODEL" --tokens "$REFST" --tokens-key wikitext_test_ids --seqlen 512
	--max-windows "$EVAL_WINDOWS" --json)
log "eval: $(cmdline "${EVAL_CMD[@]}") x $REPS"
{
	printf 'Command: `%s`, %s runs (`--max-windows 0` evaluates all windows).\n\n' "$(cmdline "${EVAL_CMD[@]}")" "$REPS"
	: >"$TMP/eval.tps"
	: >"$TMP/eval.cpus"
	ok=1
	for ((i = 0; i < REPS; i++)); do
		if measure eval "${EVAL_CMD[@]}"; then
			jq -r '.tokens_per_second' "$TMP/eval.out" >>"$TMP/eval.tps"
			# tokens per CPU second of the whole process (contention-independent-ish)
			div "$(jq -r .tokens "$TMP/eval.out")" "$(cat "$TMP/eval.cpu")" >>"$TMP/eval.cpus"
		else
			ok=0
			break
		fi
	done
	if [ "$ok" = 1 ]; then
		read -r best med < <(stats "$TMP/eval.tps" max)
		read -r cbest _ < <(stats "$TMP/eval.cpus" max)
		printf '| tokens/s (best) | tokens/s (median) | tokens per CPU-second (best) | windows × seqlen | tokens | ppl | max RSS |\n|---:|---:|---:|---:|---:|---:|---:|\n'
		printf '| %s | %s | %s | %s × %s | %s | %s | %s |\n' "$best" "$med" "$cbest" \
			"$(jq -r .windows "$TMP/eval.out")" "$(jq -r .seqlen "$TMP/eval.out")" "$(jq -r .tokens "$TMP/eval.out")" \
			"$(jq -r '.ppl | . * 1000 | round / 1000' "$TMP/eval.out")" "$(kib_to_mib "$(cat "$TMP/eval.maxrss")")"
		printf '\ntokens/s is `tokens_per_second` of the `--json` output (tokens scored / seconds of the evaluation); tokens per CPU-second divides the tokens by the user + system time of the whole process (model load included), which depends less on other load on the machine.\n'
	else
		failed eval
	fi
} >>"$REPORT"

fi

# ---------------------------------------------------------------- prune (tiny)
if want prune; then
section "Pruning tiny-llama-a: 50% unstructured, 128 × 512 calibration tokens"
ref_seconds() { jq -r --arg m "$1" '[.runs[] | select(.method == $m and .pattern == "unstructured" and .prune_seconds != null)][0].prune_seconds // empty' "$RESULTS"; }
PRUNE_BASE=("$BIN" prune --model "$MODEL" --calib-tokens "$REFST" --calib-key calib_input_ids
	--nsamples 128 --seqlen 512 --sparsity 0.5 --force --json)
PRUNE_ROWS=$TMP/prune.rows
PRUNE_FAIL=""
: >"$PRUNE_ROWS"
for m in wanda magnitude sparsegpt; do
	cmd=("${PRUNE_BASE[@]}" --method "$m" --out "$TMP/pruned-$m")
	log "prune $m: $(cmdline "${cmd[@]}") x $REPS"
	ref=$(ref_seconds "$m")
	if ! repeat_runs "prune-$m" "$REPS" "${cmd[@]}"; then
		printf '| %s | FAILED | | | | | | | %s | |\n' "$m" "${ref:-n/a}" >>"$PRUNE_ROWS"
		PRUNE_FAIL+=$(printf '\n%s: ' "$m"; failed "prune-$m")
		continue
	fi
	read -r best med < <(stats "$TMP/prune-$m.walls")
	read -r cbest _ < <(stats "$TMP/prune-$m.cpus")
	j=$TMP/prune-$m.out
	printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$m" "$best" "$med" "$cbest" \
		"$(jq -r '.seconds * 100 | round / 100' "$j")" "$(mib "$(jq -r .peak_rss_anon_bytes "$j")")" \
		"$(kib_to_mib "$(cat "$TMP/prune-$m.maxrss")")" "$(jq -r '.global_sparsity * 10000 | round / 10000' "$j")" \
		"${ref:-n/a}" "$( [ -n "$ref" ] && printf '%s×' "$(div "$ref" "$best")" || echo n/a)" >>"$PRUNE_ROWS"
	rm -rf "$TMP/pruned-$m"
done
{
	printf 'Command: `%s --method METHOD --out DIR`, timed with %s. Wall time is the whole process (load, calibration, pruning, writing the model); CPU s is user + system time of the best run (it shows how much of the wall time the process actually ran on a shared machine).\n' \
		"$(cmdline "${PRUNE_BASE[@]}")" "${TIMER:-a repeat loop}"
	printf 'Reference: `prune_seconds` of locuslab/wanda (PyTorch CPU, 2 threads, model load + calibration + pruning, idle machine) in `../shared/reference/tiny-llama-a/results.json`.\n\n'
	printf '| method | wall s (best) | wall s (median) | CPU s (best) | report `seconds` | peak RssAnon (report) | max RSS (time -v) | sparsity | reference s | speed-up (ref / best wall) |\n'
	printf '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n'
	cat "$PRUNE_ROWS"
	[ -z "$PRUNE_FAIL" ] || printf '\n%s\n' "$PRUNE_FAIL"
} >>"$REPORT"
fi

# ---------------------------------------------------------------- large
# cgroup_run LIMIT NAME CMD...: run CMD under a memory limit (cgroup v2
# memory.max, or v1 memory.limit_in_bytes below our own memory cgroup);
# writes $TMP/NAME.cg (a description) and returns CMD's status, or 125 when
# no cgroup can be made.
cgroup_run() {
	local limit=$1 name=$2; shift 2
	local cg="" kind="" peakf="" rc=0
	if [ -f /sys/fs/cgroup/cgroup.controllers ] && grep -qw memory /sys/fs/cgroup/cgroup.controllers; then
		cg=/sys/fs/cgroup/wanda-bench-$$ kind="cgroup v2 memory.max"
		if mkdir "$cg" 2>/dev/null && echo "$limit" >"$cg/memory.max" 2>/dev/null; then
			echo 0 >"$cg/memory.swap.max" 2>/dev/null || true
			peakf=$cg/memory.peak
		else
			rmdir "$cg" 2>/dev/null; cg=""
		fi
	fi
	if [ -z "$cg" ] && [ -d /sys/fs/cgroup/memory ]; then
		local own
		own=$(awk -F: '$2 == "memory" {print $3}' /proc/self/cgroup)
		cg=/sys/fs/cgroup/memory${own%/}/wanda-bench-$$ kind="cgroup v1 memory.limit_in_bytes"
		if mkdir "$cg" 2>/dev/null && echo "$limit" >"$cg/memory.limit_in_bytes" 2>/dev/null; then
			echo "$limit" >"$cg/memory.memsw.limit_in_bytes" 2>/dev/null || true
			peakf=$cg/memory.max_usage_in_bytes
		else
			rmdir "$cg" 2>/dev/null; cg=""
		fi
	fi
	if [ -z "$cg" ]; then
		echo "no writable cgroup (neither /sys/fs/cgroup/memory.max of cgroup v2 nor a v1 memory controller)" >"$TMP/$name.cg"
		return 125
	fi
	measure "$name" bash -c 'echo $$ >"$1/cgroup.procs" && shift && exec "$@"' _ "$cg" "$@" || rc=$?
	local peak oom=""
	peak=$(cat "$peakf" 2>/dev/null || echo "")
	if [ -f "$cg/memory.events" ]; then oom=$(awk '$1 == "oom_kill" {print $2}' "$cg/memory.events"); fi
	if [ -f "$cg/memory.oom_control" ]; then oom=$(awk '$1 == "oom_kill" {print $2}' "$cg/memory.oom_control"); fi
	printf '%s = %s; peak charged memory (incl. page cache) %s; OOM kills: %s' "$kind" "$limit" "$(mib "$peak")" "${oom:-?}" >"$TMP/$name.cg"
	rmdir "$cg" 2>/dev/null || true
	return "$rc"
}

if [ "$LARGE" = 1 ]; then
	section "7B-shaped model (llama-7b preset): wanda, 8 × 256 calibration tokens"
	L7=$WORK/llama-7b
	OUT7=$WORK/llama-7b-pruned
	avail=$(df -Pk "$WORK" | awk 'NR==2{print $4}')
	need=30
	[ "$RESUME" = 1 ] && need=58
	if [ "$avail" -lt $((need * 1024 * 1024)) ]; then
		printf 'Skipped: %s has %s free; the model, its pruned copies and the work directory need about %s GB.\n' "$WORK" "$(kib_to_mib "$avail")" "$need" >>"$REPORT"
	else
		go build -o "$ROOT/bench/.bin/gentiny" ./cmd/gentiny
		# shellcheck disable=SC2206 # word splitting of the extra flags is wanted
		GEN_CMD=("$ROOT/bench/.bin/gentiny" -preset llama-7b -out "$L7" -v $LARGE_GEN_ARGS)
		log "large: $(cmdline "${GEN_CMD[@]}")"
		{
			if measure gen7b "${GEN_CMD[@]}"; then
				printf 'Model: `%s`: %s s wall, %s s CPU, max RSS %s (%s).\n\n' "$(cmdline "${GEN_CMD[@]}")" \
					"$(cat "$TMP/gen7b.wall")" "$(cat "$TMP/gen7b.cpu")" "$(kib_to_mib "$(cat "$TMP/gen7b.maxrss")")" "$(tail -n1 "$TMP/gen7b.err" | sed 's/^gentiny: //')"
			else
				failed gen7b
			fi
		} >>"$REPORT"
		if [ "$(cat "$TMP/gen7b.rc")" = 0 ]; then
			P7=("$BIN" prune --model "$L7" --out "$OUT7" --force --method wanda --nsamples 8 --seqlen 256
				--calib "$C4" --json)
			# FLOPs of the forward passes: per layer and pass, 2·(linear params)·tokens for the
			# linears plus 2·2·nsamples·heads·seqlen²·head_dim for QKᵀ and AV (full square,
			# as eager attention computes it); two passes (dense inputs, pruned outputs).
			flops7() {
				jq -r --argjson n 8 --argjson s 256 '
					(.hidden_size) as $h | (.intermediate_size) as $i | (.num_attention_heads) as $a |
					(.num_key_value_heads // .num_attention_heads) as $kv | (.head_dim // (.hidden_size / .num_attention_heads)) as $d |
					(($h * $a * $d) + 2 * ($h * $kv * $d) + ($a * $d * $h) + 3 * $h * $i) as $p |
					(2 * $p * $n * $s + 4 * $n * $a * $s * $s * $d) * 2 * .num_hidden_layers' "$L7/config.json"
			}
			large_row() { # large_row NAME LABEL
				local j=$TMP/$1.out fs fl
				fs=$(jq -r '[.layers[] | .dense_forward_seconds + .pruned_forward_seconds] | add' "$j")
				fl=$(flops7)
				printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$2" "$(cat "$TMP/$1.wall")" "$(cat "$TMP/$1.cpu")" \
					"$(jq -r '.seconds * 100 | round / 100' "$j")" "$(mib "$(jq -r .peak_rss_anon_bytes "$j")")" \
					"$(kib_to_mib "$(cat "$TMP/$1.maxrss")")" "$(printf '%.2f' "$fs")" \
					"$(awk -v f="$fl" -v s="$fs" 'BEGIN{ if (s > 0) printf "%.1f", f/s/1e9; else print "n/a" }')" \
					"$(jq -r '.global_sparsity * 10000 | round / 10000' "$j")"
			}
			{
				printf 'Command: `%s` (the generated tokenizer is tiny, so the C4 text becomes short-token windows; fine for timing).\n\n' "$(cmdline "${P7[@]}")"
				printf '| run | wall s | CPU s | report `seconds` | peak RssAnon (report) | max RSS (time -v) | forward s (dense + pruned, all layers) | forward GFLOP/s | sparsity |\n'
				printf '|---|---:|---:|---:|---:|---:|---:|---:|---:|\n'
			} >>"$REPORT"
			log "large: $(cmdline "${P7[@]}")"
			LARGE_NOTES=""
			REF7=$WORK/llama-7b-pruned-ref
			rm -rf "$REF7"
			if measure prune7b "${P7[@]}"; then
				large_row prune7b "unconstrained" >>"$REPORT"
				mv "$OUT7" "$REF7" # kept for the resume check below
			else
				printf '| unconstrained | FAILED | | | | | | | |\n' >>"$REPORT"
				LARGE_NOTES+=$(failed prune7b)
			fi
			rm -rf "$OUT7"
			if [ "$CGROUP" = 1 ]; then
				log "large: same command in a 4 GiB memory cgroup"
				rc=0
				cgroup_run 4G prune7b-cg "${P7[@]}" || rc=$?
				if [ "$rc" = 125 ]; then
					LARGE_NOTES+=$(printf '\n4 GiB cgroup run not possible: %s.\n' "$(cat "$TMP/prune7b-cg.cg")")
				elif [ "$rc" = 0 ]; then
					large_row prune7b-cg "in 4 GiB cgroup" >>"$REPORT"
					LARGE_NOTES+=$(printf '\nCompleted inside a memory cgroup: %s.\n' "$(cat "$TMP/prune7b-cg.cg")")
				else
					printf '| in 4 GiB cgroup | FAILED (exit %s) | | | | | | | |\n' "$rc" >>"$REPORT"
					LARGE_NOTES+=$(printf '\nDid NOT complete inside the memory cgroup (%s):\n\n' "$(cat "$TMP/prune7b-cg.cg")"; failed prune7b-cg)
				fi
				rm -rf "$OUT7"
			fi
			if [ "$RESUME" = 1 ] && [ -d "$REF7" ]; then
				# Kill -9 about halfway through (wall time of the unconstrained run),
				# then continue with --resume and compare every output file.
				WD7=$WORK/llama-7b-workdir
				rm -rf "$WD7" "$OUT7"
				killat=$(awk -v w="$(cat "$TMP/prune7b.wall")" 'BEGIN{printf "%d", w * 0.45}')
				log "large: kill -9 after ${killat}s, then --resume"
				"${P7[@]}" --workdir "$WD7" >"$TMP/prune7b-killed.out" 2>"$TMP/prune7b-killed.err" &
				kpid=$!
				sleep "$killat"
				kill -9 "$kpid" 2>/dev/null || true
				wait "$kpid" 2>/dev/null && krc=0 || krc=$?
				done_layers=$(jq -r '.next_layer // "none"' "$WD7/state.json" 2>/dev/null || echo none)
				nl=$(jq -r .num_hidden_layers "$L7/config.json")
				if measure prune7b-resume "${P7[@]}" --workdir "$WD7" --resume; then
					large_row prune7b-resume "resumed after kill -9" >>"$REPORT"
					nf=0 nd=0 nb=0
					while IFS= read -r f; do
						nf=$((nf + 1))
						nb=$((nb + $(stat -c %s "$REF7/$f")))
						if [ "${f##*/}" = wanda_report.json ]; then
							# The report holds timings and memory peaks; the rest must agree.
							untimed='walk(if type == "object" then with_entries(select(.key | test("seconds|rss|activation_store") | not)) else . end)'
							cmp -s <(jq -S "$untimed" "$REF7/$f") <(jq -S "$untimed" "$OUT7/$f") || { nd=$((nd + 1)); LARGE_NOTES+=$'\n'"differs: $f (apart from timings)"; }
						else
							cmp -s "$REF7/$f" "$OUT7/$f" || { nd=$((nd + 1)); LARGE_NOTES+=$'\n'"differs: $f"; }
						fi
					done < <(cd "$REF7" && find . -type f | sort)
					extra=$(comm -13 <(cd "$REF7" && find . -type f | sort) <(cd "$OUT7" && find . -type f | sort) | wc -l)
					verdict="byte-identical to the unconstrained run's output ($nf files, $nb bytes compared with cmp; wanda_report.json compared without its timing and memory fields)"
					if [ "$nd" != 0 ] || [ "$extra" != 0 ]; then
						verdict="NOT identical: $nd of $nf files differ, $extra extra files"
					fi
					LARGE_NOTES+=$(printf '\n\nKill and resume: `%s --workdir $WORK/llama-7b-workdir` was killed with SIGKILL after %s s (exit status %s; the checkpoint then held %s of %s layers), and the same command with `--resume` finished it (row "resumed after kill -9": wall, CPU and RSS are those of the resumed process; the forward columns sum the per-layer times of its report, which include the layers finished before the kill). The output is %s.\n' \
						"$(cmdline "${P7[@]}")" "$killat" "$krc" "$done_layers" "$nl" "$verdict")
				else
					printf '| resumed after kill -9 | FAILED | | | | | | | |\n' >>"$REPORT"
					LARGE_NOTES+=$(failed prune7b-resume)
				fi
				rm -rf "$OUT7" "$WD7"
			fi
			rm -rf "$REF7"
			{
				printf '\nGFLOP/s counts %s FLOP per run: 2 · (linear parameters per layer) · tokens + 4 · nsamples · heads · seqlen² · head_dim (QKᵀ and AV, full square), × 2 passes × layers; divided by the sum of the report'"'"'s per-layer `dense_forward_seconds` + `pruned_forward_seconds`.\n' "$(flops7 | awk '{printf "%.3g", $1}')"
				printf '%s\n' "$LARGE_NOTES"
			} >>"$REPORT"
		fi
		[ "$KEEP" = 1 ] || rm -rf "$L7"
	fi
fi

# ---------------------------------------------------------------- huge
if [ "$HUGE" = 1 ]; then
	log "huge layers (bench/huge.sh)"
	bench/huge.sh --out "$TMP/huge.md" --work "$WORK/huge" --reps "$REPS" ${OLD:+--old "$OLD"}
	printf '\n' >>"$REPORT"
	cat "$TMP/huge.md" >>"$REPORT"
fi

# ---------------------------------------------------------------- write
LOAD_END=$(load)
{
	printf '# Benchmarks\n\n'
	printf 'Generated by `bench/run.sh%s%s` — do not edit by hand; rerun it instead.\n\n' "$( [ "$LARGE" = 1 ] && echo ' --large')" "$( [ "$HUGE" = 1 ] && echo ' --huge')"
	printf '| | |\n|---|---|\n'
	printf '| Date | %s |\n' "$DATE"
	printf '| CPU | %s |\n' "$CPU"
	printf '| Cores | %s online (nproc); %s |\n' "$NCPU" "${SIMD:-no AVX}"
	printf '| Memory | %s |\n' "$MEM"
	printf '| Go | %s |\n' "$GOV"
	printf '| Kernel | %s |\n' "$(uname -r)"
	printf '| Commit | %s |\n' "$COMMIT"
	printf '| Load average (1/5/15 min) | %s at start, %s at end |\n' "$LOAD_START" "$LOAD_END"
	printf '\nThe machine may be shared: compare figures only within one file, where the runs were interleaved with the same load.\n'
	cat "$REPORT"
} >"$OUT.tmp"
mv "$OUT.tmp" "$OUT"
log "wrote $OUT"
