#!/usr/bin/env bash
# bench/hostile/run.sh OLD_BINARY NEW_BINARY [CASE_REGEX]
#
# Runs the hostile cases of issue 12 (data loss, hangs, silent wrong results, leaks, bad
# numbers) against two wanda binaries and prints a Markdown table: the case, what the old
# build did, what the new build does, and the test of this tree that covers the case.
#
# SAFETY: the old build really deletes what --out names. Every case runs in its own fresh
# `mktemp -d /tmp/hostile.XXXX` sandbox with its working directory inside it; every --out,
# --workdir, TMPDIR and --scratch-dir lies inside the sandbox (checked before each run);
# `--out /dev/null` is played by a character device made with mknod inside the sandbox.
# Every command runs under `timeout -k 5 $HOSTILE_TIMEOUT` (30 s). Plugin children that
# outlive wanda are detected by their pid files and killed by pid.
#
# Needs: bash, coreutils, python3 (standard library), strace (one case), go (to build the
# example plugin), root (mknod). KEEP=1 keeps the sandboxes. Takes a few minutes: the old
# build hangs in several cases, each ended by the timeout.
set -u -o pipefail

if [ $# -lt 2 ]; then
	sed -n '2,14p' "$0" >&2
	exit 2
fi
OLD=$(realpath "$1") NEW=$(realpath "$2") ONLY=${3:-}
for b in "$OLD" "$NEW"; do
	[ -x "$b" ] || { echo "not an executable: $b" >&2; exit 2; }
done
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
SHARED=${SHARED:-$REPO/../shared}
T=${HOSTILE_TIMEOUT:-30}
ST="python3 $HERE/st.py"

ROOT=$(mktemp -d /tmp/hostile.XXXX)
FIX=$ROOT/fix LOGS=$ROOT/logs ROWS=$ROOT/rows
mkdir -p "$FIX" "$LOGS"
: >"$ROWS"
# The cases run in command substitutions (subshells): they record their sandboxes and pid
# files in these lists for the cleanup.
SBLIST=$ROOT/sandboxes PIDLIST=$ROOT/pidfiles
: >"$SBLIST"
: >"$PIDLIST"
cleanup() {
	local f d
	# Processes a case left (plugins, a stopped run): killed by the pids they wrote, never by name.
	while read -r f; do
		[ -s "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null
	done <"$PIDLIST"
	if [ "${KEEP:-0}" != 1 ]; then
		while read -r d; do
			case $d in /tmp/hostile.?*) rm -rf "$d" ;; esac
		done <"$SBLIST"
		rm -rf "$ROOT"
	else
		echo "kept: $ROOT and the sandboxes listed in $SBLIST" >&2
	fi
}
trap cleanup EXIT

die() { echo "run.sh: $*" >&2; exit 1; }

# ---- helpers ------------------------------------------------------------------------

# newsb: a fresh sandbox in $SB, with $SB/tmp for TMPDIR.
newsb() {
	SB=$(mktemp -d /tmp/hostile.XXXX) || die "mktemp"
	echo "$SB" >>"$SBLIST"
	mkdir -p "$SB/tmp" "$SB/pids"
}

# inside PATH...: dies unless every PATH lies inside the current sandbox.
inside() {
	local p
	for p in "$@"; do
		case $(realpath -m "$p") in "$SB"/*) ;; *) die "refusing to use $p outside the sandbox $SB" ;; esac
	done
}

# sbcd DIR: cd into DIR, which must be the sandbox or inside it.
sbcd() {
	cd "$1" || die "cd $1"
	case $(pwd -P) in "$SB" | "$SB"/*) ;; *) die "cwd $(pwd -P) is outside the sandbox" ;; esac
}

# w LABEL BIN ARGS...: runs BIN under the timeout with TMPDIR in the sandbox; sets RC,
# LOG (the combined output) and SECS.
w() {
	local label=$1
	shift
	LOG=$LOGS/$CASE.$label.log
	local t0=$SECONDS
	TMPDIR=$SB/tmp timeout -k 5 "$T" "$@" >"$LOG" 2>&1 </dev/null
	RC=$?
	SECS=$((SECONDS - t0))
}

# clean TEXT: one line, sandbox and fixture paths shortened, Markdown pipes escaped.
clean() {
	tr '\n' ' ' | sed -e "s#$SB#SB#g" -e "s#$FIX#FIX#g" -e "s#$ROOT#ROOT#g" -e 's/tmp-[0-9a-f]\{8\}/tmp-XXXXXXXX/g' -e 's/|/\\|/g' -e 's/  */ /g' -e 's/ $//'
}

# trim N: first N characters, with … when cut.
trim() { awk -v n="$1" '{ if (length($0) > n) print substr($0, 1, n) "…"; else print }'; }

# msg: the line that says what happened: a panic, else the last error/warning line, else
# the last line of the output.
msg() {
	local l
	l=$(grep -m1 -E '^panic:|fatal error:' "$LOG")
	[ -z "$l" ] && l=$(grep -E '^wanda: |level=(ERROR|WARN)|warning' "$LOG" | tail -1)
	[ -z "$l" ] && l=$(grep -v '^[[:space:]]*$' "$LOG" | tail -1)
	[ -z "$l" ] && l="(no output)"
	# slog lines: keep the message and its attributes, not the time.
	printf '%s' "$l" | sed -E 's/^time=[^ ]+ //' | clean | trim 160
}

# crashed: how a run with WANDA_CRASH_AT ended.
crashed() { if [ "$RC" = 137 ] && [ "$SECS" -lt "$T" ]; then echo "SIGKILL in layer 1"; else status; fi; }

# status: "exit N" or how the run ended.
status() {
	if [ "$RC" = 124 ] || { [ "$RC" = 137 ] && [ "$SECS" -ge "$T" ]; }; then
		echo "hung, killed by timeout after $T s"
	elif [ "$RC" = 137 ]; then
		echo "killed (SIGKILL)"
	elif [ "$RC" -gt 128 ]; then
		echo "killed by signal $((RC - 128))"
	else
		echo "exit $RC"
	fi
}

# res [NOTE]: "status: message; NOTE" for the table.
res() {
	local s m
	s=$(status)
	if [[ $s == hung* ]]; then m=""; else m=": $(msg)"; fi
	printf '%s%s' "$s" "$m"
	local k
	k=$(grep -c 'layer pruned' "$LOG")
	[ "$RC" != 0 ] && [ "$k" -gt 0 ] && printf ' (after %s layers were pruned)' "$k"
	[ -n "${1:-}" ] && printf ' — %s' "$(printf '%s' "$1" | clean)"
}

# alive PID: the process exists and is not a zombie.
alive() {
	[ -n "$1" ] && [ -r "/proc/$1/stat" ] && ! awk '{ exit !($3 == "Z") }' "/proc/$1/stat" 2>/dev/null
}

# tests "NAME... [; NOTE]": the names, checked to exist as test functions in this tree
# (missing ones flagged), then the note.
tests() {
	local n out=() names=${1%%;*} note=""
	[[ $1 == *";"* ]] && note=${1#*;}
	for n in $names; do
		if grep -rqs --include='*_test.go' -E "^func $n\(" "$REPO"; then
			out+=("\`$n\`")
		else
			out+=("$n (NOT FOUND)")
		fi
	done
	local IFS=,
	printf '%s' "${out[*]}" | sed 's/,/, /g'
	[ ${#out[@]} = 0 ] && note=${note# }
	[ -n "$note" ] && printf '%s' "$note"
}

# row CASE BEFORE AFTER TESTS
row() { printf '| %s | %s | %s | %s |\n' "$1" "$2" "$3" "$4" >>"$ROWS"; }

# model DEST: a copy of the generated tiny model.
model() { cp -r "$FIX/demo/tiny-model" "$1"; }

# Common quick prune arguments on the tiny model.
CAL() { printf '%s\n' --calib "$FIX/demo/calib.jsonl" --nsamples 2 --seqlen 32 --threads 1; }

# ---- fixtures -----------------------------------------------------------------------

echo "fixtures in $ROOT" >&2
"$NEW" demo --dir "$FIX/demo" >"$LOGS/fixture-demo.log" 2>&1 || die "demo failed: $(tail -3 "$LOGS/fixture-demo.log")"
[ -f "$FIX/demo/tiny-model/model.safetensors" ] || die "demo wrote no tiny-model"
grep -q '"num_hidden_layers": 4' "$FIX/demo/tiny-model/config.json" || die "the demo model is expected to have 4 layers"
(cd "$REPO" && go build -o "$FIX/wanda-plugin-real" ./plugins/examples/wanda) || die "building the example plugin"

mkdir -p "$FIX/m"
for v in nan int badnorm badlast short maxpos; do model "$FIX/m/$v"; done
$ST nan "$FIX/m/nan/model.safetensors" model.layers.1.mlp.down_proj.weight 258
$ST dtype "$FIX/m/int/model.safetensors" model.layers.0.self_attn.q_proj.weight I16
$ST shrink "$FIX/m/badnorm/model.safetensors" model.norm.weight
$ST shrink "$FIX/m/badlast/model.safetensors" model.layers.3.mlp.down_proj.weight
sed -i 's/"num_hidden_layers": 4/"num_hidden_layers": 3/' "$FIX/m/short/config.json"
sed -i 's/"max_position_embeddings": [0-9]*/"max_position_embeddings": 32/' "$FIX/m/maxpos/config.json"
$ST tokens "$FIX/tokens.safetensors" 4 32
$ST adapter "$FIX/adapter-nan" model.layers.0.self_attn.q_proj 128 128

# want CASE: whether CASE is selected by the optional regex.
want() { [ -z "$ONLY" ] || [[ $1 =~ $ONLY ]]; }

# ---- cases --------------------------------------------------------------------------
# Each case_X BIN prints one table cell (what BIN did) and runs in its own sandbox.

case_out_empty() {
	newsb
	mkdir -p "$SB/m" "$SB/cwd"
	model "$SB/m/model"
	echo keep >"$SB/cwd/marker.txt"
	(
		sbcd "$SB/cwd"
		w "$1" "$2" prune --model "$SB/m/model" --out "" --method magnitude --force
		local n
		if [ -f "$SB/cwd/marker.txt" ]; then n="marker.txt in the working directory survived"; else n="marker.txt in the working directory DELETED"; fi
		[ -f "$SB/cwd/wanda_report.json" ] && n="$n; the working directory now holds the pruned model"
		res "$n"
	)
}

case_out_parent() {
	newsb
	mkdir -p "$SB/parent"
	model "$SB/parent/model"
	echo keep >"$SB/parent/keep.txt"
	inside "$SB/parent"
	w "$1" "$2" prune --model "$SB/parent/model" --out "$SB/parent" --method magnitude --force
	local n=""
	[ -f "$SB/parent/keep.txt" ] && n="keep.txt survived" || n="keep.txt DELETED"
	[ -f "$SB/parent/model/model.safetensors" ] && n="$n, source model survived" || n="$n, source model DELETED"
	[ -f "$SB/parent/wanda_report.json" ] && n="$n; SB/parent is now the pruned output"
	res "$n"
}

# same-as-model check: the source model's sha256 before and after.
case_out_model() {
	newsb
	model "$SB/M"
	local before after n
	before=$(sha256sum <"$SB/M/model.safetensors")
	(
		sbcd "$SB"
		if [ "$3" = same ]; then
			inside "$SB/M"
			w "$1" "$2" prune --model "$SB/M" --out "$SB/M" --method magnitude --force
		else
			inside "./M/."
			w "$1" "$2" prune --model M/ --out ./M/. --method magnitude --force
		fi
		after=$(sha256sum <"$SB/M/model.safetensors" 2>/dev/null)
		if [ "$before" = "$after" ]; then n="source model unchanged"; elif [ -z "$after" ]; then n="source model DELETED"; else n="source model REPLACED by its pruned copy"; fi
		res "$n"
	)
}

case_out_device() {
	newsb
	model "$SB/M"
	mknod "$SB/devnull" c 1 3 || die "mknod (needs root)"
	inside "$SB/devnull"
	w "$1" "$2" prune --model "$SB/M" --out "$SB/devnull" --method magnitude --force
	local n
	if [ -c "$SB/devnull" ]; then n="the device node (mknod c 1 3) is still a character device"; elif [ -d "$SB/devnull" ]; then n="the device node was REPLACED by a directory"; else n="the device node is GONE"; fi
	res "$n"
}

case_out_inside_model() {
	newsb
	model "$SB/M"
	local n0 n1
	n0=$(ls -A "$SB/M" | wc -l)
	inside "$SB/M/pruned"
	w "$1" "$2" prune --model "$SB/M" --out "$SB/M/pruned" --method magnitude --force
	n1=$(ls -A "$SB/M" | wc -l)
	if [ "$n1" = "$n0" ]; then res "the model directory is unchanged"; else res "the model directory went from $n0 to $n1 entries (output written inside the source model)"; fi
}

case_out_workdir() {
	newsb
	model "$SB/M"
	inside "$SB/w"
	w "$1" "$2" prune --model "$SB/M" --out "$SB/w" --workdir "$SB/w" --force $(CAL)
	local n
	if [ -f "$SB/w/wanda_report.json" ] && [ -f "$SB/w/model.safetensors" ]; then n="SB/w holds a complete output"
	elif [ -d "$SB/w" ]; then n="SB/w holds: $(ls -A "$SB/w" | head -5 | tr '\n' ' ')"
	else n="no output at SB/w after the run"; fi
	res "$n"
}

# Kill at the first rename(2) that touches OUT, with strace's fault injection: the old build
# has already removed the previous output by then.
case_kill_in_finish() {
	newsb
	model "$SB/M"
	inside "$SB/out"
	w "$1-prev" "$2" prune --model "$SB/M" --out "$SB/out" --method magnitude
	[ "$RC" = 0 ] || { res "could not write the previous output"; return; }
	local sum
	sum=$(sha256sum <"$SB/out/model.safetensors")
	w "$1" strace -f -qq -o "$SB/pids/strace.txt" -P "$SB/out" -e trace=rename,renameat,renameat2 \
		-e inject=rename,renameat,renameat2:signal=SIGKILL "$2" prune --model "$SB/M" --out "$SB/out" --method magnitude --pattern 2:4 --force
	local n killed
	# The injected call, as "renameat2(FROM, TO[, FLAGS])".
	killed=$(grep -m1 -E 'rename' "$SB/pids/strace.txt" | sed -E 's/^[0-9]+ +//' |
		sed -E 's/^([a-z0-9]+)\([^"]*"([^"]+)"[^"]*"([^"]+)"(, [A-Z_|]+)?.*/\1(\2, \3\4)/')
	if [ -f "$SB/out/model.safetensors" ]; then
		if [ "$(sha256sum <"$SB/out/model.safetensors")" = "$sum" ]; then n="OUT still holds the previous output"; else n="OUT holds the new output"; fi
	else
		n="previous output LOST: OUT is missing"
	fi
	printf '%s by strace at `%s` — %s' "$(status)" "$(printf '%s' "$killed" | clean)" "$n"
}

# run_stopped BIN LABEL POLL ARGS_A -- ARGS_B: starts run A, stops it (SIGSTOP) as soon as
# POLL (a glob) exists, runs B to the end, resumes A and waits for it.
# Sets B_RES and A_RES.
run_stopped() {
	local bin=$1 label=$2 poll=$3
	shift 3
	local a=() b=()
	while [ "$1" != -- ]; do a+=("$1"); shift; done
	shift
	b=("$@")
	local alog=$LOGS/$CASE.$label-A.log
	TMPDIR=$SB/tmp "$bin" "${a[@]}" >"$alog" 2>&1 </dev/null &
	local apid=$! stopped=0
	echo "$apid" >"$SB/pids/A.pid"
	echo "$SB/pids/A.pid" >>"$PIDLIST"
	for _ in $(seq 2000); do
		if compgen -G "$poll" >/dev/null; then kill -STOP "$apid" && stopped=1; break; fi
		kill -0 "$apid" 2>/dev/null || break
		sleep 0.01
	done
	if [ $stopped = 0 ]; then
		wait "$apid"
		B_RES="(could not catch run A while it ran)" A_RES=""
		return
	fi
	w "$label-B" "$bin" "${b[@]}"
	B_RES="$(res)"
	B_RES=${B_RES//process $apid/process <pid of A>}
	kill -CONT "$apid"
	local t0=$SECONDS
	while kill -0 "$apid" 2>/dev/null && [ $((SECONDS - t0)) -lt "$T" ]; do sleep 0.1; done
	if kill -0 "$apid" 2>/dev/null; then kill -9 "$apid"; fi
	wait "$apid"
	RC=$? SECS=$((SECONDS - t0)) LOG=$alog
	A_RES="$(res)"
}

case_concurrent_out() {
	newsb
	local m=$SHARED/models/tiny-llama-a c4=$SHARED/data/c4/c4_train00000_head1000.jsonl
	inside "$SB/out"
	CASE_A=(prune --model "$m" --out "$SB/out" --calib "$c4" --nsamples 8 --seqlen 128 --threads 1)
	run_stopped "$2" "$1" "$SB/.out.tmp-*" "${CASE_A[@]}" -- "${CASE_A[@]}" --seed 1
	local n
	[ -f "$SB/out/wanda_report.json" ] && n="OUT exists, seed in its report: $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("calibration",{}).get("seed","?"))' "$SB/out/wanda_report.json" 2>/dev/null)" || n="no OUT"
	printf 'B: %s; then A: %s — %s' "$B_RES" "$A_RES" "$n"
}

case_shared_workdir() {
	newsb
	local m=$SHARED/models/tiny-llama-a c4=$SHARED/data/c4/c4_train00000_head1000.jsonl
	inside "$SB/w" "$SB/outA" "$SB/outB"
	local common=(prune --model "$m" --calib "$c4" --nsamples 8 --seqlen 128 --threads 1 --workdir "$SB/w")
	run_stopped "$2" "$1" "$SB/w" "${common[@]}" --out "$SB/outA" -- "${common[@]}" --out "$SB/outB" --seed 1
	printf 'B: %s; then A: %s' "$B_RES" "$A_RES"
}

case_corrupt_checkpoint() {
	newsb
	model "$SB/M"
	inside "$SB/w" "$SB/out" "$SB/ref"
	local args=(prune --model "$SB/M" $(CAL) --workdir "$SB/w")
	w "$1-ref" "$2" prune --model "$SB/M" $(CAL) --out "$SB/ref"
	WANDA_CRASH_AT=between:1 w "$1-crash" "$2" "${args[@]}" --out "$SB/out"
	local f
	f=$(ls "$SB/w"/layer-*0.safetensors 2>/dev/null | head -1)
	[ -n "$f" ] || { res "no checkpoint file after the crash: $(ls "$SB/w" | tr '\n' ' ')"; return; }
	python3 -c 'import sys; p=sys.argv[1]; b=bytearray(open(p,"rb").read()); b[-1]^=1; open(p,"wb").write(b)' "$f"
	w "$1" "$2" "${args[@]}" --out "$SB/out" --resume
	local n="corrupted: last byte of SB/w/$(basename "$f")"
	if [ -f "$SB/out/model.safetensors" ]; then
		if cmp -s "$SB/out/model.safetensors" "$SB/ref/model.safetensors"; then n="$n; output equals an uninterrupted run"; else n="$n; output SHIPPED and differs from an uninterrupted run"; fi
	else
		n="$n; no output written"
	fi
	res "$n"
}

# Wrapper-script plugins: each starts `sleep 1000` (holding the plugin's stdout and stderr)
# and writes its own pid and the child's. A body that waits does it with exec, so that
# the two pids are every process of the plugin.
wrapper() { # DIR NAME BODY
	mkdir -p "$1"
	printf '#!/bin/sh\necho $$ > %s/plugin.pid\nsleep 1000 &\necho $! > %s/child.pid\n%s\n' "$SB/pids" "$SB/pids" "$3" >"$1/wanda-plugin-$2"
	chmod +x "$1/wanda-plugin-$2"
	printf '%s\n' "$SB/pids/plugin.pid" "$SB/pids/child.pid" >>"$PIDLIST"
}

# orphans: says which plugin processes outlived wanda, then kills them.
orphans() {
	local n="" p
	sleep 0.5
	p=$(cat "$SB/pids/child.pid" 2>/dev/null)
	if [ -z "$p" ]; then n="plugin never started its child"
	elif alive "$p"; then n="the plugin's child (sleep) OUTLIVED wanda"; kill -9 "$p"
	else n="the plugin's child is gone"; fi
	p=$(cat "$SB/pids/plugin.pid" 2>/dev/null)
	if [ -n "$p" ] && alive "$p"; then n="$n; the plugin script OUTLIVED wanda"; kill -9 "$p"; fi
	local left
	left=$(ls -A "$SB/tmp" | wc -l)
	[ "$left" -gt 0 ] && n="$n; $left entries left in TMPDIR"
	printf '%s' "$n"
}

case_plugin() { # LABEL BIN KIND
	newsb
	model "$SB/M"
	local body
	case $3 in
	exit) body='exit 1' ;;
	garbage) body='echo garbage; exec sleep 1000' ;;
	silent) body='exec sleep 1000' ;;
	ok) body="exec $FIX/wanda-plugin-real" ;;
	esac
	wrapper "$SB/plugins" w "$body"
	inside "$SB/out"
	w "$1" "$2" prune --model "$SB/M" --out "$SB/out" --method "$SB/plugins/wanda-plugin-w" --plugin-timeout 5s $(CAL)
	res "$(orphans)"
}

# SIGNAL (INT or TERM) 3 s into a run whose wrapper plugin never answers, with a long
# --plugin-timeout: timeout(1) sends it to wanda's process group, as a terminal's Ctrl-C does.
case_plugin_signal() { # LABEL BIN SIGNAL
	newsb
	model "$SB/M"
	wrapper "$SB/plugins" w 'exec sleep 1000'
	inside "$SB/out"
	LOG=$LOGS/$CASE.$1.log
	local t0=$SECONDS
	TMPDIR=$SB/tmp timeout -s "$3" -k $((T - 3)) 3 "$2" prune --model "$SB/M" --out "$SB/out" --method "$SB/plugins/wanda-plugin-w" \
		--plugin-timeout 10m $(CAL) >"$LOG" 2>&1 </dev/null
	RC=$? SECS=$((SECONDS - t0))
	local n
	n=$(orphans)
	if [ "$RC" = 124 ]; then
		printf 'stopped at SIG%s (%s s in all): %s — %s' "$3" "$SECS" "$(msg)" "$n"
	else
		printf 'ignored SIG%s; killed by SIGKILL %s s later (exit %s) — %s' "$3" "$((T - 3))" "$RC" "$n"
	fi
}

case_plugins_list() {
	newsb
	wrapper "$SB/plugins" garbage 'echo garbage; exec sleep 1000'
	w "$1" "$2" plugins list --plugin-dir "$SB/plugins" --timeout 3s
	res "$(orphans)"
}

case_fifo() { # LABEL BIN FILE
	newsb
	model "$SB/M"
	rm "$SB/M/$3"
	mkfifo "$SB/M/$3"
	inside "$SB/out"
	w "$1" "$2" prune --model "$SB/M" --out "$SB/out" --method magnitude
	res
}

case_merge_nan() {
	newsb
	cp -r "$FIX/demo/tiny-model-pruned" "$SB/pruned"
	inside "$SB/merged"
	w "$1" "$2" merge-lora --model "$SB/pruned" --adapter "$FIX/adapter-nan" --out "$SB/merged"
	if [ -d "$SB/merged" ]; then res "output written; $($ST nonfinite "$SB/merged")"; else res "no output written"; fi
}

case_eval_nan() {
	newsb
	w "$1" "$2" eval --model "$FIX/m/nan" --data "$FIX/demo/eval.txt" --seqlen 32 --max-windows 2 --threads 1
	res
}

case_inspect() { # LABEL BIN MODEL
	newsb
	w "$1" "$2" inspect --model "$FIX/m/$3"
	local p
	p=$(grep -c 'problem:' "$LOG")
	if [ "$p" -gt 0 ]; then
		printf '%s: %s (%s problem line(s))' "$(status)" "$(grep -m1 'problem:' "$LOG" | clean | trim 140)" "$p"
	else
		printf '%s: no problem reported' "$(status)"
	fi
}

case_prune_model() { # LABEL BIN MODEL CHECK
	newsb
	inside "$SB/out"
	w "$1" "$2" prune --model "$FIX/m/$3" --out "$SB/out" --method magnitude
	local n="no output"
	if [ -d "$SB/out" ]; then
		case $4 in
		norm) n="output written with model.norm.weight of shape $($ST shape "$SB/out" model.norm.weight) (hidden_size 128)" ;;
		layers) n="output written; it holds $($ST count "$SB/out" model.layers.3.) tensors of layer 3 (the source has 9)" ;;
		*) n="output written" ;;
		esac
	fi
	res "$n"
}

