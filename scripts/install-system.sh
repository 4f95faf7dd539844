#!/usr/bin/env bash
# Install the system packages the enclave needs on a fresh Debian machine (run as root).
# Idempotent: does nothing, quietly, when everything is already there.
#   docker.io      the container engine (notebook servers and jobs)
#   postgresql     the server database the test suite proves the schema against
#   debootstrap    builds the base image without a container registry
#   chromium       the browser the end-to-end tests drive through Playwright
#   nodejs/npm     configurable-http-proxy, JupyterHub's proxy
set -euo pipefail

say() { echo "[install] $*" >&2; }

need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v pg_ctlcluster >/dev/null 2>&1 || need+=(postgresql)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v docker-registry >/dev/null 2>&1 || need+=(docker-registry)  # the Swarm's image registry (scripts/registry.sh)
command -v openssl >/dev/null 2>&1 || need+=(openssl)  # the registry's private CA and certificate
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v npm >/dev/null 2>&1 || need+=(nodejs npm)
command -v git >/dev/null 2>&1 || need+=(git)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v iptables >/dev/null 2>&1 || need+=(iptables)
# ip and unshare: the DNS test runs a private engine in its own network namespace.
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v unshare >/dev/null 2>&1 || need+=(util-linux)
python3 -c "import venv, ensurepip" >/dev/null 2>&1 || need+=(python3-venv)

if ((${#need[@]})); then
    say "installing from Debian: ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if ! command -v configurable-http-proxy >/dev/null 2>&1; then
    say "installing configurable-http-proxy from npm"
    npm install -g --silent configurable-http-proxy >/dev/null 2>&1
fi
