#!/usr/bin/env bash
# What PostgreSQL alone allows for the ledger's write shapes, against pgbench's single-row INSERT
# in the same run: no HTTP server, pgbench writes the rows a write batch writes. Creates database
# consentry_shapes (migrated by the release binary: shape A, the real schema; shapes.sql adds B
# and C), then alternates INSERT @32 with each shape, ROUNDS times, and prints writes a second
# and their ratio to INSERT, and the CPU the whole machine spent a write (PostgreSQL and pgbench:
# run it on a quiet machine), from which the rate at full CPU follows. See README.md.
#
#   bench/shapes/run.sh [--bin PATH]
#
# SHAPES (a a_no_receipts a_small_receipts b c), CLIENTS (2: the server's writer threads on
# PostgreSQL, each a batch in flight), SECS (10), ROUNDS (2), PG_BASE
# (postgres://postgres@127.0.0.1:5432). Not part of the test suite; run it on a quiet machine.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BIN="$REPO/target/release/consentry"
if [[ "${1:-}" == --bin ]]; then BIN=$2; shift 2; fi
[[ -x "$BIN" ]] || { echo "no executable at $BIN (cargo build --release, or --bin PATH)" >&2; exit 66; }
PG_BASE=${PG_BASE:-postgres://postgres@127.0.0.1:5432}
DB="$PG_BASE/consentry_shapes"
SECS=${SECS:-10} CLIENTS=${CLIENTS:-2}
psql -q -X -v ON_ERROR_STOP=1 "$PG_BASE/postgres" -c 'DROP DATABASE IF EXISTS consentry_shapes WITH (FORCE)' \
  -c 'CREATE DATABASE consentry_shapes' >/dev/null 2>&1
# In a directory of its own: `migrate` writes its key files under ./data.
KEYS=$(mktemp -d)
trap 'rm -rf "$KEYS"; psql -q -X "$PG_BASE/postgres" -c "DROP DATABASE IF EXISTS consentry_shapes WITH (FORCE)" >/dev/null 2>&1' EXIT
(cd "$KEYS" && DATABASE_URL="$DB" "$BIN" migrate >/dev/null 2>&1)
psql -q -X -v ON_ERROR_STOP=1 "$DB" -f "$HERE/functions.sql" -f "$HERE/shapes.sql" \
  -c 'CREATE TABLE bench_insert (id bigserial PRIMARY KEY, a text, b text, created_at timestamptz DEFAULT now())' >/dev/null
echo "PostgreSQL $(psql -X -At "$DB" -c 'SHOW server_version'); shapes at $CLIENTS clients in batches of 8 writes, INSERT at 32; ${SECS} s each"
# Busy and total clock ticks of the whole machine so far (/proc/stat: idle and iowait are not busy).
ticks() { awk '/^cpu / { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t; exit }' /proc/stat; }
# pgbench's tps for one run of script $1 on $2 clients; sets BUSY, the machine's busy fraction.
run() {
  local out b0 t0 b1 t1
  read -r b0 t0 < <(ticks)
  out=$(pgbench -n -M prepared -j "$(( $2 < 2 ? 1 : 2 ))" -c "$2" -T "$SECS" -f "$1" "$DB" 2>&1)
  read -r b1 t1 < <(ticks)
  BUSY=$(awk -v b=$(( b1 - b0 )) -v t=$(( t1 - t0 )) 'BEGIN { printf "%.3f", (t > 0 ? b / t : 0) }')
  TPS=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out")
  [[ -n "$TPS" ]] || { echo "pgbench failed on $1: $out" >&2; exit 1; }
}
CORES=$(nproc)
echo "Each figure: writes/s (÷ INSERT; µs of the machine's CPU a write, PostgreSQL and pgbench; the machine's busy share)"
printf '| round | INSERT @32 (tps; µs a row) |'; for s in ${SHAPES:-a a_no_receipts a_small_receipts b c}; do printf ' %s (writes/s) |' "$s"; done; echo
for round in $(seq 1 "${ROUNDS:-2}"); do
  run "$REPO/bench/pgbench/insert.sql" 32
  insert=$TPS
  awk -v r="$round" -v t="$TPS" -v b="$BUSY" -v c="$CORES" 'BEGIN { printf "| %s | %.0f (%.0f µs; %.0f%%) |", r, t, b * c * 1e6 / t, b * 100 }'
  for s in ${SHAPES:-a a_no_receipts a_small_receipts b c}; do
    run "$HERE/$s.pgb" "$CLIENTS"
    awk -v t="$TPS" -v i="$insert" -v b="$BUSY" -v c="$CORES" \
      'BEGIN { printf " %.0f (%.2f; %.0f µs; %.0f%%) |", t * 8, t * 8 / i, b * c * 1e6 / (t * 8), b * 100 }'
  done
  echo
done
