#!/usr/bin/env bash
# Start the services the enclave and its tests use: the Docker engine and PostgreSQL.
# Idempotent; CI and fresh machines start with neither running (no systemd here).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

bash "$here/ensure-docker.sh"

cluster="$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n1)"
if [ -z "$cluster" ]; then
    echo "[services] PostgreSQL is not installed: run 'make deps' first" >&2
    exit 1
fi
if ! pg_lsclusters -h | awk '$4 == "online"' | grep -q .; then
    echo "[services] starting PostgreSQL $cluster" >&2
    pg_ctlcluster --skip-systemctl-redirect "$cluster" main start
fi
for _ in $(seq 1 60); do
    su postgres -c "psql -tAc 'select 1'" >/dev/null 2>&1 && break
    sleep 0.5
done
# The enclave and its tests connect as root over the local socket (peer authentication).
if ! su postgres -c "psql -tAc \"select 1 from pg_roles where rolname='root'\"" | grep -q 1; then
    su postgres -c "createuser --superuser root"
fi
