#!/usr/bin/env bash
# Build the hub image (engine: swarm) offline, unless an image with the same inputs exists.
# Called by scripts/up-swarm.sh under the image build lock (build/.images.lock), after
# scripts/build-images.sh has provided the base image.
#
#   ENCLAVE_BASE_IMAGE   base image (default enclave-base:trixie)
#   ENCLAVE_HUB_IMAGE    the hub image (default enclave-hub:latest)
#   ENCLAVE_REBUILD=1    rebuild even if the inputs are unchanged
#
# Inputs hashed into the label org.enclave.inputs: the base image's id, this directory,
# requirements.txt, pyproject.toml, jupyterhub_config.py, every file of the enclave
# package, and the proxy's package.json. Python wheels for 3.13 come from build/hub-wheels
# (downloaded on the host, reusing build/wheels); the proxy's JavaScript is the host's npm
# install of configurable-http-proxy. Nothing inside the build reaches a package index.
set -euo pipefail

step() { echo "[hub-image] $*" >&2; }
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"   # ROOT BUILD BASE LABEL PY, skip_if_unchanged
HERE="$ROOT/images/hub"
CTX="$BUILD/hub-context"
IMAGE="${ENCLAVE_HUB_IMAGE:-enclave-hub:latest}"

chp_bin="$(command -v configurable-http-proxy || true)"
[[ -n "$chp_bin" ]] || { step "configurable-http-proxy is missing on this host: run make deps"; exit 1; }
CHP="$(cd "$(dirname "$(readlink -f "$chp_bin")")/.." && pwd)"
[[ -f "$CHP/package.json" ]] || { step "no package.json beside $(readlink -f "$chp_bin"): reinstall it with npm install -g configurable-http-proxy"; exit 1; }

skip_if_unchanged "$IMAGE" images/hub/* requirements.txt pyproject.toml jupyterhub_config.py "$CHP/package.json"

mkdir -p "$BUILD/hub-wheels"
platforms=()
for p in manylinux_2_28 manylinux_2_17 manylinux2014; do platforms+=(--platform "${p}_$(uname -m)"); done
# requirements.txt pins every package (a full freeze), so --no-deps loses nothing and lets
# the few packages published only as source (onetimepass) come as sdists.
download=("$PY" -m pip download -q --disable-pip-version-check -d "$BUILD/hub-wheels" --no-deps --prefer-binary
          --python-version 3.13 "${platforms[@]}" --platform any -r "$ROOT/requirements.txt")
if "${download[@]}" --no-index --find-links "$BUILD/hub-wheels" >/dev/null 2>&1; then
    step "wheelhouse build/hub-wheels is complete"
else
    step "downloading wheels for Python 3.13 into build/hub-wheels"
    # The notebook image's wheelhouse holds many of them already.
    "${download[@]}" --find-links "$BUILD/wheels" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
fi
# Source-only packages become wheels here (pure Python: one wheel serves 3.13).
for sdist in "$BUILD"/hub-wheels/*.tar.gz "$BUILD"/hub-wheels/*.zip; do
    [[ -e "$sdist" ]] || continue
    "$PY" -m pip wheel -q --disable-pip-version-check --no-deps -w "$BUILD/hub-wheels" "$sdist" >/dev/null
    rm -f "$sdist"
done

step "building the enclave wheel"
rm -rf "$CTX" "$BUILD/hub-src"
mkdir -p "$CTX/enclave-wheel" "$BUILD/hub-src"
tar -C "$ROOT" --exclude=__pycache__ --exclude='*.pyc' -cf - enclave pyproject.toml | tar -C "$BUILD/hub-src" -xf -
wheel=("$PY" -m pip wheel -q --disable-pip-version-check --no-deps -w "$CTX/enclave-wheel" "$BUILD/hub-src")
"${wheel[@]}" >"$BUILD/hub-wheel.log" 2>&1 || "${wheel[@]}" --no-build-isolation >>"$BUILD/hub-wheel.log" 2>&1 \
    || { tail -n 20 "$BUILD/hub-wheel.log" >&2; step "the enclave wheel did not build"; exit 1; }

cp "$HERE/Dockerfile" "$ROOT/requirements.txt" "$ROOT/jupyterhub_config.py" "$CTX/"
cp -a "$CHP" "$CTX/configurable-http-proxy"
cp -al "$BUILD/hub-wheels" "$CTX/wheels"

step "docker build -> $IMAGE (full log: build/hub-build.log)"
if ! DOCKER_BUILDKIT=0 docker build --build-arg "BASE_IMAGE=$BASE" --label "$LABEL=$inputs_hash" \
        -t "$IMAGE" "$CTX" >"$BUILD/hub-build.log" 2>&1; then
    tail -n 30 "$BUILD/hub-build.log" >&2
    step "docker build failed"
    exit 1
fi
rm -rf "$CTX" "$BUILD/hub-src"
step "built $IMAGE ($(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}'), inputs ${inputs_hash:0:12})"
