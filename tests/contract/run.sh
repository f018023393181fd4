#!/usr/bin/env bash
# Contract fuzzing: schemathesis (PyPI) against the real server on a free port, over every
# operation of openapi/openapi.json, in positive and negative modes, with every check: no 5xx,
# every response conforms to the schema, every error is a problem body. Seeded and bounded:
#   CONSENTRY_FUZZ_SEED (default 20261129) replays a run; CONSENTRY_FUZZ_EXAMPLES (default 25)
#   caps the cases per operation. On SQLite, and on PostgreSQL when CONSENTRY_TEST_POSTGRES_URL
#   is set and psql is available.
set -euo pipefail
cd "$(dirname "$0")/../.."
seed=${CONSENTRY_FUZZ_SEED:-20261129}
examples=${CONSENTRY_FUZZ_EXAMPLES:-25}
bin=${CONSENTRY_BIN:-target/debug/consentry}
[ -x "$bin" ] || cargo build --locked --quiet
venv=target/schemathesis-venv
if [ ! -x "$venv/bin/schemathesis" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'schemathesis==4.32.5'
fi

run_one() { # $1 backend name, $2 DATABASE_URL
  local name=$1 url=$2 dir port pid token site status=0
  dir=$(mktemp -d)
  DATABASE_URL=$url "$bin" apply examples/ntt-cloud-communications/consentry.toml > "$dir/apply.json"
  token=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["token"])' "$dir/apply.json")
  site=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["sites"]["www.example.com"])' "$dir/apply.json")
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  DATABASE_URL=$url CONSENTRY__LOG=warn "$bin" serve --listen "127.0.0.1:$port" > "$dir/serve.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 50); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.2; done
  echo "== schemathesis on $name (seed $seed, at most $examples cases per operation)"
  SCHEMATHESIS_HOOKS=hooks PYTHONPATH=tests/contract CONSENTRY_SITE_KEY=$site "$venv/bin/schemathesis" --config-file tests/contract/schemathesis.toml run \
    "http://127.0.0.1:$port/openapi.json" \
    -H "Authorization: Bearer $token" -H "Origin: http://127.0.0.1:8080" \
    --mode all --checks all --seed "$seed" --max-examples "$examples" --workers 1 \
    --generation-database none --no-color --report junit --report-junit-path "target/contract-$name.xml" \
    || status=$?
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  if grep -q "panicked" "$dir/serve.log"; then echo "the server panicked:"; grep -A3 panicked "$dir/serve.log"; status=1; fi
  rm -rf "$dir"
  return $status
}

run_one sqlite "sqlite://$(mktemp -d)/contract.db"
if [ -n "${CONSENTRY_TEST_POSTGRES_URL:-}" ] && command -v psql >/dev/null; then
  db="consentry_contract_$$"
  psql -q "$CONSENTRY_TEST_POSTGRES_URL" -c "CREATE DATABASE $db" >/dev/null
  trap 'psql -q "$CONSENTRY_TEST_POSTGRES_URL" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true' EXIT
  run_one postgres "${CONSENTRY_TEST_POSTGRES_URL%/*}/$db"
fi
