#!/usr/bin/env bash
# Consent analytics at scale (issue 13): loads N subjects with 10 events each (bench/load/pg.sql,
# as bench/run.sh --scale does) into a fresh PostgreSQL database, starts the server, times the
# analytics worker's roll-up of every event, then times a year of GET /v1/analytics/consents
# (day, week and month buckets, and with site, region and purpose filters) and of
# GET /v1/analytics/opt-outs, 20 requests each, over HTTP with curl.
#
#   bench/analytics.sh [--bin PATH] [--scale N] [--reuse]   (defaults: target/release/consentry, 1000000)
# --reuse keeps the database of the last run (its events) and only empties the rollups.
#
# BENCH_PG: the server (postgres://postgres@127.0.0.1:5432); drops and creates consentry_analytics_bench.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN="$REPO/target/release/consentry"; SCALE=1000000; REUSE=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --bin) BIN=$2; shift 2 ;;
    --scale) SCALE=$2; shift 2 ;;
    --reuse) REUSE=1; shift ;;
    *) echo "usage: bench/analytics.sh [--bin PATH] [--scale N]" >&2; exit 64 ;;
  esac
done
[[ "$SCALE" =~ ^[0-9]+$ ]] || { echo "--scale takes a number" >&2; exit 64; }
PG_BASE=${BENCH_PG:-postgres://postgres@127.0.0.1:5432}
DB_URL="$PG_BASE/consentry_analytics_bench"
REVISION=2026-01-01
PORT=${BENCH_PORT:-18431}
BASE="http://127.0.0.1:$PORT"
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

export DATABASE_URL=$DB_URL CONSENTRY__LOG=error
serve() { "$BIN" serve --listen "127.0.0.1:$PORT" & SERVER=$!; until curl -sf "$BASE/healthz" >/dev/null; do sleep 0.2; done; }
api() { curl -sf -X "$1" "$BASE$2" -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' ${3:+-d "$3"}; }
if (( REUSE )); then
  psql -q -X "$DB_URL" -c 'DELETE FROM analytics_cursors' -c 'DELETE FROM analytics_decisions' -c 'DELETE FROM analytics_submissions'
  TOKEN=$("$BIN" tokens issue --tenant bench --scope admin 2>/dev/null)
  SITE_ID=$(psql -X -At "$DB_URL" -c "SELECT id FROM sites LIMIT 1")
  SCALE=$(psql -X -At "$DB_URL" -c "SELECT count(*) FROM data_subjects")
else
psql -q -X "$PG_BASE/postgres" -c 'DROP DATABASE IF EXISTS consentry_analytics_bench WITH (FORCE)' -c 'CREATE DATABASE consentry_analytics_bench'
"$BIN" migrate 2>/dev/null
TOKEN=$("$BIN" tenants create bench | sed 's/.*"token":"\([^"]*\)".*/\1/')
TENANT_ID=$(psql -X -At "$DB_URL" -c "SELECT id FROM tenants WHERE slug = 'bench'")

serve
SITE_ID=$(api POST /v1/sites '{"name":"bench.example","origins":["https://bench.example"]}' | sed 's/.*"id":"\([^"]*\)".*/\1/')
for p in statistics marketing social_media; do
  api PUT "/v1/purposes/$p" "{\"title\":\"$p\",\"description\":\"$p\",\"kind\":\"cookie_category\",\"consent_model\":\"opt_in\",\"legal_basis\":\"consent\",\"gpc_applies\":false}" >/dev/null
done
api POST /v1/policies/privacy/revisions "{\"revision_date\":\"$REVISION\",\"url\":\"https://bench.example/privacy\",\"requires_reconsent\":false}" >/dev/null
kill "$SERVER"; wait "$SERVER" 2>/dev/null || true

log "loading $SCALE subjects ($(( SCALE * 10 )) events)"
start=$(date +%s.%N)
for (( from = 1; from <= SCALE; from += 100000 )); do
  to=$(( from + 99999 )); (( to > SCALE )) && to=$SCALE
  sed -e "s/@FROM@/$from/g" -e "s/@TO@/$to/g" -e "s/@TENANT_ID@/$TENANT_ID/g" -e "s/@SITE_ID@/$SITE_ID/g" \
    -e "s/@REVISION@/$REVISION/g" "$REPO/bench/load/pg.sql" | psql -q -X -v ON_ERROR_STOP=1 "$DB_URL" >/dev/null
done
psql -q -X "$DB_URL" -c 'VACUUM ANALYZE' >/dev/null
log "loaded in $(echo "$(date +%s.%N) - $start" | bc) s"
fi

FROM=$(date -u -d '364 days ago' +%F); TO=$(date -u +%F)
start=$(date +%s.%N)
serve
until api GET "/v1/analytics/consents?from=$FROM&to=$TO&interval=month" | grep -q '"pending_counted":0,"pending_events":0'; do sleep 1; done
ROLLUP=$(echo "$(date +%s.%N) - $start" | bc)
log "rolled up $(( SCALE * 10 )) events in $ROLLUP s ($(psql -X -At "$DB_URL" -c 'SELECT count(*) FROM analytics_decisions') decision rows, $(psql -X -At "$DB_URL" -c 'SELECT count(*) FROM analytics_submissions') submission rows)"

echo "| request (a year, $(( SCALE * 10 )) events) | min ms | median ms | max ms |"
echo "| --- | --- | --- | --- |"
for q in "consents?interval=day" "consents?interval=week" "consents?interval=month" \
         "consents?interval=day&site=$SITE_ID&region=US-CA&purpose=statistics" "opt-outs?format=json"; do
  times=$(for _ in $(seq 20); do
    curl -s -o /dev/null -w '%{time_total}\n' "$BASE/v1/analytics/${q}&from=$FROM&to=$TO" -H "Authorization: Bearer $TOKEN"
  done | awk '{ printf "%.1f\n", $1 * 1000 }' | sort -n)
  echo "| \`/v1/analytics/${q}\` | $(head -1 <<<"$times") | $(sed -n 10p <<<"$times") | $(tail -1 <<<"$times") |"
done
kill "$SERVER"; wait "$SERVER" 2>/dev/null || true
