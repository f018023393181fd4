#!/usr/bin/env bash
# The whole test suite, as the README's second command runs it:
#   1. Rust unit and integration tests: every integration test on SQLite and on PostgreSQL.
#      PostgreSQL: CONSENTRY_TEST_POSTGRES_URL (an admin URL; a database is created per test),
#      or a server answering at 127.0.0.1:5432 as user postgres. Set CONSENTRY_TEST_POSTGRES_URL=off
#      to run SQLite only. When it is set and unreachable, the PostgreSQL tests fail.
#   2. Contract fuzzing of the OpenAPI document with schemathesis (tests/contract/run.sh).
#   3. The browser SDK's tests (sdk-js: vitest unit tests, size budgets, real-browser tests), and
#      the browsable API reference (/docs) in the same real browser.
#   4. The console (console/): type check, then one real-browser walk of every page per database.
# It installs what the tests need when it can (Debian packages as root, npm packages from the lockfile).
set -euo pipefail
cd "$(dirname "$0")/.."

apt_install() {
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1 \
      || { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null; }
  else
    echo "note: cannot install $* (not root or no apt-get); the tests that need it say so"
  fi
}
command -v docker-compose >/dev/null || apt_install docker-compose

case "${CONSENTRY_TEST_POSTGRES_URL:-}" in
  off) unset CONSENTRY_TEST_POSTGRES_URL ;;
  "")
    if (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then
      export CONSENTRY_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres
    fi ;;
esac
echo "== backends: SQLite${CONSENTRY_TEST_POSTGRES_URL:+ and PostgreSQL ($CONSENTRY_TEST_POSTGRES_URL)}"

cargo test --locked --all-targets
# The binary those tests built; the contract and browser tests run it instead of building again.
export CONSENTRY_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/consentry"

tests/contract/run.sh

if [ -f sdk-js/package.json ]; then
  echo "== sdk-js"
  command -v chromium >/dev/null || [ -x /usr/bin/chromium ] || apt_install chromium
  (cd sdk-js && npm ci --no-audit --no-fund --loglevel=error && npm run --silent test:all)
  echo "== /docs in the browser"
  node tests/contract/docs-browser.mjs
fi

if [ -f console/package.json ]; then
  echo "== console in the browser"
  # The PostgreSQL walk creates its database with psql.
  [ -z "${CONSENTRY_TEST_POSTGRES_URL:-}" ] || command -v psql >/dev/null || apt_install postgresql-client
  (cd console && npm ci --no-audit --no-fund --loglevel=error && npm run --silent typecheck && npm run --silent test:browser)
fi