case_flags() { # LABEL BIN ARGS... (a prune of the tiny model)
	local label=$1 bin=$2
	shift 2
	newsb
	model "$SB/M"
	inside "$SB/out"
	w "$label" "$bin" prune --model "$SB/M" --out "$SB/out" "$@"
	local n=""
	[ -d "$SB/out" ] && n="output written"
	local c=""
	[ "$RC" = 0 ] && [ -f "$SB/out/wanda_report.json" ] &&
		c=$(python3 -c 'import json,sys; c=json.load(open(sys.argv[1])).get("calibration") or {}; c and print(c.get("windows","?"), "windows of", c.get("seqlen","?"), "tokens")' "$SB/out/wanda_report.json" 2>/dev/null)
	[ -n "$c" ] && n="$n; calibrated on $c"
	res "$n"
}

case_seqlen_warning() {
	newsb
	inside "$SB/out"
	w "$1" "$2" prune --model "$FIX/m/maxpos" --out "$SB/out" --calib "$FIX/demo/calib.jsonl" --nsamples 2 --seqlen 48 --threads 1
	local wl
	wl=$(grep -m1 -i 'warn' "$LOG" | sed -E 's/^time=[^ ]+ //' | clean | trim 160)
	if [ -n "$wl" ]; then printf '%s: %s' "$(status)" "$wl"; else printf '%s: no warning (max_position_embeddings 32, --seqlen 48)' "$(status)"; fi
}

