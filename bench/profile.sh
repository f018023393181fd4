#!/usr/bin/env bash
# Where one workload's CPU goes: runs bench/run.sh for one backend, workload and connection count
# and, during its measured wrk run, reads the CPU time of the server, of PostgreSQL's processes
# and of wrk (/proc/<pid>/stat) over PROFILE_WINDOW seconds, and prints microseconds of CPU a
# request for each; on PostgreSQL, also the rate that PostgreSQL's and wrk's CPU alone allow.
# With PERF=1 it also records the server with `perf record --call-graph dwarf` (to
# perf-<workload>-<backend>.data in the current directory; `perf report -i …`): PERF_FREQ samples
# a second (199), PERF_CG the call-graph option ("--call-graph dwarf,16384"; " " for none).
#
#   bench/profile.sh [--bin PATH] BACKEND WORKLOAD [CONNS]
#
# BACKEND pg or sqlite; WORKLOAD one of bench/wrk/*.lua; CONNS 32 by default.
# Not part of the test suite: run it by hand, on a quiet machine, like run.sh.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN="target/release/consentry"
if [[ "${1:-}" == --bin ]]; then BIN=$2; shift 2; fi
[[ $# -ge 2 ]] || { sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 64; }
BACKEND=$1 WORKLOAD=$2 CONNS=${3:-32}
WINDOW=${PROFILE_WINDOW:-8}
[[ "$BIN" = /* ]] || BIN="$REPO/$BIN"
[[ -x "$BIN" ]] || { echo "no executable at $BIN" >&2; exit 66; }

LOG=$(mktemp /tmp/consentry-profile.XXXXXX)
trap 'rm -f "$LOG"' EXIT
# The measured run lasts the window and some slack on both sides.
BENCH_RESULTS=0 BENCH_CONNS=$CONNS BENCH_DURATION=$(( WINDOW + 6 ))s BENCH_WARMUP=${BENCH_WARMUP:-2s} \
  bash "$REPO/bench/run.sh" --bin "$BIN" --label profile --backends "$BACKEND" --workloads "$WORKLOAD" >"$LOG" 2>&1 &
RUN=$!
until pgrep -f 'wrk.*--latency' >/dev/null; do
  kill -0 "$RUN" 2>/dev/null || { cat "$LOG" >&2; exit 1; }
  sleep 0.2
done
sleep 2

# Clock ticks (utime + stime) of the given processes; a process that ended counts 0.
ticks() { local p s=0 t; for p in "$@"; do t=$(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0); s=$(( s + t )); done; echo "$s"; }
server=$(pgrep -f "$(basename "$BIN") serve" | head -1)
postgres() { pgrep -x postgres || true; }
s0=$(ticks "$server"); p0=$(ticks $(postgres)); w0=$(ticks $(pgrep -x wrk)); t0=$(date +%s.%N)
if [[ "${PERF:-0}" == 1 ]]; then
  perf record -q ${PERF_CG:---call-graph dwarf,16384} -F ${PERF_FREQ:-199} -p "$server" -o "perf-$WORKLOAD-$BACKEND.data" -- sleep "$WINDOW" >/dev/null 2>&1
else
  sleep "$WINDOW"
fi
s1=$(ticks "$server"); p1=$(ticks $(postgres)); w1=$(ticks $(pgrep -x wrk)); t1=$(date +%s.%N)
wait "$RUN" || true
rps=$(sed -n "s/.* $WORKLOAD c$CONNS: \([0-9.]*\) req\/s.*/\1/p" "$LOG")
[[ -n "$rps" ]] || { cat "$LOG" >&2; exit 1; }
hz=$(getconf CLK_TCK)
awk -v s=$(( s1 - s0 )) -v p=$(( p1 - p0 )) -v w=$(( w1 - w0 )) -v r="$rps" -v t0="$t0" -v t1="$t1" \
    -v hz="$hz" -v cores="$(nproc)" -v what="$BACKEND $WORKLOAD c$CONNS" 'BEGIN {
  dt = t1 - t0; n = r * dt; us = 1e6 / hz
  printf "%s: %.0f req/s; CPU a request: server %.0f us, PostgreSQL %.0f us, wrk %.0f us; %.0f%% of %d cores busy\n",
    what, r, s * us / n, p * us / n, w * us / n, 100 * (s + p + w) / hz / dt / cores, cores
  # The ceiling the storage shape sets: the rate if the server cost no CPU at all and PostgreSQL
  # and wrk had every core (what PostgreSQL spends a request does not shrink with the server).
  if (p > 0) printf "  if the server took no CPU: at most %.0f req/s (%d cores / (PostgreSQL + wrk))\n",
    cores * 1e6 / ((p + w) * us / n), cores }'
