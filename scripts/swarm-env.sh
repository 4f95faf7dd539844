# Sourced by scripts/up-swarm.sh and scripts/down-swarm.sh: the settings of the enclave on
# the two-node swarm, read the same way by both, so that down-swarm finds what up-swarm made.
#
#   ENCLAVE_SWARM_HOME      the enclave's state, on the store the worker mounts at the same
#                           path (default $ENCLAVE_HOME/swarm, i.e. var/swarm)
#   ENCLAVE_SWARM_SHARED    folders the worker node mounts (default ENCLAVE_SWARM_HOME)
#   ENCLAVE_SWARM_NODE      the worker node's name (default enclave-swarm-node2)
#   ENCLAVE_SWARM_DB        the PostgreSQL database (default enclave_swarm)
#   ENCLAVE_SWARM_NETWORK   the policy's network name; project networks are <it>-<project>
#                           (default enclave-swarm)
#   ENCLAVE_HUB_PORT        the public port on 127.0.0.1 (default 8000)
#   ENCLAVE_HUB_CONTAINER   the hub's container, and its bridge network (default enclave-swarm-hub)
#   ENCLAVE_NOTEBOOK_IMAGE  the workspace image (default enclave-notebook:latest)
#   ENCLAVE_HUB_IMAGE       the hub's image (default enclave-hub:latest, built by images/hub/build.sh)

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HOME_DIR="$(realpath -m "${ENCLAVE_SWARM_HOME:-${ENCLAVE_HOME:-$ROOT/var}/swarm}")"
SHARED="${ENCLAVE_SWARM_SHARED:-$HOME_DIR}"
NODE="${ENCLAVE_SWARM_NODE:-enclave-swarm-node2}"
DB="${ENCLAVE_SWARM_DB:-enclave_swarm}"
NETWORK="${ENCLAVE_SWARM_NETWORK:-enclave-swarm}"
PORT="${ENCLAVE_HUB_PORT:-8000}"
NAME="${ENCLAVE_HUB_CONTAINER:-enclave-swarm-hub}"
NB_IMAGE="${ENCLAVE_NOTEBOOK_IMAGE:-enclave-notebook:latest}"
HUB_IMAGE="${ENCLAVE_HUB_IMAGE:-enclave-hub:latest}"
STATE="$ROOT/build/swarm"  # what up-swarm made, for down-swarm (up-swarm-made-<node>)
POLICIES="$HOME_DIR/policies"
DB_URL="postgresql+psycopg://root@/$DB?host=/var/run/postgresql"
