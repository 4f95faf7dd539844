#!/usr/bin/env bash
# Stop the enclave's JupyterHub started by scripts/start-hub.sh (it stops its servers,
# services and proxy on the way out). Idempotent.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HUB="$(realpath -m "${ENCLAVE_HOME:-$ROOT/var}")/hub"
PIDFILE="$HUB/jupyterhub.pid"

say() { echo "[hub] $*" >&2; }

if [[ ! -f "$PIDFILE" ]] || ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    say "not running"
    rm -f "$PIDFILE"
    exit 0
fi
pid="$(cat "$PIDFILE")"
kill -TERM "$pid"
# The hub stops its servers, services and proxy one after another; give it time.
for _ in $(seq 1 180); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$PIDFILE"; say "stopped"; exit 0; }
    sleep 0.5
done
say "the hub (pid $pid) did not stop within 90 s; killing it and its proxy"
kill -KILL "$pid" 2>/dev/null || true
if [[ -f "$HUB/proxy.pid" ]]; then
    kill -TERM "$(cat "$HUB/proxy.pid")" 2>/dev/null || true
    rm -f "$HUB/proxy.pid"
fi
rm -f "$PIDFILE"
