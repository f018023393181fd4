#!/usr/bin/env bash
# Consentry HTTP benchmarks (wrk) on PostgreSQL and SQLite, with pgbench on the same PostgreSQL
# as the limit to compare with. See bench/README.md.
#
#   bench/run.sh [--bin PATH] [--label NAME] [--backends pg,sqlite]
#                [--workloads write,update,check,visitor_read,config,bulk] [--scale N] [--peers c15t]
#
# --peers c15t also measures c15t (bench/peers/c15t, needs Node and npm) on the same PostgreSQL,
# last, and sets Consentry's PostgreSQL figures against it.
# Environment: BENCH_DURATION (15s), BENCH_WARMUP (3s), BENCH_CONNS ("8 32"),
# BENCH_BULK_CONNS (1: bulk checks at once), BENCH_PG (postgres://postgres@127.0.0.1:5432), BENCH_KEEP=1 keeps the work directory, BENCH_PORTS (20000-39999: the server's port),
# BENCH_RESULTS=0 writes no file to bench/results/ (bench/profile.sh). PGSSLMODE applies to the
# server's connections and pgbench's alike (the report says which was in force).
# BENCH_PG_LOCALE (e.g. en_US.UTF-8, the official postgres image's) creates Consentry's database
# with that locale (its collation orders the text keys); the cluster's default otherwise.
# BENCH_PG_SQL=FILE runs FILE on the PostgreSQL database after the migrations (a schema change
# measured without a build).
# Exit status: 0; 1 when a backend failed; 2 when a measurement had non-2xx answers or socket errors (flagged in the table).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH="$REPO/bench"

BIN="target/release/consentry"
LABEL="run"
BACKENDS="pg,sqlite"
WORKLOADS="write,update,check,visitor_read,config,bulk"
SCALE=0
PEERS=""

usage() { sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --bin) BIN=$2; shift 2 ;;
    --label) LABEL=$2; shift 2 ;;
    --backends) BACKENDS=$2; shift 2 ;;
    --workloads) WORKLOADS=$2; shift 2 ;;
    --scale) SCALE=$2; shift 2 ;;
    --peers) PEERS=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option: $1" >&2; usage >&2; exit 64 ;;
  esac
done

