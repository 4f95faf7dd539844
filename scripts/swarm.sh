#!/usr/bin/env bash
# A two-node Docker Swarm on one machine: this host's engine is the manager, and a
# container running its own engine (a simulated second machine) is the worker.
#
#   scripts/swarm.sh up      init the swarm (unless this host is already in one), start and
#                            join the worker, give it the notebook image
#   scripts/swarm.sh down    remove the worker; leave the swarm if `up` created it
#   scripts/swarm.sh image   only build the worker node's image
#
#   ENCLAVE_SWARM_NODE     the worker's container and host name (default enclave-swarm-node2)
#   ENCLAVE_SWARM_SHARED   colon-separated host folders the worker mounts at the same path:
#                          on one machine they stand for the NFS share every node mounts
#                          (default $ENCLAVE_HOME)
#   ENCLAVE_SWARM_IMAGES   space-separated images the worker must have (default
#                          enclave-notebook:latest); copied by `docker save | docker load`
#                          unless the worker already holds the same image id
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

    for image in $IMAGES; do
        local id
        id="$(docker image inspect -f '{{.Id}}' "$image")"
        if [[ "$(node_docker image inspect -f '{{.Id}}' "$image" 2>/dev/null || true)" != "$id" ]]; then
            step "copying $image to $NODE"
            docker save "$image" | docker exec -i "$NODE" docker load -q >/dev/null
        fi
    done
    step "two nodes ready: $(docker node ls --format '{{.Hostname}}:{{.ManagerStatus}}:{{.Status}}' | tr '\n' ' ')"
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
