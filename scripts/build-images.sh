#!/usr/bin/env bash
# Build the enclave's container images: the base image, then the notebook image.
# The single entry point for `make images`, CI and the Docker tests. Each step skips
# itself when its result is already there (see docs/containers.md).
#
#   ENCLAVE_BASE_IMAGE      base image (default enclave-base:trixie)
#   ENCLAVE_NOTEBOOK_IMAGE  notebook image (default enclave-notebook:latest)
#   ENCLAVE_REBUILD=1       rebuild the notebook image even if its inputs are unchanged
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
start=$SECONDS

"$ROOT/scripts/ensure-docker.sh"
# One build at a time on a machine: concurrent runs (several test sessions) share build/.
mkdir -p "$ROOT/build"
exec 9>"$ROOT/build/.images.lock"
flock 9
base="$("$ROOT/images/base/build.sh" | tail -n 1)"
ENCLAVE_BASE_IMAGE="$base" "$ROOT/images/notebook/build.sh"
echo "[images] done in $((SECONDS - start)) s" >&2
