#!/usr/bin/env bash
# bench/huge.sh — the "huge layers" measurements: peak anonymous memory (RssAnon of the
# process tree, sampled every 100 ms from outside by bench/peakrss) of `wanda prune` and
# `wanda eval` on generated bf16 models with two decoder layers of the released shapes of
# Llama-3.1-405B, Llama-3.1-70B and Mixtral-8x22B, and on the full 32-layer 7B preset; with
# --old BINARY, the 7B prune and the tiny-llama-a prune are also timed against that build
# (interleaved, new/old wall-time ratios).
#
#   bench/huge.sh [--out FILE] [--work DIR] [--old BINARY] [--reps N] [--only LIST]
#
#   --out FILE   Markdown section to write (default: stdout)
#   --work DIR   where the models are generated, one at a time (default /tmp/wanda-huge;
#                needs about 45 GB free: the 405B-shaped model is 21 GB, its output too)
#   --old BIN    a previous build of wanda to compare speed with (tiny-llama-a wanda prune
#                and the 7B forward GFLOP/s)
#   --reps N     timed repetitions of the tiny-llama-a comparison (default 3)
#   --only LIST  some of: 405b,70b,mixtral,7b,tiny
#   --7b-layers N  generate the 7B preset with N decoder layers (default: its 32; the
#                layers' shapes, and so the GFLOP/s, are the same)
#   --7b-reps N  interleaved new/old runs of the 7B prune (default 1)
#
# Called by `bench/run.sh --huge`. Needs go, jq, awk, ../shared (C4 and tiny-llama-a).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SHARED=$(cd "$ROOT/.." && pwd)/shared
OUT=/dev/stdout WORK=${TMPDIR:-/tmp}/wanda-huge OLD="" REPS=3 ONLY="" L7B="" REPS7B=1
while [ $# -gt 0 ]; do
	case $1 in
	--out) OUT=$2; shift ;;
	--work) WORK=$2; shift ;;
	--old) OLD=$2; shift ;;
	--reps) REPS=$2; shift ;;
	--only) ONLY=$2; shift ;;
	--7b-layers) L7B=$2; shift ;;
	--7b-reps) REPS7B=$2; shift ;;
	-h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "bench/huge.sh: unknown argument $1" >&2; exit 2 ;;
	esac
	shift
