#!/usr/bin/env bash
# `make up-swarm`, after the installs, the services and the images: the enclave on a
# two-node Docker Swarm made of this machine (the manager) and a simulated worker node
# (scripts/swarm.sh), with PostgreSQL, the hub in a container on the manager, every
# server and job a service on the worker. Prints the same sign-in text as `make up`.
# Idempotent: what is already there and current is left as it is. Undo: make down-swarm.
#
# Settings (ENCLAVE_SWARM_HOME, _SHARED, _NODE, _DB, _NETWORK, ENCLAVE_HUB_PORT, _CONTAINER,
# ENCLAVE_NOTEBOOK_IMAGE, ENCLAVE_HUB_IMAGE): scripts/swarm-env.sh, which down-swarm reads too.
#   ENCLAVE_HUB_IMAGE_AS_IS=1  run ENCLAVE_HUB_IMAGE as it is, without building it (an image
#                           built elsewhere; a check that a second run changes nothing)
set -euo pipefail

# shellcheck source=swarm-env.sh
source "$(dirname "${BASH_SOURCE[0]}")/swarm-env.sh"  # ROOT HOME_DIR SHARED NODE DB NETWORK PORT NAME ...
URL="http://127.0.0.1:$PORT/hub/api"
PY="$ROOT/.venv/bin/python"
E="$ROOT/.venv/bin/enclave"

say() { echo "[up-swarm] $*" >&2; }
die() { echo "[up-swarm] $*" >&2; exit 1; }

[[ -x "$E" ]] || die "the enclave is not installed: run make up-swarm (or make deps first)"
[[ "$DB" =~ ^[a-z_][a-z0-9_]{0,62}$ ]] || die "ENCLAVE_SWARM_DB=$DB is not a plain database name (lower-case letters, digits, _)"
[[ "$PORT" =~ ^[0-9]{1,5}$ ]] && (( PORT > 0 && PORT < 65536 )) || die "ENCLAVE_HUB_PORT=$PORT is not a port number"
[[ "$NAME" =~ ^[a-zA-Z0-9][a-zA-Z0-9_.-]*$ ]] || die "ENCLAVE_HUB_CONTAINER=$NAME is not a container name"
"$ROOT/scripts/ensure-docker.sh"
docker image inspect "$NB_IMAGE" >/dev/null 2>&1 || die "the notebook image $NB_IMAGE is missing: run scripts/build-images.sh"
mkdir -p "$HOME_DIR" "$STATE"

if [[ "${ENCLAVE_HUB_IMAGE_AS_IS:-0}" == 1 ]]; then
    docker image inspect "$HUB_IMAGE" >/dev/null 2>&1 || die "the hub image $HUB_IMAGE is missing: build it with images/hub/build.sh"
else
    say "the hub's image"
    (exec 9>"$ROOT/build/.images.lock"; flock 9; ENCLAVE_HUB_IMAGE="$HUB_IMAGE" "$ROOT/images/hub/build.sh")
fi

say "the two-node swarm (worker $NODE)"
if ! docker inspect "$NODE" >/dev/null 2>&1; then
    touch "$STATE/up-swarm-made-$NODE"  # so that down-swarm removes it (and the swarm, if made now)
fi
ENCLAVE_SWARM_NODE="$NODE" ENCLAVE_SWARM_SHARED="$SHARED" ENCLAVE_SWARM_IMAGES="$NB_IMAGE" \
    bash "$ROOT/scripts/swarm.sh" up
[[ "$(docker info -f '{{.Swarm.ControlAvailable}}')" == true ]] || die "this host is in a swarm but not its manager: run it where the manager is"
# With the internal registry up (scripts/registry.sh), nodes pull the images by digest from it.
REGISTRY="${ENCLAVE_SWARM_REGISTRY:-}"
if [[ -z "$REGISTRY" && -x "$ROOT/scripts/registry.sh" ]] && "$ROOT/scripts/registry.sh" status >/dev/null 2>&1; then
    REGISTRY="$("$ROOT/scripts/registry.sh" address)"
fi

say "the database $DB on the local PostgreSQL server"
export ENCLAVE_HOME="$HOME_DIR" ENCLAVE_DB_URL="$DB_URL" ENCLAVE_POLICIES="$POLICIES" ENCLAVE_SWARM_REGISTRY="$REGISTRY"
psql -d postgres -h /var/run/postgresql -tAc 'select 1' >/dev/null 2>&1 \
    || die "PostgreSQL does not answer on /var/run/postgresql as root: run make services"
if [[ "$(psql -d postgres -h /var/run/postgresql -tAc "select 1 from pg_database where datname = '$DB'")" != 1 ]]; then
    createdb -h /var/run/postgresql "$DB"
fi

say "policies with engine: swarm in $POLICIES"
"$PY" - "$ROOT/policies" "$POLICIES" "$NB_IMAGE" "$NETWORK" <<'EOF'
"""Copy the repository's policies, setting engine, image and network in containers.yaml."""
import re
import shutil
import sys
from pathlib import Path

