#!/usr/bin/env bash
# A two-node Docker Swarm on one machine: this host's engine is the manager, and a
# container running its own engine (a simulated second machine) is the worker.
#
#   scripts/swarm.sh up      init the swarm (unless this host is already in one), start and
#                            join the worker, start the internal registry (scripts/registry.sh)
#                            unless it runs, push the images there and pull them on the worker
#   scripts/swarm.sh down    remove the worker; stop the registry and leave the swarm if `up`
#                            started them
#   scripts/swarm.sh image   only build the worker node's image
#
#   ENCLAVE_SWARM_NODE     the worker's container and host name (default enclave-swarm-node2)
#   ENCLAVE_SWARM_SHARED   colon-separated host folders the worker mounts at the same path:
#                          on one machine they stand for the NFS share every node mounts
#                          (default $ENCLAVE_HOME)
#   ENCLAVE_SWARM_IMAGES   space-separated images the nodes run (default
#                          enclave-notebook:latest): pushed to the registry, which the worker
#                          trusts by its CA and pulls from by digest; the enclave then needs
#                          ENCLAVE_SWARM_REGISTRY (printed at the end) to name them so
#
# The worker node runs with every capability but SYS_RESOURCE (this host's bounding set
# lacks it, so --privileged fails), no seccomp or AppArmor confinement, a read-write
# /sys/fs/cgroup (its engine cannot create containers otherwise) and its own
# /var/lib/docker volume (and /run on tmpfs, so a restarted node starts clean and rejoins).
# Nothing else on the host changes: bridge networks keep working
# as before, and `down` returns the engine to single-host mode when `up` left it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NODE="${ENCLAVE_SWARM_NODE:-enclave-swarm-node2}"
SHARED="${ENCLAVE_SWARM_SHARED:-${ENCLAVE_HOME:-$ROOT/var}}"
IMAGES="${ENCLAVE_SWARM_IMAGES:-enclave-notebook:latest}"
NODE_IMAGE="${ENCLAVE_SWARM_NODE_IMAGE:-enclave-swarm-node:trixie}"
BASE="${ENCLAVE_BASE_IMAGE:-enclave-base:trixie}"
STATE="$ROOT/build/swarm"
LABEL=org.enclave.swarm-node

step() { echo "[swarm] $*" >&2; }

manager_addr() {
    ip -4 -o addr show docker0 | awk '{print $4}' | cut -d/ -f1 | head -n 1
}

