#!/usr/bin/env bash
# c15t (@c15t/backend 2.2.1, Node) on PostgreSQL, measured with wrk on the two request shapes of
# Consentry's bench (write, check). See NOTES.md.
#
#   ./run.sh
#
# Environment: C15T_DURATION (15s), C15T_WARMUP (3s), C15T_CONNS ("8 32"), C15T_DB (consentry_peer_c15t;
# dropped and created again by every run), C15T_PG (postgres://postgres@127.0.0.1:5432),
# C15T_NICE (0: niceness of node, npm and wrk), C15T_SEED (3000 subjects written before the
# runs), C15T_CHECK_PREFIX (/subjects/: the check's path, to try the non-2xx detection),
# C15T_INDEX=1 adds an index on consent("subjectId") after c15t's migration (c15t 2.2.1 creates
# none: its per-subject reads scan the consent table; off by default = c15t as shipped),
# C15T_KEEP_DB=1 leaves the database in place at the end (it is dropped otherwise),
# C15T_RESULTS_TSV=FILE also writes the measurements there, one a line (workload, conns, req/s,
# p50 ms, p99 ms, requests, non-2xx, socket errors, consent rows before): bench/run.sh --peers.
# Exit status: 0; 1 when the setup failed; 2 when a measurement had non-2xx answers or socket errors.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DURATION=${C15T_DURATION:-15s}
WARMUP=${C15T_WARMUP:-3s}
CONNS=${C15T_CONNS:-"8 32"}
DB=${C15T_DB:-consentry_peer_c15t}
PG=${C15T_PG:-postgres://postgres@127.0.0.1:5432}
NICE=${C15T_NICE:-0}
SEED=${C15T_SEED:-3000}
CHECK_PREFIX=${C15T_CHECK_PREFIX:-/subjects/}
[[ "$DB" =~ ^[a-z_][a-z0-9_]*$ ]] || { echo "C15T_DB: lower-case letters, digits, _ only" >&2; exit 64; }
command -v wrk >/dev/null || { echo "wrk is not installed" >&2; exit 1; }

N() { nice -n "$NICE" "$@"; }
# shellcheck source=bench/lib.sh
source "$HERE/../../lib.sh"

WORK=$(mktemp -d /tmp/c15t-bench.XXXXXX)
SERVER_PID=""
cleanup() {
  stop_server
  if [[ "${C15T_KEEP_DB:-0}" != 1 ]]; then
    psql -q -X "$PG/postgres" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# (a) dependencies, exactly as locked.
if [[ ! -d "$HERE/node_modules" ]]; then
  log "npm ci"
  (cd "$HERE" && N npm ci --no-audit --no-fund --loglevel=error) >&2
fi

# (b) a fresh database; the server creates c15t's schema at start (its own migrator).
log "database $DB: drop, create"
psql -q -X -v ON_ERROR_STOP=1 "$PG/postgres" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" \
  -c "CREATE DATABASE $DB" >/dev/null
DB_URL="$PG/$DB"

# (c) the server on a free port.
PORT=$(free_port)
BASE="http://127.0.0.1:$PORT"
# env + nice exec into node: $! is the server's own pid (for the kill and /proc/PID/status).
env C15T_DATABASE_URL="$DB_URL" PORT="$PORT" nice -n "$NICE" node "$HERE/server.mjs" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 150); do
  if curl -sf -o /dev/null "$BASE/status"; then break; fi
  kill -0 "$SERVER_PID" 2>/dev/null || { echo "the server exited; its log:" >&2; cat "$WORK/server.log" >&2; exit 1; }
  sleep 0.2
done
curl -sf -o /dev/null "$BASE/status" || { echo "the server did not answer; its log:" >&2; cat "$WORK/server.log" >&2; exit 1; }
[[ "$(cat "/proc/$SERVER_PID/comm")" == node ]] || { echo "pid $SERVER_PID is not node" >&2; exit 1; }
log "server pid $SERVER_PID on $BASE ($(head -1 "$WORK/server.log"))"

if [[ "${C15T_INDEX:-0}" == 1 ]]; then
  log "adding index consent(subjectId) (not part of c15t's schema)"
  psql -q -X -v ON_ERROR_STOP=1 "$DB_URL" -c 'CREATE INDEX bench_consent_subject ON consent ("subjectId")' >/dev/null
fi

# (d) seed subjects over the public write (untimed), then a sanity check of the check endpoint.
log "seeding $SEED subjects"
N node "$HERE/seed.mjs" "$BASE" "$SEED" >"$WORK/ids.txt"
first=$(head -1 "$WORK/ids.txt")
out=$(curl -sf "$BASE/subjects/$first?type=cookie_banner") || { echo "sanity check: GET /subjects/$first failed" >&2; exit 1; }
grep -q '"isValid":true' <<<"$out" || { echo "sanity check: $out" >&2; exit 1; }

# (e) wrk: warm-up (not counted), then the measured run.
psql_db() { psql -X -At "$DB_URL" -c "$1"; }
RESULTS="$WORK/results.tsv"; : >"$RESULTS"
run_wrk() {  # WORKLOAD CONNS SCRIPT ARGS...
  local w=$1 c=$2 script=$3; shift 3
  local rows; rows=$(psql_db 'SELECT count(*) FROM consent')
  N wrk -t2 -c"$c" -d"$WARMUP" --timeout 30s -s "$HERE/$script" "$BASE" -- "$@" >"$WORK/warmup.out" 2>&1 || true
  local out="$WORK/wrk-$w-c$c.out"
  N wrk -t2 -c"$c" -d"$DURATION" --timeout 30s -s "$HERE/$script" "$BASE" -- "$@" >"$out" 2>&1 ||
    { echo "wrk failed:" >&2; cat "$out" >&2; exit 1; }
  local line; line=$(grep '^RESULT ' "$out" || true)
  [[ -n "$line" ]] || { echo "no RESULT line from wrk:" >&2; cat "$out" >&2; exit 1; }
  echo "$line" >&2
  get() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$line"; }
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$w" "$c" "$(get rps)" "$(get p50_ms)" "$(get p99_ms)" \
    "$(get requests)" "$(get non2xx)" "$(get socket_errors)" "$rows" >>"$RESULTS"
  if (( $(get non2xx) + $(get socket_errors) > 0 )); then
    touch "$WORK/flagged"
    echo "  !! $w c$c: $(get non2xx) non-2xx, $(get socket_errors) socket errors; $(grep '^FIRST_ERROR' "$out" || true)" >&2
  fi
}
nonce() { head -c 256 /dev/urandom | LC_ALL=C tr -dc '1-9A-HJ-NP-Za-km-z' | cut -c1-8; }
for c in $CONNS; do log "write c$c"; run_wrk write "$c" c15t_write.lua "$(nonce)"; done
for c in $CONNS; do log "check c$c"; run_wrk check "$c" c15t_check.lua "$WORK/ids.txt" "$CHECK_PREFIX"; done

# (f) the table and the server's peak memory; (g) the server stopped.
RSS=$(awk '/^VmHWM/ { printf "%.1f MiB", $2 / 1024 }' "/proc/$SERVER_PID/status")
NICENESS=$(ps -o ni= -p "$SERVER_PID" | tr -d ' ')
# utime + stime of the server process (fields 14, 15 of /proc/PID/stat; the name field has no space).
CPU=$(awk -v hz="$(getconf CLK_TCK)" '{ printf "%.1f s", ($14 + $15) / hz }' "/proc/$SERVER_PID/stat")
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
ROWS=$(psql_db 'SELECT count(*) FROM consent')
stop_server
ERRLINES=$(grep -vc -e '^c15t 2.2.1 listening' -e '^c15t: migrated' "$WORK/server.log" || true)
echo
echo "c15t $(node -p "require('$HERE/node_modules/@c15t/backend/package.json').version") on PostgreSQL ($DB), node $(node -v), 1 process, pool 8, extra index: $([[ "${C15T_INDEX:-0}" == 1 ]] && echo 'consent("subjectId")' || echo none); wrk -t2, ${DURATION} after ${WARMUP} warm-up; $(nproc) cores, the server at nice $NICENESS"
echo
echo "| workload | conns | req/s | p50 ms | p99 ms | requests | non2xx | socket errors | consent rows before |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
while IFS=$'\t' read -r w c rps p50 p99 n bad sock rows; do
  echo "| $w | $c | $rps | $p50 | $p99 | $n | $bad | $sock | $rows |"
done <"$RESULTS"
echo
echo "Server peak RSS (VmHWM): $RSS. Server CPU time (whole run, seeding included): $CPU. Load average at the end: $LOAD."
echo "Consent rows at the end: $ROWS. Server log lines besides start-up: $ERRLINES."
if (( ERRLINES > 0 )); then echo "Server log (first lines):"; grep -v -e '^c15t 2.2.1 listening' -e '^c15t: migrated' "$WORK/server.log" | head -5; fi
if [[ -n "${C15T_RESULTS_TSV:-}" ]]; then cp "$RESULTS" "$C15T_RESULTS_TSV"; fi
if [[ -e "$WORK/flagged" ]]; then echo "FAILED: some answers were non-2xx or socket errors (see above)." >&2; exit 2; fi