src, dst, image, network = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4]
tmp = dst.with_name(dst.name + ".new")
shutil.rmtree(tmp, ignore_errors=True)
shutil.copytree(src, tmp)
path = tmp / "containers.yaml"
text = path.read_text()
for key, value in (("engine", "swarm"), ("image", image), ("network", network)):
    text, count = re.subn(rf"^{key}: .*$", f"{key}: {value}", text, flags=re.M)
    if count != 1:
        sys.exit(f"[up-swarm] {src}/containers.yaml has no single '{key}:' line to set: restore it from git")
path.write_text(text)
shutil.rmtree(dst, ignore_errors=True)
tmp.rename(dst)
EOF
"$E" policy check >/dev/null
say "migrating the database"
"$E" db upgrade >/dev/null
say "creating the demo enclave (people, projects, synthetic data, grants)"
"$E" demo setup >"$HOME_DIR/demo-signin.txt"

# The hub's container: on a bridge network of its own (only its public port is published,
# on loopback), the engine's socket (it creates the services), the shared store at the same
# path, PostgreSQL's socket (root connects with peer authentication), the host's resolver
# file read-only (the DNS check).
hub_id="$(docker image inspect -f '{{.Id}}' "$HUB_IMAGE")"
want="$hub_id $PORT $DB_URL $HOME_DIR $REGISTRY"
if [[ "$(docker inspect -f '{{.State.Running}} {{index .Config.Labels "org.enclave.swarm-hub"}}' "$NAME" 2>/dev/null || true)" \
      == "true $want" ]] && curl -fsS --noproxy '*' -o /dev/null "$URL" 2>/dev/null; then
    say "the hub is already running in $NAME"
else
    if docker inspect "$NAME" >/dev/null 2>&1; then
        say "replacing the hub container $NAME (its image or settings changed, or it stopped)"
        docker stop -t 90 "$NAME" >/dev/null 2>&1 || true
        docker rm -f "$NAME" >/dev/null
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
        die "port $PORT on 127.0.0.1 is in use (make down stops the one-host enclave): set ENCLAVE_HUB_PORT to a free port"
    fi
    docker network inspect "$NAME" >/dev/null 2>&1 \
        || docker network create --driver bridge --label org.enclave.swarm-hub=1 "$NAME" >/dev/null
    say "starting the hub in the container $NAME"
    docker run -d --name "$NAME" --hostname "$NAME" --network "$NAME" \
        --label "org.enclave.swarm-hub=$want" \
        -p "127.0.0.1:$PORT:$PORT" \
        -v /var/run/docker.sock:/var/run/docker.sock \
        -v "$HOME_DIR:$HOME_DIR" \
        -v /var/run/postgresql:/var/run/postgresql \
        -v /etc/resolv.conf:/run/enclave/host-resolv.conf:ro \
        -e ENCLAVE_HOME="$HOME_DIR" -e ENCLAVE_DB_URL="$DB_URL" -e ENCLAVE_POLICIES="$POLICIES" \
        -e ENCLAVE_SWARM_REGISTRY="$REGISTRY" -e ENCLAVE_HUB_PORT="$PORT" \
        -e ENCLAVE_HUB_CONTAINER="$NAME" -e ENCLAVE_HUB_NETWORK="$NAME" \
        -e ENCLAVE_HOST_RESOLV_CONF=/run/enclave/host-resolv.conf \
        "$HUB_IMAGE" >/dev/null
fi

# The hub checks every worker node before it answers (a one-shot service on each): minutes
# on a busy machine.
for _ in $(seq 1 1200); do
    curl -fsS --noproxy '*' -o /dev/null "$URL" 2>/dev/null && break
    if [[ "$(docker inspect -f '{{.State.Running}}' "$NAME" 2>/dev/null)" != true ]]; then
        docker logs --tail 20 "$NAME" >&2 2>&1 || true
        die "the hub exited during start-up (above: the end of its log; all of it: docker logs $NAME)"
    fi
    sleep 0.5
done
curl -fsS --noproxy '*' -o /dev/null "$URL" 2>/dev/null \
    || die "the hub did not answer at $URL within 10 minutes: see docker logs $NAME"
say "the hub is running in $NAME (log: docker logs $NAME)"

# The demo's text names the one-host enclave's port and environment; this one has its own.
ENV_LINE="ENCLAVE_HOME=$HOME_DIR ENCLAVE_DB_URL='$DB_URL' ENCLAVE_POLICIES=$POLICIES"
cat <<MSG

Enclave is running at http://127.0.0.1:$PORT/ (Docker Swarm: servers and jobs run on the worker node $NODE)
$(sed -e "s#http://127.0.0.1:8000#http://127.0.0.1:$PORT#" -e "s#  .venv/bin/enclave demo code#  $ENV_LINE .venv/bin/enclave demo code#" "$HOME_DIR/demo-signin.txt")

Consoles: http://127.0.0.1:$PORT/services/enclave/   Public register: http://127.0.0.1:$PORT/services/enclave/register
Admin CLI: source .venv/bin/activate && $ENV_LINE enclave --as admin project list
Stop: make down-swarm
MSG
