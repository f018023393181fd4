# Shell functions that bench/run.sh and the peers' scripts (bench/peers/*/run.sh) share; sourced.

log() { echo "== $*" >&2; }

# stop_server: stops the process $SERVER_PID (TERM, then KILL after 5 s) and clears it.
stop_server() {
  if [[ -n "${SERVER_PID:-}" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=""
}

# free_port: prints a TCP port on 127.0.0.1 that nothing answers on, from BENCH_PORTS
# (FIRST-LAST, 20000-39999 by default).
free_port() {
  local p range=${BENCH_PORTS:-20000-39999}
  local first=${range%-*} last=${range#*-}
  [[ $first =~ ^[0-9]+$ && $last =~ ^[0-9]+$ ]] && (( first <= last )) ||
    { echo "BENCH_PORTS takes FIRST-LAST, e.g. 19000-19999" >&2; exit 64; }
  for _ in $(seq 100); do
    p=$(( first + RANDOM % (last - first + 1) ))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
  echo "no free port" >&2; exit 1
}
