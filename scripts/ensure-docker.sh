#!/usr/bin/env bash
# Make sure a Docker engine answers `docker info`: install Debian's docker.io when the
# engine is missing, start dockerd (no systemd on these machines) when it is not running,
# and wait until it is ready. Idempotent, and silent when all is already well.
set -euo pipefail

say() { echo "[docker] $*" >&2; }

docker info >/dev/null 2>&1 && exit 0

if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
    say "installing docker.io from Debian"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
fi

if ! docker info >/dev/null 2>&1 && ! pgrep -x dockerd >/dev/null 2>&1; then
    say "starting dockerd (log: /var/log/dockerd.log)"
    (setsid dockerd >/var/log/dockerd.log 2>&1 &)
fi

for _ in $(seq 1 240); do
    docker info >/dev/null 2>&1 && { say "engine ready"; exit 0; }
    sleep 0.5
done
say "dockerd did not become ready within 120 s; see /var/log/dockerd.log"
exit 1
