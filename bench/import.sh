#!/usr/bin/env bash
# The import benchmark (issue 11, item 8: 10 million events in under 10 minutes on PostgreSQL).
#
#   bench/import.sh [ROWS] [SUBJECTS]        # default 10,000,000 rows, ROWS / 10 subjects
#
# Generates a history (bench/import/gen.py: one event per row, increasing occurred_at, three
# policy revisions, 60% email and 40% user ids), creates the tenant of bench/import/tenant.toml in
# a fresh database, then times `consentry import --format csv` twice (the second run must add
# nothing), with the CPU time of the command and of PostgreSQL, and runs `consentry ledger
# verify`. Environment:
#   BIN          the binary (default target/release/consentry; build it with cargo build --release)
#   PG_ADMIN_URL a PostgreSQL superuser URL (default postgres://postgres@127.0.0.1:5432/postgres)
#   DB_NAME      the database to create (and drop first) (default consentry_import_bench)
#   BACKEND      pg (default) or sqlite
#   WORK         where the file and logs go (default a new temporary directory)
#   KEEP_DB=1    leave the database in place afterwards
#   FILE         a CSV file to import instead of a generated one (ROWS must be its number of rows;
#                e.g. the first 3 M rows of the 10 M file: head -n 3000001)
#   PG_CLUSTER=bulk  instead of PG_ADMIN_URL, a PostgreSQL cluster of its own (initdb in $WORK/pg,
#                port PG_PORT, default 5499; stopped at the end) configured as PostgreSQL's
#                manual advises for a machine of this size and a bulk load: shared_buffers a
#                quarter of the memory (§20.4.1), max_wal_size 16GB and checkpoint_timeout 30min
#                ("Populating a Database", §14.4.6); fsync, full_page_writes, synchronous_commit
#                and wal_level stay at their safe defaults.
set -euo pipefail
ROWS=${1:-10000000}
SUBJECTS=${2:-$(( ROWS / 10 ))}
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${BIN:-$HERE/../target/release/consentry}
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
DB_NAME=${DB_NAME:-consentry_import_bench}
BACKEND=${BACKEND:-pg}
WORK=${WORK:-$(mktemp -d)}
mkdir -p "$WORK"
FILE=${FILE:-$WORK/history-$ROWS-$SUBJECTS.csv}

log() { echo "== $*" >&2; }

if [[ ! -s "$FILE" ]]; then
  log "generating $ROWS rows over $SUBJECTS subjects into $FILE"
  python3 "$HERE/import/gen.py" "$ROWS" "$SUBJECTS" >"$FILE.tmp" && mv "$FILE.tmp" "$FILE"
fi
log "file: $(du -hL "$FILE" | cut -f1)"

if [[ $BACKEND == pg && ${PG_CLUSTER:-} == bulk ]]; then
  PG_PORT=${PG_PORT:-5499}
  PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
  as_pg() { if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
  rm -rf "$WORK/pg"; mkdir -p "$WORK/pg"
  [[ $(id -u) == 0 ]] && chown postgres "$WORK/pg" && chmod o+rx "$WORK"
  as_pg "$PG_BIN/initdb" -D "$WORK/pg/data" -U postgres --auth=trust >/dev/null
  quarter_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 4096 ))
  as_pg "$PG_BIN/pg_ctl" -D "$WORK/pg/data" -l "$WORK/pg/log" -w start \
    -o "-p $PG_PORT -k $WORK/pg -c listen_addresses=127.0.0.1 -c shared_buffers=${quarter_mb}MB -c max_wal_size=16GB -c checkpoint_timeout=30min" >/dev/null
  trap 'as_pg "$PG_BIN/pg_ctl" -D "$WORK/pg/data" -m fast stop >/dev/null' EXIT
  log "own cluster on port $PG_PORT: shared_buffers ${quarter_mb}MB, max_wal_size 16GB, checkpoint_timeout 30min"
  PG_ADMIN_URL=postgres://postgres@127.0.0.1:$PG_PORT/postgres