case_demo_bogus() {
	newsb
	inside "$SB/demo"
	w "$1" "$2" demo --dir "$SB/demo" --method bogus
	local k=0
	[ -d "$SB/demo" ] && k=$(find "$SB/demo" -type f | wc -l)
	res "$k files written to --dir before the refusal"
}

# kill -9 in the middle of layer 1 (the pipeline's WANDA_CRASH_AT hook, in both builds)
# with the activations in a scratch file (--activation-budget 1KiB), then a --resume run.
case_kill9_scratch() {
	newsb
	model "$SB/M"
	inside "$SB/w" "$SB/out"
	local args=(prune --model "$SB/M" $(CAL) --activation-budget 1KiB --workdir "$SB/w" --out "$SB/out")
	WANDA_CRASH_AT=forward:1 w "$1-crash" "$2" "${args[@]}"
	local k1 w1 k2
	k1=$(ls -A "$SB/tmp" | wc -l)
	local l1 s1
	l1=$(ls -A "$SB/tmp" | head -2 | tr '\n' ' ' | sed 's/ $//')
	w1=$(ls -A "$SB/w" 2>/dev/null | wc -l)
	s1=$(crashed)
	w "$1" "$2" "${args[@]}" --resume
	k2=$(ls -A "$SB/tmp" | wc -l)
	printf 'after the kill (%s): %s entries in TMPDIR (%s), %s in --workdir; --resume run %s: %s entries left in TMPDIR' \
		"$s1" "$k1" "${l1:-none}" "$w1" "$(status)" "$k2"
}

