#!/usr/bin/env bash
# Start the enclave's JupyterHub in the background (idempotent: does nothing when it is
# already running). Log: $ENCLAVE_HOME/hub/hub.log; pid: $ENCLAVE_HOME/hub/jupyterhub.pid.
# Waits until the hub's REST API answers at http://127.0.0.1:$ENCLAVE_HUB_PORT/hub/api.
#
#   ENCLAVE_HOME            the enclave's state (default ./var)
#   ENCLAVE_HUB_PORT        public port on 127.0.0.1 (default 8000)
#   ENCLAVE_HUB_API_PORT    hub API port on the internal network's gateway (default 8081)
#   ENCLAVE_PROXY_API_PORT  proxy API port on 127.0.0.1 (default 8001)
#   ENCLAVE_METER_PORT      egress meter on 127.0.0.1 (default 8002; fixed, so servers survive a restart)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export ENCLAVE_HOME="$(realpath -m "${ENCLAVE_HOME:-$ROOT/var}")"
PORT="${ENCLAVE_HUB_PORT:-8000}"
export ENCLAVE_METER_PORT="${ENCLAVE_METER_PORT:-8002}"
HUB="$ENCLAVE_HOME/hub"
PIDFILE="$HUB/jupyterhub.pid"
LOG="$HUB/hub.log"
URL="http://127.0.0.1:$PORT/hub/api"

say() { echo "[hub] $*" >&2; }

if [[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    say "already running (pid $(cat "$PIDFILE")) at http://127.0.0.1:$PORT/"
    exit 0
fi

"$ROOT/scripts/ensure-docker.sh"
command -v configurable-http-proxy >/dev/null \
    || { say "configurable-http-proxy is missing: npm install -g configurable-http-proxy"; exit 1; }
mkdir -p "$HUB" && chmod 0700 "$HUB"
"$ROOT/.venv/bin/enclave" db upgrade >/dev/null

cd "$ROOT"
# Job control on: the hub runs in its own process group and does not inherit SIGINT as
# ignored (bash ignores it in a script's background commands otherwise); the hub stops
# its services with SIGINT, so they must not ignore it either.
set -m
PATH="$ROOT/.venv/bin:$PATH" "$ROOT/.venv/bin/jupyterhub" -f "$ROOT/jupyterhub_config.py" \
    >>"$LOG" 2>&1 </dev/null &
echo $! >"$PIDFILE"

for _ in $(seq 1 120); do
    if curl -fsS --noproxy '*' -o /dev/null "$URL" 2>/dev/null; then
        say "running (pid $(cat "$PIDFILE")) at http://127.0.0.1:$PORT/ (log: $LOG)"
        exit 0
    fi
    if ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
        tail -n 20 "$LOG" >&2
        say "the hub exited during start-up; see $LOG"
        rm -f "$PIDFILE"
        exit 1
    fi
    sleep 0.5
done
say "the hub did not answer at $URL within 60 s; see $LOG"
exit 1
