#!/usr/bin/env bash
# What PostgreSQL alone allows for the ledger's write shapes, against pgbench's single-row INSERT
# in the same run: no HTTP server, pgbench writes the rows a write batch writes. Creates database
# consentry_shapes (migrated by the release binary: shape A, the real schema; shapes.sql adds B
# and C), then alternates INSERT @32 with each shape, ROUNDS times, and prints writes a second
# and their ratio to INSERT. See README.md.
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
printf '| round | INSERT @32 (tps) |'; for s in ${SHAPES:-a a_no_receipts a_small_receipts b c}; do printf ' %s (writes/s, ÷ INSERT) |' "$s"; done; echo
for round in $(seq 1 "${ROUNDS:-2}"); do
  out=$(pgbench -n -M prepared -j 2 -c 32 -T "$SECS" -f "$REPO/bench/pgbench/insert.sql" "$DB" 2>&1)
  insert=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out")
  [[ -n "$insert" ]] || { echo "pgbench failed: $out" >&2; exit 1; }
  printf '| %s | %.0f |' "$round" "$insert"
  for s in ${SHAPES:-a a_no_receipts a_small_receipts b c}; do
    out=$(pgbench -n -M prepared -j "$(( CLIENTS < 2 ? 1 : 2 ))" -c "$CLIENTS" -T "$SECS" -f "$HERE/$s.pgb" "$DB" 2>&1)
    tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out")
    [[ -n "$tps" ]] || { echo "pgbench failed on $s: $out" >&2; exit 1; }
    awk -v t="$tps" -v i="$insert" 'BEGIN { printf " %.0f (%.2f) |", t * 8, t * 8 / i }'
  done
  echo
done