case_kill9_plugin() {
	newsb
	model "$SB/M"
	inside "$SB/out"
	# The plugin, through a script that records its pid (exec: the same process).
	mkdir -p "$SB/plugins"
	printf '#!/bin/sh\necho $$ > %s/plugin.pid\nexec %s\n' "$SB/pids" "$FIX/wanda-plugin-real" >"$SB/plugins/wanda-plugin-p"
	chmod +x "$SB/plugins/wanda-plugin-p"
	echo "$SB/pids/plugin.pid" >>"$PIDLIST"
	local args=(prune --model "$SB/M" --method "$SB/plugins/wanda-plugin-p" $(CAL) --out "$SB/out" --scratch-dir "$SB/tmp")
	WANDA_CRASH_AT=forward:1 w "$1-crash" "$2" "${args[@]}"
	local s1 k1 k2 l1 p
	s1=$(crashed)
	sleep 1
	p=$(cat "$SB/pids/plugin.pid" 2>/dev/null)
	if alive "$p"; then s1="$s1; the plugin process OUTLIVED it"; kill -9 "$p"; else s1="$s1; the plugin died with it"; fi
	k1=$(ls -A "$SB/tmp" | wc -l)
	l1=$(ls -A "$SB/tmp" | head -2 | tr '\n' ' ' | sed 's/ $//')
	w "$1" "$2" "${args[@]}"
	k2=$(ls -A "$SB/tmp" | wc -l)
	printf 'after the kill (%s): %s entries left in TMPDIR (%s); next run %s: %s entries left' "$s1" "$k1" "${l1:-none}" "$(status)" "$k2"
}

