#!/usr/bin/env bash
# `make down-swarm`: undo `make up-swarm`. Stops the hub (it stops its servers on the way
# out), removes its container and network, whatever services of this enclave are left
# (those mounting its state folder) with their networks and configs, the project networks,
# and the worker node and the swarm if up-swarm made them. Keeps the state and the
# database (like `make down`). Idempotent. Settings: those of up-swarm (scripts/swarm-env.sh).
set -euo pipefail

# shellcheck source=swarm-env.sh
source "$(dirname "${BASH_SOURCE[0]}")/swarm-env.sh"  # ROOT HOME_DIR NODE NETWORK NAME NB_IMAGE STATE ...

say() { echo "[down-swarm] $*" >&2; }

if ! docker info >/dev/null 2>&1; then
    say "the Docker engine is not running: nothing of the swarm enclave runs"
    exit 0
fi
if docker inspect "$NAME" >/dev/null 2>&1; then
    say "stopping the hub ($NAME); it stops its servers first"
    docker stop -t 90 "$NAME" >/dev/null 2>&1 || true
    docker rm -f "$NAME" >/dev/null
fi
docker network rm "$NAME" >/dev/null 2>&1 || true

if [[ "$(docker info -f '{{.Swarm.ControlAvailable}}')" == true ]]; then
    "$ROOT/.venv/bin/python" - "$HOME_DIR" "$NETWORK" <<'EOF'
"""Remove this enclave's services (they mount its state folder), then their networks and
configs and the project networks <network>-<slug>, once no task holds them."""
import sys
import time

import docker
import docker.errors

home, network = sys.argv[1].rstrip("/") + "/", sys.argv[2]
client = docker.from_env()
networks, configs = set(), set()
for service in client.services.list(filters={"label": "org.enclave.sandbox"}):
    spec = service.attrs["Spec"]["TaskTemplate"]
    mounts = spec.get("ContainerSpec", {}).get("Mounts") or []
    if not any((m.get("Source") or "").startswith(home) for m in mounts):
        continue
    networks.update(n["Target"] for n in spec.get("Networks") or [])
    configs.update(c["ConfigID"] for c in spec.get("ContainerSpec", {}).get("Configs") or [])
    print(f"[down-swarm] removing the service {service.name}", file=sys.stderr)
    service.remove()
for found in client.networks.list(filters={"label": "org.enclave.project-network"}):
    if found.name.startswith(f"{network}-"):
        networks.add(found.id)
for _ in range(120):
    for kind, pending in (("network", networks), ("config", configs)):
        for ident in list(pending):
            try:
                (client.networks if kind == "network" else client.configs).get(ident).remove()
                pending.discard(ident)
            except docker.errors.NotFound:
                pending.discard(ident)
            except docker.errors.APIError:
                pass  # a task that is shutting down still holds it
    if not networks and not configs:
        break
    time.sleep(0.5)
if networks or configs:
    sys.exit(f"[down-swarm] {len(networks)} network(s) and {len(configs)} config(s) are still in use after"
             " a minute: run make down-swarm again")
EOF
fi

if [[ -e "$STATE/up-swarm-made-$NODE" ]]; then
    ENCLAVE_SWARM_NODE="$NODE" ENCLAVE_SWARM_IMAGES="$NB_IMAGE" bash "$ROOT/scripts/swarm.sh" down
    rm -f "$STATE/up-swarm-made-$NODE"
fi
say "the swarm enclave is down (its state stays in $HOME_DIR; its database too)"