DURATION=${BENCH_DURATION:-15s}
WARMUP=${BENCH_WARMUP:-3s}
CONNS=${BENCH_CONNS:-"8 32"}
BULK_CONNS=${BENCH_BULK_CONNS:-1}
PG_BASE=${BENCH_PG:-postgres://postgres@127.0.0.1:5432}
REVISION="2026-01-01"     # the bench policy revision, in force (dated in the past)
SEED_VISITORS=3000        # visitors written over HTTP before the read workloads (not timed)
SAMPLE_IDS=100000         # at most this many loaded visitors are handed to wrk (--scale)
BULK_SUBJECTS=10000

[[ "$SCALE" =~ ^[0-9]+$ ]] || { echo "--scale takes a number" >&2; exit 64; }
[[ "$BULK_CONNS" =~ ^[1-9][0-9]*$ ]] || { echo "BENCH_BULK_CONNS takes a number from 1" >&2; exit 64; }
[[ "$LABEL" =~ ^[A-Za-z0-9._-]+$ ]] || { echo "--label: letters, digits, . _ - only" >&2; exit 64; }
for b in ${BACKENDS//,/ }; do
  [[ "$b" == pg || "$b" == sqlite ]] || { echo "unknown backend '$b' (pg, sqlite)" >&2; exit 64; }
done
for w in ${WORKLOADS//,/ }; do
  [[ -f "$BENCH/wrk/$w.lua" && "$w" != common ]] || { echo "unknown workload '$w'" >&2; exit 64; }
done

# The binary: relative paths are relative to the repository; the default one is built if absent.
[[ "$BIN" = /* ]] || BIN="$REPO/$BIN"
if [[ ! -x "$BIN" ]]; then
  if [[ "$BIN" == "$REPO/target/release/consentry" ]]; then
    echo "== building $BIN (cargo build --release --locked)" >&2
    (cd "$REPO" && cargo build --release --locked)
  else
    echo "no executable at $BIN" >&2; exit 66
  fi
fi

# Seconds from a wrk-style duration (15s, 2m) for pgbench -T.
seconds() {
  case "$1" in
    *m) echo $(( ${1%m} * 60 )) ;;
    *h) echo $(( ${1%h} * 3600 )) ;;
    *s) echo "${1%s}" ;;
    *) echo "$1" ;;
  esac
}

WORK=$(mktemp -d /tmp/consentry-bench.XXXXXX)
SERVER_PID=""
# shellcheck source=bench/lib.sh
source "$BENCH/lib.sh"
cleanup() {
  stop_server
  if [[ "${BENCH_KEEP:-0}" == 1 ]]; then echo "work directory kept: $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM


# cli ARGS...: the binary's command line on $DATABASE_URL, from the work directory (so that no
# consentry.toml of the caller's directory is read).
cli() { (cd "$WORK" && CONSENTRY__LOG=error "$BIN" "$@"); }

# The rate limits are lifted: wrk sends from one address far more than a real client does, and
# this measures the service, not the limiter. Binaries older than the limits have no such
# setting (and refuse unknown ones).
LIMITS_OFF=()
if grep -qa 'trusted_proxy_hops' "$BIN"; then LIMITS_OFF=(CONSENTRY__LIMITS__ENABLED=false); fi

start_server() {  # backend
  PORT=$(free_port)
  BASE="http://127.0.0.1:$PORT"
  (cd "$WORK" && exec env CONSENTRY__LOG=error "${LIMITS_OFF[@]}" \
      "$BIN" serve --listen "127.0.0.1:$PORT") >>"$WORK/server-$1.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 150); do
    if curl -sf -o /dev/null "$BASE/readyz"; then return 0; fi
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.2
  done
  echo "the server did not start; its log:" >&2; cat "$WORK/server-$1.log" >&2; exit 1
}

# api METHOD PATH [BODY]: an admin call; fails on a non-2xx answer.
api() {
  local out code
  out=$(curl -s -w '\n%{http_code}' -X "$1" "$BASE$2" -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/json' ${3:+-d "$3"})
  code=${out##*$'\n'}
  if [[ "$code" != 2?? ]]; then echo "$1 $2 -> $code: ${out%$'\n'*}" >&2; exit 1; fi
  printf '%s' "${out%$'\n'*}"
}

setup_tenant() {
  cli migrate >/dev/null
  if [[ -n "${BENCH_PG_SQL:-}" && "$DATABASE_URL" == postgres* ]]; then
    psql -q -X -v ON_ERROR_STOP=1 "$DATABASE_URL" -f "$BENCH_PG_SQL" >/dev/null
  fi
  TOKEN=$(cli tenants create bench | jq -r .token)
  TENANT_ID=""
}

setup_site() {
  local site
  site=$(api POST /v1/sites '{"name":"bench.example","origins":["https://bench.example"]}')
  SITE_KEY=$(jq -r .site_key <<<"$site")
  SITE_ID=$(jq -r .id <<<"$site")
  local p
  for p in statistics marketing social_media; do
    api PUT "/v1/purposes/$p" "{\"title\":\"$p\",\"description\":\"Bench purpose $p\",\"kind\":\"cookie_category\",
      \"consent_model\":\"opt_in\",\"legal_basis\":\"consent\",\"gpc_applies\":false,\"max_age_days\":395,\"regions\":{}}" >/dev/null
  done
  api POST /v1/policies/privacy/revisions \
    "{\"revision_date\":\"$REVISION\",\"url\":\"https://bench.example/privacy\",\"requires_reconsent\":false}" >/dev/null
}

# uuids N: N random hyphenated UUIDs (version 4), one a line.
uuids() {
  od -An -tx1 -v -N $(( 16 * $1 )) /dev/urandom | tr -d ' \n' | fold -w32 |
    awk '{ printf "%s-%s-4%s-8%s-%s\n", substr($0,1,8), substr($0,9,4), substr($0,14,3), substr($0,18,3), substr($0,21,12) }'
}

# Writes $SEED_VISITORS visitors over the public write endpoint, 4 curl processes of 100
# requests each at a time; their ids go to $1. Not timed. Fails unless every answer is 201.
seed_visitors() {
  local ids=$1 dir="$WORK/seed" codes
  rm -rf "$dir"; mkdir -p "$dir"
  uuids "$SEED_VISITORS" >"$ids"
  split -l 100 -d -a 3 "$ids" "$dir/ids."
  local f
  for f in "$dir"/ids.*; do
    awk -v base="$BASE" -v key="$SITE_KEY" -v rev="$REVISION" '
      NR > 1 { print "next" }
      { printf "url = \"%s/v1/sites/%s/consents\"\n", base, key
        print "header = \"Origin: https://bench.example\""
        print "header = \"Content-Type: application/json\""
        printf "data = \"{\\\"visitor_id\\\":\\\"%s\\\",\\\"choices\\\":{\\\"statistics\\\":%s,\\\"marketing\\\":true,\\\"social_media\\\":false},\\\"policy_revision\\\":\\\"%s\\\",\\\"source\\\":\\\"banner\\\"}\"\n", $0, (NR % 2 ? "true" : "false"), rev
        print "output = \"/dev/null\""
        print "write-out = \"%{http_code}\\n\"" }' "$f" >"$f.curl"
  done
  codes=$(printf '%s\n' "$dir"/ids.*.curl | xargs -P 4 -n 1 curl -s -K)
  local bad
  bad=$(grep -vc '^201$' <<<"$codes" || true)
  if [[ "$bad" != 0 ]]; then echo "seeding visitors: $bad answers were not 201: $(grep -v '^201$' <<<"$codes" | sort | uniq -c | tr '\n' ' ')" >&2; exit 1; fi
}

# load BACKEND: $SCALE subjects with 10 events each, in batches of 100,000, straight into the
# database (bench/load/*.sql); sets LOAD_SECS.
load() {
  local backend=$1 batch=100000 from to start sql
  start=$(date +%s.%N)
  for (( from = 1; from <= SCALE; from += batch )); do
    to=$(( from + batch - 1 )); if (( to > SCALE )); then to=$SCALE; fi
    sql=$(sed -e "s/@FROM@/$from/g" -e "s/@TO@/$to/g" -e "s/@TENANT_ID@/$TENANT_ID/g" \
      -e "s/@SITE_ID@/$SITE_ID/g" -e "s/@REVISION@/$REVISION/g" "$BENCH/load/$backend.sql")
    if [[ $backend == pg ]]; then
      psql -q -X -v ON_ERROR_STOP=1 "$DB_URL" <<<"$sql" >/dev/null
    else
      sqlite3 -bail "$SQLITE_FILE" <<<"PRAGMA synchronous = OFF; PRAGMA cache_size = -262144; PRAGMA temp_store = MEMORY;
$sql" >/dev/null
    fi
    log "  loaded subjects $from..$to"
  done
  if [[ $backend == pg ]]; then
    psql -q -X -v ON_ERROR_STOP=1 "$DB_URL" -c 'VACUUM ANALYZE' >/dev/null
  else
    sqlite3 -bail "$SQLITE_FILE" 'ANALYZE; PRAGMA wal_checkpoint(TRUNCATE);' >/dev/null
  fi
  LOAD_SECS=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
}

# sample_loaded BACKEND: up to $SAMPLE_IDS visitor ids of the loaded subjects, one a line.
sample_loaded() {
  local q="SELECT substr(identifier, 9) FROM subject_identifiers WHERE tenant_id = '$TENANT_ID'
           AND identifier LIKE 'visitor:%' ORDER BY random() LIMIT $SAMPLE_IDS"
  if [[ $1 == pg ]]; then psql -X -At "$DB_URL" -c "$q"; else sqlite3 "$SQLITE_FILE" "$q"; fi
}

# sanity_check BACKEND IDS: the first seeded visitor (and, with --scale, the last id of IDS, a
# loaded one) are known to the server: a decided status, their state, 10 events when loaded.
sanity_check() {
  local seeded loaded out
  seeded=$(head -1 "$WORK/seeded-$1.txt"); loaded=$(tail -1 "$2")
  out=$(api POST /v1/consents/check "{\"purpose\":\"statistics\",\"subjects\":[\"visitor:$seeded\",\"visitor:$loaded\"]}")
  if jq -e '[.results[].status] | any(. == "not_asked" or . == "stale" or . == "expired")' <<<"$out" >/dev/null; then
    echo "sanity check failed ($1): $out" >&2; exit 1
  fi
  out=$(curl -sf -H 'Origin: https://bench.example' "$BASE/v1/sites/$SITE_KEY/visitors/$loaded/consents") ||
    { echo "sanity check failed ($1): visitor_read of $loaded" >&2; exit 1; }
  [[ $(jq -r .needs_consent <<<"$out") == false ]] || { echo "sanity check failed ($1): $out" >&2; exit 1; }
  if (( SCALE > 0 )); then
    local n; n=$(api GET "/v1/subjects/visitor:$loaded/events" | jq '.events | length')
    [[ $n == 10 ]] || { echo "sanity check failed ($1): $n events for loaded visitor $loaded" >&2; exit 1; }
  fi
}

RESULTS="$WORK/results.tsv"   # backend workload conns rps p50 p99 requests errors
: >"$RESULTS"

# run_wrk BACKEND WORKLOAD THREADS CONNS ARGS...: warm-up, then the measured run.
run_wrk() {
  local backend=$1 w=$2 t=$3 c=$4; shift 4
  local extra=(); [[ $w == write || $w == update ]] && extra=("$SITE_KEY" "$REVISION")
  local nonce; nonce() { od -An -tx1 -N4 /dev/urandom | tr -d ' \n'; }
  wrk -t"$t" -c"$c" -d"$WARMUP" --timeout 30s -s "$BENCH/wrk/$w.lua" "$BASE" -- "${extra[@]}" "$@" \
    ${extra:+$(nonce)} >"$WORK/warmup.out" 2>&1 || true
  local out="$WORK/wrk-$backend-$w-c$c.out"
  wrk -t"$t" -c"$c" -d"$DURATION" --timeout 30s --latency -s "$BENCH/wrk/$w.lua" "$BASE" -- "${extra[@]}" "$@" \
    ${extra:+$(nonce)} >"$out" 2>&1 || { echo "wrk failed:" >&2; cat "$out" >&2; exit 1; }
  local line; line=$(grep '^RESULT ' "$out" || true)
  [[ -n "$line" ]] || { echo "no RESULT line from wrk:" >&2; cat "$out" >&2; exit 1; }
  get() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$line"; }
  local errors=$(( $(get non2xx) + $(get socket_errors) ))
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$backend" "$w" "$c" "$(get rps)" "$(get p50_ms)" "$(get p99_ms)" \
    "$(get requests)" "$errors" >>"$RESULTS"
  log "  $w c$c: $(get rps) req/s, p50 $(get p50_ms) ms, p99 $(get p99_ms) ms, $errors errors"
  if (( errors > 0 )); then
    touch "$WORK/flagged"
    echo "  !! $w c$c: $(get non2xx) non-2xx, $(get socket_errors) socket errors; $(grep '^FIRST_ERROR' "$out" || true)" >&2
  fi
}

# bench_backend BACKEND: runs in a subshell (a failure ends only that backend); what the report
# says about it besides the table goes to $WORK/note-BACKEND.
bench_backend() {
  local backend=$1
  log "$backend: setting up"
  if [[ $backend == pg ]]; then
    DB_URL="$PG_BASE/consentry_bench"
    local create='CREATE DATABASE consentry_bench'
    [[ -n "${BENCH_PG_LOCALE:-}" ]] && create+=" TEMPLATE template0 LOCALE '$BENCH_PG_LOCALE'"
    psql -q -X -v ON_ERROR_STOP=1 "$PG_BASE/postgres" -c 'DROP DATABASE IF EXISTS consentry_bench WITH (FORCE)' \
      -c "$create" >/dev/null
    export DATABASE_URL="$DB_URL"
  else
    mkdir -p "$WORK/sqlite"
    SQLITE_FILE="$WORK/sqlite/consentry.db"
    export DATABASE_URL="sqlite://$SQLITE_FILE"
  fi
  setup_tenant
  start_server "$backend"
  setup_site
  local q="SELECT id FROM tenants WHERE slug = 'bench'"
  if [[ $backend == pg ]]; then TENANT_ID=$(psql -X -At "$DB_URL" -c "$q"); else TENANT_ID=$(sqlite3 "$SQLITE_FILE" "$q"); fi

  local loaded="-"
  if (( SCALE > 0 )); then
    log "$backend: loading $SCALE subjects x 10 events"
    stop_server
    load "$backend"
    loaded="$LOAD_SECS s"
    log "$backend: loaded $SCALE subjects in $LOAD_SECS s"
    start_server "$backend"
  fi

  local ids="$WORK/ids-$backend.txt"
  log "$backend: writing $SEED_VISITORS visitors"
  seed_visitors "$WORK/seeded-$backend.txt"
  cp "$WORK/seeded-$backend.txt" "$ids"
  if (( SCALE > 0 )); then sample_loaded "$backend" >>"$ids"; fi
  sanity_check "$backend" "$ids"
  # The bulk body: 10,000 distinct subjects, known ones first (all of them at scale 0: 3,000),
  # then unknown ones (not_asked, looked up all the same).
  local body="$WORK/bulk-$backend.json" known
  known=$(wc -l <"$ids"); if (( known > BULK_SUBJECTS )); then known=$BULK_SUBJECTS; fi
  { shuf -n "$known" "$ids"; uuids $(( BULK_SUBJECTS - known )); } | sed 's/^/"visitor:/; s/$/"/' | paste -sd, |
    sed 's/^/{"purpose":"statistics","subjects":[/; s/$/]}/' >"$body"

  local w c
  for w in ${WORKLOADS//,/ }; do
    case $w in
      write) for c in $CONNS; do run_wrk "$backend" write 2 "$c"; done ;;
      update) for c in $CONNS; do run_wrk "$backend" update 2 "$c" "$ids"; done ;;
      check) for c in $CONNS; do run_wrk "$backend" check 2 "$c" "$ids" "$TOKEN"; done ;;
      visitor_read) for c in $CONNS; do run_wrk "$backend" visitor_read 2 "$c" "$SITE_KEY" "$ids"; done ;;
      config) for c in $CONNS; do run_wrk "$backend" config 2 "$c" "$SITE_KEY"; done ;;
      bulk) run_wrk "$backend" bulk $(( BULK_CONNS > 1 ? 2 : 1 )) "$BULK_CONNS" "$body" "$TOKEN" ;;
    esac
  done

  local rss errors
  rss=$(awk '/^VmHWM/ { printf "%.1f MiB", $2 / 1024 }' "/proc/$SERVER_PID/status")
  stop_server
  errors=$(grep -c . "$WORK/server-$backend.log" || true)
  log "$backend: server peak RSS (VmHWM) $rss, $errors lines in its error log"
  echo "Server peak RSS (VmHWM): $rss. Loading $SCALE subjects: $loaded. Server error-log lines: $errors." \
    >"$WORK/note-$backend"
  if [[ $errors != 0 ]]; then
    echo "  server log ($backend), last lines:" >&2; tail -5 "$WORK/server-$backend.log" | cut -c1-300 >&2
    { echo; echo "Last lines of the server's log:"; echo; echo '```'; tail -5 "$WORK/server-$backend.log" | cut -c1-300
      echo '```'; } >>"$WORK/note-$backend"
  fi
}

# pgbench: single-row INSERT into a scratch table, and prepared point SELECTs (pgbench -S) after
# pgbench -i -s 10, in database consentry_pgbench; p50/p99 from the per-transaction logs.
PGB="$WORK/pgbench.tsv"   # test conns tps p50 p99 failed
: >"$PGB"
run_pgbench() {
  local db="$PG_BASE/consentry_pgbench" secs; secs=$(seconds "$DURATION")
  log "pgbench: initialising consentry_pgbench (scale 10)"
  psql -q -X -v ON_ERROR_STOP=1 "$PG_BASE/postgres" -c 'DROP DATABASE IF EXISTS consentry_pgbench WITH (FORCE)' \
    -c 'CREATE DATABASE consentry_pgbench' >/dev/null
  pgbench -q -i -s 10 "$db" >/dev/null 2>&1
  psql -q -X -v ON_ERROR_STOP=1 "$db" -c 'CREATE TABLE bench_insert (id bigserial PRIMARY KEY, a text, b text,
    created_at timestamptz DEFAULT now())' >/dev/null
  local test c args out dir
  for test in insert select; do
    for c in $CONNS; do
      if [[ $test == insert ]]; then args=(-f "$BENCH/pgbench/insert.sql"); else args=(-S); fi
      pgbench -n -M prepared -c "$c" -j 2 -T "$(seconds "$WARMUP")" "${args[@]}" "$db" >/dev/null 2>&1
      dir="$WORK/pgblog-$test-$c"; mkdir -p "$dir"
      out=$(cd "$dir" && pgbench -n -M prepared -c "$c" -j 2 -T "$secs" -l "${args[@]}" "$db" 2>&1) ||
        { echo "pgbench failed: $out" >&2; exit 1; }
      local tps failed pct
      tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out")
      failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' <<<"$out"); failed=${failed:-0}
      pct=$(cat "$dir"/pgbench_log.* | awk '{ print $3 }' | sort -n |
        awk '{ v[NR] = $1 } END { printf "%.3f %.3f", v[int(NR * 0.50) + 1] / 1000, v[int(NR * 0.99) + 1] / 1000 }')
      rm -rf "$dir"
      printf '%s\t%s\t%.1f\t%s\t%s\t%s\n' "$test" "$c" "$tps" "${pct% *}" "${pct#* }" "$failed" >>"$PGB"
      log "  pgbench $test c$c: $tps tps, p50/p99 ${pct/ / / } ms"
      if (( failed > 0 )); then touch "$WORK/flagged"; fi
    done
  done
}

log "binary $BIN; duration $DURATION (warm-up $WARMUP); backends $BACKENDS; workloads $WORKLOADS; scale $SCALE"
FAILED=0
PG_OK=0
for b in ${BACKENDS//,/ }; do
  # Not as an `if` condition: that would switch off `set -e` inside the subshell.
  set +e
  ( set -e; trap stop_server EXIT; bench_backend "$b" ) 2> >(tee "$WORK/stderr-$b" >&2)
  rc=$?
  set -e
  if (( rc != 0 )); then
    FAILED=1
    { echo "**The $b run failed**; its last messages:"; echo; echo '```'; grep -v '^==' "$WORK/stderr-$b" | tail -5
      echo '```'; } >"$WORK/note-$b"
  elif [[ $b == pg ]]; then
    PG_OK=1
  fi
done
# pgbench and the peers need the PostgreSQL that the PostgreSQL run reached.
if (( PG_OK )); then run_pgbench; fi

# Peers (--peers c15t): another consent backend on the same PostgreSQL, measured by its own
# script under bench/peers/ with the same durations and connections, after everything above.
PEER_TSV="$WORK/peer-c15t.tsv"
if [[ ",$PEERS," == *,c15t,* ]] && (( ! PG_OK )); then
  echo "**c15t was not measured**: the PostgreSQL run failed." >"$WORK/peer-c15t.md"
elif [[ ",$PEERS," == *,c15t,* ]]; then
  log "peer c15t: bench/peers/c15t/run.sh"
  C15T_DURATION=$DURATION C15T_WARMUP=$WARMUP C15T_CONNS=$CONNS C15T_PG=$PG_BASE C15T_RESULTS_TSV=$PEER_TSV \
    bash "$BENCH/peers/c15t/run.sh" >"$WORK/peer-c15t.md" 2> >(tee "$WORK/stderr-c15t" >&2) || {
    FAILED=1; echo "**The c15t run failed**; see its messages above." >"$WORK/peer-c15t.md"; }
fi

# The report.
pgb_tps() { awk -F'\t' -v t="$1" -v c="$2" '$1 == t && $2 == c { print $3 }' "$PGB"; }
limit_of() { case $1 in write|update) echo insert ;; check|visitor_read|config) echo select ;; *) echo "" ;; esac; }
table() {  # backend
  local backend=$1
  if [[ $backend == pg ]]; then
    echo "| workload | conns | req/s | p50 ms | p99 ms | errors | pgbench limit | req/s ÷ limit |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |"
  else
    echo "| workload | conns | req/s | p50 ms | p99 ms | errors |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: |"
  fi
  local b w c rps p50 p99 n err limit tps ratio flag
  while IFS=$'\t' read -r b w c rps p50 p99 n err; do
    [[ $b == "$backend" ]] || continue
    flag=$err; if (( err > 0 )); then flag="**$err ⚠ of $n**"; fi
    if [[ $backend == pg ]]; then
      limit=$(limit_of "$w"); tps=""; [[ -n "$limit" ]] && tps=$(pgb_tps "$limit" "$c")
      if [[ -n "$tps" ]]; then
        ratio=$(awk -v a="$rps" -v b="$tps" 'BEGIN { printf "%.3f", a / b }')
        echo "| $w | $c | $rps | $p50 | $p99 | $flag | $limit $tps tps | $ratio |"
      elif [[ $w == bulk ]]; then
        echo "| $w (10,000 subjects) | $c | $rps | $p50 | $p99 | $flag | – | $(awk -v a="$rps" 'BEGIN { printf "%.0f subjects/s", a * 10000 }') |"
      else
        echo "| $w | $c | $rps | $p50 | $p99 | $flag | – | – |"
      fi
    else
      [[ $w == bulk ]] && w="bulk (10,000 subjects)"
      echo "| $w | $c | $rps | $p50 | $p99 | $flag |"
    fi
  done <"$RESULTS"
}

REPORT="$WORK/report.md"
{
  echo "# Consentry benchmark: $LABEL"
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); commit $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo "- binary: \`$BIN\` (sha256 $(sha256sum "$BIN" | cut -c1-12))"
  echo "- machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo); $(psql -X -At "$PG_BASE/postgres" -c 'SHOW server_version' 2>/dev/null | sed 's/^/PostgreSQL /; s/ (.*//'); $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)"
  sslmode=${PGSSLMODE:-"prefer (libpq's default)"}
  echo "- PostgreSQL connections (server and pgbench): sslmode=$sslmode; the server's ssl=$(psql -X -At "$PG_BASE/postgres" -c 'SHOW ssl' 2>/dev/null || echo '?')"
  collation="${BENCH_PG_LOCALE:-}"
  [[ -n "$collation" ]] || collation="$(psql -X -At "$PG_BASE/postgres" -c 'SHOW lc_collate' 2>/dev/null || echo '?') (the cluster's default)"
  echo "- Consentry's PostgreSQL database: locale $collation"
  echo "- wrk: -t2 -c{${CONNS// /,}} (bulk: -c$BULK_CONNS), $DURATION each after a $WARMUP warm-up; pgbench -M prepared -j 2, same duration"
  echo "- scale: $SCALE loaded subjects (10 events each) + $SEED_VISITORS visitors written over HTTP"
  echo
  for b in ${BACKENDS//,/ }; do
    if [[ $b == pg ]]; then echo "## PostgreSQL"; else echo "## SQLite"; fi
    echo
    if grep -q "^$b"$'\t' "$RESULTS"; then table "$b"; echo; fi
    cat "$WORK/note-$b"
    echo
  done
  if [[ -s "$PGB" ]]; then
    echo "## pgbench (the limit)"
    echo
    echo "| test | conns | tps | p50 ms | p99 ms | failed |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: |"
    awk -F'\t' '{ t = ($1 == "insert" ? "single-row INSERT" : "point SELECT (-S)"); printf "| %s | %s | %s | %s | %s | %s |\n", t, $2, $3, $4, $5, $6 }' "$PGB"
    echo
  fi
  if [[ -s "$PEER_TSV" ]]; then
    echo "## c15t (bench/peers/c15t: @c15t/backend 2.2.1, one Node process, the same PostgreSQL)"
    echo
    echo "Consentry's figures are its PostgreSQL ones above. c15t's write is \`POST /subjects\` (a new subject, three"
    echo "categories); its check is \`GET /subjects/{id}\`, the nearest it has to a check of one subject: set against"
    echo "both Consentry's \`check\` and its \`visitor_read\` (bench/peers/c15t/README.md)."
    echo
    echo "| c15t workload | conns | c15t req/s | p50 ms | p99 ms | errors | Consentry | Consentry ÷ c15t |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |"
    while IFS=$'\t' read -r w c rps p50 p99 n bad sock rows; do
      for ours in $([[ $w == write ]] && echo write || echo "check visitor_read"); do
        mine=$(awk -F'\t' -v w="$ours" -v c="$c" '$1 == "pg" && $2 == w && $3 == c { print $4 }' "$RESULTS")
        ratio="–"; [[ -n "$mine" ]] && ratio=$(awk -v a="$mine" -v b="$rps" 'BEGIN { printf "%.1f×", a / b }')
        echo "| $w | $c | $rps | $p50 | $p99 | $(( bad + sock )) | $ours ${mine:-–} | $ratio |"
      done
      if (( bad + sock > 0 )); then touch "$WORK/flagged"; fi
    done <"$PEER_TSV"
    echo
    grep -E '^(Server peak RSS|c15t [0-9])' "$WORK/peer-c15t.md" | sed 's/^/c15t: /'
    echo
  elif [[ -s "$WORK/peer-c15t.md" ]]; then
    cat "$WORK/peer-c15t.md"; echo
  fi
  if [[ -e "$WORK/flagged" ]]; then
    echo "**⚠ Some measurements had non-2xx answers, socket errors or failed transactions: their figures are not comparable.**"
    echo
  fi
} >"$REPORT"

cat "$REPORT"
if [[ "${BENCH_RESULTS:-1}" != 0 ]]; then
  mkdir -p "$BENCH/results"
  OUT="$BENCH/results/$(date +%F)-$LABEL.md"
  cp "$REPORT" "$OUT"
  log "written to ${OUT#"$REPO"/}"
fi
if (( FAILED )); then exit 1; fi
if [[ -e "$WORK/flagged" ]]; then exit 2; fi
