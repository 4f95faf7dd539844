#!/usr/bin/env bash
# `make up`, after the installs, the services and the images: migrate the database, create
# the demo enclave (idempotent), start JupyterHub on http://127.0.0.1:8000 and print how
# to sign in.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export ENCLAVE_HOME="$(realpath -m "${ENCLAVE_HOME:-$ROOT/var}")"
E="$ROOT/.venv/bin/enclave"

say() { echo "[up] $*" >&2; }

say "checking policies"
"$E" policy check >/dev/null
say "migrating the database in $ENCLAVE_HOME"
"$E" db upgrade >/dev/null
say "creating the demo enclave (people, projects, synthetic data, grants)"
"$E" demo setup >"$ENCLAVE_HOME/demo-signin.txt"
say "starting JupyterHub"
bash "$ROOT/scripts/start-hub.sh"

cat <<MSG

Enclave is running at http://127.0.0.1:8000/
$(cat "$ENCLAVE_HOME/demo-signin.txt")

Consoles: http://127.0.0.1:8000/services/enclave/   Public register: http://127.0.0.1:8000/services/enclave/register
Admin CLI: source .venv/bin/activate && enclave --as admin project list
Stop: make down
MSG