build_node_image() {
    if docker image inspect "$NODE_IMAGE" >/dev/null 2>&1; then
        return
    fi
    "$ROOT/images/base/build.sh" >/dev/null
    step "building the worker node image $NODE_IMAGE (Debian's docker.io, about 20 s)"
    local ctx
    ctx="$(mktemp -d)"
    cat >"$ctx/Dockerfile" <<'EOF'
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        docker.io docker-cli iptables ca-certificates util-linux \
 && rm -rf /var/lib/apt/lists/*
CMD ["dockerd"]
EOF
    DOCKER_BUILDKIT=0 docker build -q --build-arg "BASE_IMAGE=$BASE" -t "$NODE_IMAGE" "$ctx" >/dev/null
    rm -rf "$ctx"
}

node_docker() { docker exec "$NODE" docker "$@"; }

up() {
    "$ROOT/scripts/ensure-docker.sh"
    mkdir -p "$STATE"
    build_node_image
    local addr
    addr="$(manager_addr)"
    [[ -n "$addr" ]] || { step "no docker0 address: is the engine's default bridge up?"; exit 1; }

    if [[ "$(docker info -f '{{.Swarm.LocalNodeState}}')" != active ]]; then
        step "docker swarm init --advertise-addr $addr"
        docker swarm init --advertise-addr "$addr" >/dev/null
        touch "$STATE/initialised-by-$NODE"
    fi

    if ! docker inspect "$NODE" >/dev/null 2>&1; then
        local mounts=()
        IFS=: read -r -a shared <<<"$SHARED"
        for dir in "${shared[@]}"; do
            [[ -n "$dir" ]] || continue
            mkdir -p "$dir"
            mounts+=(-v "$dir:$dir")
        done
        step "starting the worker node $NODE (shares: ${SHARED})"
        docker run -d --name "$NODE" --hostname "$NODE" --label "$LABEL=1" \
            --cap-add ALL --cap-drop SYS_RESOURCE \
            --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
            --security-opt systempaths=unconfined \
            -v /sys/fs/cgroup:/sys/fs/cgroup:rw -v "$NODE-var:/var/lib/docker" --tmpfs /run \
            "${mounts[@]}" "$NODE_IMAGE" dockerd >/dev/null
    fi
    for _ in $(seq 1 240); do
        node_docker info >/dev/null 2>&1 && break
        sleep 0.5
    done
    node_docker info >/dev/null 2>&1 || { step "the worker's engine did not start"; docker logs --tail 20 "$NODE" >&2; exit 1; }

    if [[ "$(node_docker info -f '{{.Swarm.LocalNodeState}}')" != active ]]; then
        step "joining $NODE to the swarm at $addr:2377"
        node_docker swarm join --token "$(docker swarm join-token -q worker)" "$addr:2377" >/dev/null
    fi
    for _ in $(seq 1 240); do
        [[ "$(docker node ls --filter "name=$NODE" --format '{{.Hostname}} {{.Status}}' | grep -c "^$NODE Ready")" -ge 1 ]] && break
        sleep 0.5
    done

    # Images reach the nodes only through the internal registry, by digest: the worker
    # trusts its CA (certs.d, read without a restart) and pulls what was pushed.
    if ! "$ROOT/scripts/registry.sh" status; then
        "$ROOT/scripts/registry.sh" up >/dev/null
        touch "$STATE/registry-by-$NODE"
    fi
    "$ROOT/scripts/registry.sh" trust "$NODE"
    local registry
    registry="$("$ROOT/scripts/registry.sh" address)"
    for image in $IMAGES; do
        local ref
        step "pushing $image to the registry $registry"
        ref="$("$ROOT/scripts/registry.sh" push "$image")"
        # Pulled now so that the first server does not wait for it (and TLS is proven).
        node_docker pull -q "$ref" >/dev/null
        step "$NODE holds $ref"
    done
    step "two nodes ready: $(docker node ls --format '{{.Hostname}}:{{.ManagerStatus}}:{{.Status}}' | tr '\n' ' ')"
    step "the hub and job workers pull from the registry with ENCLAVE_SWARM_REGISTRY=$registry"
}

down() {
    local node_id
    node_id="$(docker node ls --filter "name=$NODE" -q 2>/dev/null | head -n 1 || true)"
    if docker inspect "$NODE" >/dev/null 2>&1; then
        step "removing the worker node $NODE"
        docker rm -f "$NODE" >/dev/null
    fi
    docker volume rm -f "$NODE-var" >/dev/null 2>&1 || true
    if [[ -n "$node_id" ]]; then
        docker node rm --force "$node_id" >/dev/null 2>&1 || true
    fi
    # The local names `up` gave the images in the registry (what was pushed stays there).
    local registry
    registry="$("$ROOT/scripts/registry.sh" address 2>/dev/null || true)"
    if [[ -n "$registry" ]]; then
        for image in $IMAGES; do
            docker rmi "$registry/$image" >/dev/null 2>&1 || true
        done
    fi
    if [[ -e "$STATE/registry-by-$NODE" ]]; then
        "$ROOT/scripts/registry.sh" down
        rm -f "$STATE/registry-by-$NODE"
    fi
    if [[ -e "$STATE/initialised-by-$NODE" ]]; then
        step "leaving the swarm this script created"
        docker swarm leave --force >/dev/null 2>&1 || true
        docker network rm docker_gwbridge >/dev/null 2>&1 || true
        rm -f "$STATE/initialised-by-$NODE"
    fi
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    image) build_node_image ;;
    *) echo "usage: scripts/swarm.sh up|down|image" >&2; exit 2 ;;
esac