fi
if [[ $BACKEND == pg ]]; then
  psql -q -X -v ON_ERROR_STOP=1 "$PG_ADMIN_URL" -c "DROP DATABASE IF EXISTS $DB_NAME" -c "CREATE DATABASE $DB_NAME"
  export DATABASE_URL="${PG_ADMIN_URL%/*}/$DB_NAME"
  pg_cpu() {  # the CPU seconds (user + system) of every PostgreSQL process, from /proc
    local t=0 pid
    for pid in $(pgrep -x postgres || true) $(pgrep -f '^postgres:' || true); do
      [[ -r /proc/$pid/stat ]] && t=$(( t + $(awk '{print $14 + $15 + $16 + $17}' "/proc/$pid/stat" 2>/dev/null || echo 0) ))
    done
    echo "$t"
  }
else
  rm -f "$WORK/import.db"*
  export DATABASE_URL="sqlite://$WORK/import.db"
  pg_cpu() { echo 0; }
fi
export CONSENTRY__LOG=error CONSENTRY__SECRETS__KEY_FILE="$WORK/secrets.key" CONSENTRY__RECEIPTS__KEY_FILE="$WORK/receipts.key"
cd "$WORK"
"$BIN" migrate >/dev/null
"$BIN" apply "$HERE/import/tenant.toml" >/dev/null
TICKS=$(getconf CLK_TCK)

run() {  # label
  local before after start end
  before=$(pg_cpu)
  start=$(date +%s.%N)
  /usr/bin/time -f '%U %S %M' -o "$WORK/time-$1" "$BIN" import --format csv "$FILE" >"$WORK/summary-$1.json" 2>"$WORK/errors-$1.txt" || true
  end=$(date +%s.%N)
  after=$(pg_cpu)
  read -r user sys rss <"$WORK/time-$1"
  local wall; wall=$(echo "$end - $start" | bc)
  echo "$1: wall ${wall}s, $(echo "$ROWS / $wall" | bc) rows/s; command CPU $(echo "$user + $sys" | bc)s (max RSS $(( rss / 1024 )) MiB); PostgreSQL CPU $(echo "($after - $before) / $TICKS" | bc)s"
  echo "  summary: $(tr -d ' \n' <"$WORK/summary-$1.json")"
  if [[ -s "$WORK/errors-$1.txt" ]]; then echo "  stderr: $(head -c 300 "$WORK/errors-$1.txt")"; fi
}

wal_stats() {  # what the WAL held since the last reset: bytes, full-page images
  psql -X -At "$PG_ADMIN_URL" -c "SELECT 'WAL ' || pg_size_pretty(wal_bytes) || ' (' || round(wal_bytes / $ROWS) || ' bytes a row), ' || wal_fpi || ' full-page images' FROM pg_stat_wal"
}
[[ $BACKEND == pg ]] && psql -X -q -At "$PG_ADMIN_URL" -c "SELECT pg_stat_reset_shared('wal')" -c "CHECKPOINT" >/dev/null
run first
if [[ $BACKEND == pg ]]; then
  echo "  $(wal_stats)"
  psql -X -At "$DATABASE_URL" -c "SELECT '  ' || relname || ': ' || n_tup_upd || ' updates, ' || n_tup_hot_upd || ' in place (HOT)' FROM pg_stat_user_tables WHERE relname IN ('consent_states', 'data_subjects') ORDER BY relname"
fi
run second
if [[ $BACKEND == pg ]]; then
  echo "database size: $(psql -X -At "$DATABASE_URL" -c "SELECT pg_size_pretty(pg_database_size(current_database()))")"
  psql -X -At "$DATABASE_URL" -c "SELECT relname || ' ' || pg_size_pretty(pg_total_relation_size(oid)) FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace ORDER BY pg_total_relation_size(oid) DESC LIMIT 6" | sed 's/^/  /'
else
  echo "database size: $(du -ch "$WORK"/import.db* | tail -1 | cut -f1)"
fi
start=$(date +%s.%N)
"$BIN" ledger verify >"$WORK/verify.json" 2>&1 && ok=passed || ok=FAILED
echo "ledger verify: $ok in $(echo "$(date +%s.%N) - $start" | bc)s: $(tr -d ' \n' <"$WORK/verify.json" | head -c 300)"
if [[ $BACKEND == pg && -z ${KEEP_DB:-} ]]; then
  psql -q -X "$PG_ADMIN_URL" -c "DROP DATABASE $DB_NAME"
fi
