#!/usr/bin/env bash
# Short run of every fuzz target (called by .ci/run; FUZZTIME sets the time per target).
#
# Go 1.26's fuzz coordinator can fail a target with a bare "context deadline exceeded" at the
# -fuzztime boundary when its workers are starved of CPU (go.dev/issue/75804, fixed in Go 1.27):
# a shutdown race, with no failing input. Such a run is retried, at most twice. Anything else
# fails at once: a failing input written under testdata/fuzz, a panic, a test error, a build
# failure, or the same bare deadline three times running.
#   .ci/fuzz.sh             run every target
#   .ci/fuzz.sh --selftest  check the classifier on the three kinds of log
set -uo pipefail
cd "$(dirname "$0")/.."

# classify LOG CORPUS_BEFORE CORPUS_AFTER: prints "flake" or "fail".
classify() {
  local log=$1 before=$2 after=$3
  if ! grep -q 'context deadline exceeded' "$log"; then echo fail; return; fi
  if grep -qE 'Failing input written|^panic:|fuzz: minimizing|_test\.go:[0-9]+:' "$log"; then
    echo fail; return
  fi
  if [ "$before" != "$after" ]; then echo fail; return; fi
  echo flake
}

if [ "${1:-}" = "--selftest" ]; then
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  cat >"$tmp/race" <<'LOG'
fuzz: elapsed: 10s, execs: 284505 (25781/sec), new interesting: 2 (total: 76)
--- FAIL: FuzzUnpackBitmask (10.11s)
    context deadline exceeded
FAIL
LOG
  cat >"$tmp/crash" <<'LOG'
--- FAIL: FuzzUnpackBitmask (0.31s)
    --- FAIL: FuzzUnpackBitmask (0.00s)
        bitmask_test.go:41: round trip differs
    Failing input written to testdata/fuzz/FuzzUnpackBitmask/5c1f
    To re-run:
    go test -run=FuzzUnpackBitmask/5c1f
FAIL
LOG
  cat >"$tmp/hang" <<'LOG'
fuzz: elapsed: 10s, execs: 0 (0/sec), new interesting: 0 (total: 74)
--- FAIL: FuzzUnpackBitmask (10.02s)
    fuzzing process hung or terminated unexpectedly: exit status 2
FAIL
LOG
  ok=1
  [ "$(classify "$tmp/race" a a)" = flake ] || { echo "selftest: bare deadline not a flake" >&2; ok=0; }
  [ "$(classify "$tmp/race" a b)" = fail ] || { echo "selftest: deadline with a new corpus file passed as a flake" >&2; ok=0; }
  [ "$(classify "$tmp/crash" a a)" = fail ] || { echo "selftest: written failing input passed as a flake" >&2; ok=0; }
  [ "$(classify "$tmp/hang" a a)" = fail ] || { echo "selftest: hung worker passed as a flake" >&2; ok=0; }
  [ $ok = 1 ] && echo "fuzz.sh selftest: ok"
  [ $ok = 1 ]; exit
fi

fuzztime="${FUZZTIME:-10s}"
log=$(mktemp); trap 'rm -f "$log"' EXIT
failed=0
for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for f in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //'); do
    for try in 1 2 3; do
      echo "-- $pkg $f (try $try)"
      before=$(ls -1 "$dir/testdata/fuzz/$f" 2>/dev/null | sort | md5sum)
      go test -run '^$' -fuzz "^$f\$" -fuzztime "$fuzztime" "$pkg" 2>&1 | tee "$log"
      rc=${PIPESTATUS[0]}
      [ "$rc" = 0 ] && break
      after=$(ls -1 "$dir/testdata/fuzz/$f" 2>/dev/null | sort | md5sum)
      if [ "$(classify "$log" "$before" "$after")" = flake ] && [ $try -lt 3 ]; then
        echo "fuzz: $f ended on Go's fuzztime deadline race with no failing input (go.dev/issue/75804); running it again" >&2
        continue
      fi
      echo "fuzz: $pkg $f failed" >&2
      failed=1
      break
    done
  done
done
exit $failed