done
want() { [ -z "$ONLY" ] || case ",$ONLY," in *",$1,"*) true ;; *) false ;; esac; }
log() { printf '[huge %s] %s\n' "$(date +%T)" "$*" >&2; }
mkdir -p "$WORK" "$ROOT/bench/.bin"
BIN=$ROOT/bench/.bin
go build -o "$BIN/wanda" ./cmd/wanda
go build -o "$BIN/gentiny" ./cmd/gentiny
go build -o "$BIN/peakrss" ./bench/peakrss
C4=$SHARED/data/c4/c4_train00000_head1000.jsonl
TMP=$(mktemp -d "$WORK/run.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

rows=()
# run NAME MODEL-LABEL CMD...: peak RssAnon and wall time of CMD; a row for the table.
run() {
	local name=$1 label=$2; shift 2
	local rc=0
	log "$name: $*"
	"$BIN/peakrss" -json -- "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" || rc=$?
	local res
	res=$(grep '^{"rss_anon_peak_mib"' "$TMP/$name.err" | tail -1)
	local anon wall
	anon=$(jq -r .rss_anon_peak_mib <<<"$res")
	wall=$(jq -r .wall_s <<<"$res")
	local note="exit $rc"
	if [ "$rc" != 0 ]; then
		note="exit $rc: $(grep -v '^{"rss_anon_peak_mib"' "$TMP/$name.err" | grep -v 'level=INFO' | tail -1 | cut -c1-300)"
	fi
	rows+=("| $label | \`$(sed "s#$ROOT/##g; s#$WORK#\$WORK#g; s#$SHARED#../shared#g" <<<"$*")\` | $(printf '%.0f' "$anon") MiB | $(printf '%.1f' "$wall") s | $note |")
	echo "$anon" >"$TMP/$name.anon"
	return 0
}
gen() { # gen DIR PRESET [ARGS]
	local dir=$1 preset=$2; shift 2
	rm -rf "$dir"
	log "generate $preset $*"
	"$BIN/gentiny" -preset "$preset" -out "$dir" "$@" >&2
}
prune_args=(--calib "$C4" --nsamples 4 --seqlen 128 --force)

if want 405b; then
	M=$WORK/llama3-405b-2l
	gen "$M" llama3-405b -layers 2
	run 405b-wanda "405B-shaped, 2 layers" "$BIN/wanda" prune --model "$M" --out "$WORK/o" --method wanda "${prune_args[@]}"
	rm -rf "$WORK/o"
	run 405b-magnitude "405B-shaped, 2 layers" "$BIN/wanda" prune --model "$M" --out "$WORK/o" --method magnitude --force
	rm -rf "$WORK/o"
	run 405b-wanda24 "405B-shaped, 2 layers" "$BIN/wanda" prune --model "$M" --out "$WORK/o" --method wanda --pattern 2:4 "${prune_args[@]}"
	rm -rf "$WORK/o"
	run 405b-sparsegpt "405B-shaped, 2 layers" "$BIN/wanda" prune --model "$M" --out "$WORK/o" --method sparsegpt "${prune_args[@]}"
	rm -rf "$WORK/o"
	run 405b-eval "405B-shaped, 2 layers, vocab 128256" "$BIN/wanda" eval --model "$M" --data "$SHARED/data/wikitext-2/wiki.test.raw" --seqlen 128 --max-windows 4
	rm -rf "$M"
fi
if want 70b; then
	M=$WORK/llama3-70b-2l
	gen "$M" llama3-70b -layers 2
	run 70b-wanda "70B-shaped, 2 layers" "$BIN/wanda" prune --model "$M" --out "$WORK/o" --method wanda "${prune_args[@]}"
	rm -rf "$WORK/o" "$M"
fi
if want mixtral; then
	M=$WORK/mixtral-8x22b-2l
	gen "$M" mixtral-8x22b -layers 2
	run mixtral-wanda "Mixtral-8x22B-shaped, 2 layers" "$BIN/wanda" prune --model "$M" --out "$WORK/o" --method wanda "${prune_args[@]}"
	rm -rf "$WORK/o" "$M"
fi
fwd=()
if want 7b; then
	M=$WORK/llama-7b
	gen "$M" llama-7b ${L7B:+-layers "$L7B"}
	label="7B preset${L7B:+, $L7B layers}"
	for i in $(seq "$REPS7B"); do
		for b in new ${OLD:+old}; do
			bin=$BIN/wanda
			[ "$b" = old ] && bin=$OLD
			run "7b-$b-$i" "$label ($b build)" "$bin" prune --model "$M" --out "$WORK/o-$b" --method wanda --calib "$C4" --nsamples 8 --seqlen 256 --force --json
			if jq -e . "$TMP/7b-$b-$i.out" >/dev/null 2>&1; then
				fwd+=("$b $(jq -r '[([.layers[].dense_forward_seconds] | add), ([.layers[].pruned_forward_seconds] | add), .calibration.windows, .calibration.seqlen] | @tsv' "$TMP/7b-$b-$i.out")")
			fi
			rm -rf "$WORK/o-$b"
		done
	done
	cfg=$(jq -r '[.hidden_size, .intermediate_size, .num_attention_heads, .num_key_value_heads, (.head_dim // (.hidden_size / .num_attention_heads)), .num_hidden_layers] | @tsv' "$M/config.json")
	rm -rf "$M"
fi
tiny=()
if want tiny && [ -n "$OLD" ]; then
	for i in $(seq "$REPS"); do
		for b in new old; do
			bin=$BIN/wanda
			[ "$b" = old ] && bin=$OLD
			t0=$(date +%s.%N)
			"$bin" prune --model "$SHARED/models/tiny-llama-a" --out "$WORK/t-$b" --method wanda --force \
				--calib-tokens "$SHARED/reference/tiny-llama-a/reference.safetensors" --calib-key calib_input_ids --seqlen 512 >/dev/null 2>&1
			t1=$(date +%s.%N)
			echo "$b $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}')" >>"$TMP/tiny.walls"
			rm -rf "$WORK/t-$b"
		done
	done
fi

{
	echo "## Huge layers"
	echo
	echo "Generated by \`bench/huge.sh\` (\`bench/run.sh --huge\`) on $(date -u +%F) at $(git rev-parse --short HEAD): $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) CPUs, $(awk '/MemTotal/{printf "%.1f GiB", $2/1048576}' /proc/meminfo); AVX-512: $(grep -q avx512f /proc/cpuinfo && echo yes || echo no); load at end $(cut -d' ' -f1-3 /proc/loadavg)."
	echo "Peak RssAnon of the process tree, sampled every 100 ms from outside (bench/peakrss); the weights are memory-mapped and not counted."
	echo
	echo "| model | command | peak RssAnon | wall | result |"
	echo "|---|---|---:|---:|---|"
	printf '%s\n' "${rows[@]}"
	if [ ${#fwd[@]} -gt 0 ]; then
		echo
		echo "7B-shaped forward passes (seconds summed over the layers of each run's wanda_report.json; $REPS7B interleaved run(s) per build)."
		echo "FLOP per layer and pass: 2 · linear parameters · tokens + 4 · windows · heads · seqlen² · head_dim (QKᵀ and AV, full square)."
		echo "The pruned pass runs the whole layer in both builds, so its FLOP are the same; the dense pass of this build skips"
		echo "down_proj (its output is not needed for the statistics), the previous build's (--old, e42fc1b) did not, so the"
		echo "dense-pass FLOP differ by the down_proj GEMM and each build's GFLOP/s uses its own count."
		echo
		printf '%s\n' "${fwd[@]}" | awk -v cfg="$cfg" '
		BEGIN { split(cfg, c, "\t"); h=c[1]; I=c[2]; nh=c[3]; kv=c[4]; hd=c[5]; L=c[6] }
		{ b=$1; d[b]+=$2; p[b]+=$3; n[b]++; win=$4; sl=$5 }
		END {
			tok = win*sl
			lin = h*nh*hd + 2*h*kv*hd + nh*hd*h + 3*h*I
			att = 4*win*nh*sl*sl*hd
			full = L*(2*lin*tok + att); down = L*2*h*I*tok
			printf "| build | runs | dense pass s (mean) | pruned pass s (mean) | dense GFLOP/s | pruned GFLOP/s | forward GFLOP/s (both passes) |\n|---|---:|---:|---:|---:|---:|---:|\n"
			for (b in n) {
				dm=d[b]/n[b]; pm=p[b]/n[b]; df = (b=="new") ? full-down : full
				g[b] = (df+full)/(dm+pm)/1e9; gp[b] = full/pm/1e9
				printf "| %s | %d | %.1f | %.1f | %.1f | %.1f | %.1f |\n", b, n[b], dm, pm, df/dm/1e9, gp[b], g[b]
			}
			if ("old" in n) printf "\nnew/old: pruned-pass GFLOP/s %.3f (same FLOP), forward GFLOP/s %.3f, forward wall %.3f\n", gp["new"]/gp["old"], g["new"]/g["old"], (d["new"]/n["new"]+p["new"]/n["new"])/(d["old"]/n["old"]+p["old"]/n["old"])
		}'
	fi
	if [ -s "$TMP/tiny.walls" ]; then
		echo
		echo "tiny-llama-a \`wanda prune --method wanda\` (128×512 reference windows), $REPS interleaved runs each:"
		awk '{w[$1]=w[$1] " " $2; s[$1]+=$2; n[$1]++} END{printf "- new:%s s; old:%s s; mean wall ratio new/old %.3f\n", w["new"], w["old"], (s["new"]/n["new"])/(s["old"]/n["old"])}' "$TMP/tiny.walls"
	fi
} >"$OUT"
log "wrote $OUT"
