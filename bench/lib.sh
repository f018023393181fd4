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

# free_port: prints a TCP port on 127.0.0.1 that nothing answers on.
free_port() {
  local p
  for _ in $(seq 100); do
    p=$(( 20000 + RANDOM % 20000 ))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
  echo "no free port" >&2; exit 1
}