# ---- the table ----------------------------------------------------------------------

# one NAME TESTS FUNCTION ARGS...: runs FUNCTION on both builds and adds a row.
one() {
	local name=$1 tl=$2 fn=$3
	shift 3
	CASE=$(printf '%s' "$fn-$*" | tr -c 'A-Za-z0-9_-' '_' | cut -c1-60)
	want "$name" || return 0
	echo "case: $name" >&2
	local before after
	before=$("$fn" old "$OLD" "$@")
	after=$("$fn" new "$NEW" "$@")
	row "$name" "$before" "$after" "$(tests "$tl")"
}

one '`--out ""` `--force` (cwd holds marker.txt)' "TestCheckTarget TestOutputNeverDestroysInputs" case_out_empty
one '`--out` = parent of `--model` `--force` (parent/model + parent/keep.txt)' "TestOutputNeverDestroysInputs TestCheckTarget" case_out_parent
one '`--out` = `--model` `--force`' "TestOutputNeverDestroysInputs TestCheckTarget" case_out_model same
one '`--model M/ --out ./M/.` `--force`' "TestOutputNeverDestroysInputs TestCheckTarget" case_out_model spelled
one '`--out` a device node (`mknod c 1 3`) `--force`' "TestOutputNeverDestroysInputs TestCheckTarget" case_out_device
one '`--out` inside `--model` (`M/pruned`) `--force`' "TestOutputNeverDestroysInputs TestCheckTarget" case_out_inside_model
one '`--out` = `--workdir` `--force`' "TestOutputNeverDestroysInputs TestCheckTarget" case_out_workdir
one '`--force` over a previous output, killed at the first rename touching OUT (strace fault injection)' "TestReplaceKilled TestReplace" case_kill_in_finish
one 'two concurrent runs with the same `--out` (A stopped while B runs)' "TestConcurrentWriterRefused TestOutputNeverDestroysInputs" case_concurrent_out
one 'two runs sharing `--workdir` (A stopped while B runs)' "TestSharedWorkdirRefused TestLockDir" case_shared_workdir
one 'corrupted checkpoint (one byte of layer 0) + `--resume`' "TestRunRefusesCorruptCheckpoint" case_corrupt_checkpoint
one 'wrapper-script plugin (child `sleep`) that exits 1 at start' "TestWrapperScriptWithChild TestPrunePluginSignalsAndTimeout" case_plugin exit
one 'wrapper-script plugin that prints garbage' "TestPrunePluginSignalsAndTimeout TestWrapperScriptWithChild" case_plugin garbage
one 'wrapper-script plugin that never answers (`--plugin-timeout 5s`)' "TestPrunePluginSignalsAndTimeout TestWrapperScriptWithChild" case_plugin silent
one 'wrapper-script plugin that works; its child lives on' "TestPrunePluginSignalsAndTimeout TestWrapperScriptWithChild" case_plugin ok
one 'SIGINT 3 s into a run whose wrapper plugin never answers (`--plugin-timeout 10m`)' "TestPrunePluginSignalsAndTimeout" case_plugin_signal INT
one 'SIGTERM 3 s into a run whose wrapper plugin never answers (`--plugin-timeout 10m`)' "TestPrunePluginSignalsAndTimeout" case_plugin_signal TERM
one '`plugins list` with a garbage-printing wrapper (`--timeout 3s`)' "TestPluginsListWrappers" case_plugins_list
one 'FIFO as `config.json` (prune)' "TestFIFOInputsRefused" case_fifo config.json
one 'FIFO as the shard `model.safetensors` (prune)' "TestFIFOInputsRefused" case_fifo model.safetensors
one '`merge-lora` with a NaN in `lora_A`' "TestMergeLoRANonFinite" case_merge_nan
one '`eval` of a model with a NaN weight' "TestInspectReportsUnsoundModels TestNonFinite" case_eval_nan
one '`inspect` of a model with a NaN weight' "TestInspectReportsUnsoundModels" case_inspect nan
one '`inspect` of a model whose `q_proj` is I16' "TestInspectReportsUnsoundModels" case_inspect int
one '`prune` of a model whose `model.norm.weight` is [127] (hidden 128)' "TestPruneChecksEveryTensorFirst" case_prune_model badnorm norm
one '`prune` of a model whose last layer'"'"'s `down_proj` is one row short' "TestPruneRefusesWrongShapeLinearUpFront TestPruneChecksEveryTensorFirst" case_prune_model badlast plain
one '`num_hidden_layers` 3 for a file with 4 layers' "TestPruneChecksEveryTensorFirst" case_prune_model short layers
one '`--pack --pack-format sparse-24-bitmask` with an unstructured pattern' "TestFlagRefusalsBeforeWork" case_flags --method magnitude --pack --pack-format sparse-24-bitmask
one '`--nsamples 9223372036854775807`' "TestFlagRefusalsBeforeWork TestNumericFlagValuesNeverPanic" case_flags --calib "$FIX/demo/calib.jsonl" --nsamples 9223372036854775807 --seqlen 32
one '`--calib-tokens … --seqlen -5`' "TestFlagRefusalsBeforeWork TestNumericFlagValuesNeverPanic" case_flags --calib-tokens "$FIX/tokens.safetensors" --calib-key ids --nsamples 2 --seqlen -5
one '`prune --seqlen -5` (text calibration)' "TestFlagRefusalsBeforeWork TestNumericFlagValuesNeverPanic" case_flags --calib "$SHARED/data/c4/c4_train00000_head1000.jsonl" --nsamples 2 --seqlen -5 --threads 1
one '`prune --threads -1`' "TestNumericFlagValuesNeverPanic TestEveryNumericFlagHasARule" case_flags --method magnitude --threads -1
one '`prune --chunk-tokens 0`' "TestFlagRefusalsBeforeWork TestNumericFlagValuesNeverPanic" case_flags --calib "$FIX/demo/calib.jsonl" --nsamples 2 --seqlen 32 --chunk-tokens 0
one '`--seqlen 48` above `max_position_embeddings` 32' "TestSeqLenWarning" case_seqlen_warning
one '`--nsamples 128` with a token file of 4 windows' "TestFlagRefusalsBeforeWork" case_flags --calib-tokens "$FIX/tokens.safetensors" --calib-key ids --nsamples 128 --threads 1
one '`demo --method bogus`' "TestFlagRefusalsBeforeWork" case_demo_bogus
one '`kill -9` mid-run with activations in a scratch file, then `--resume`' 'TestKilledRunLeavesNoActivationScratch' case_kill9_scratch
one '`kill -9` mid-run with a plugin metric, then a second run' "TestHostKilled" case_kill9_plugin

# ---- print --------------------------------------------------------------------------

echo "| case | before: $(basename "$OLD") | after: $(basename "$NEW") | test that covers it |"
echo "|---|---|---|---|"
cat "$ROWS"
