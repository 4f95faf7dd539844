#!/usr/bin/env bash
# Build the notebook image offline from the host-side wheelhouse, unless an image with
# the same inputs already exists. Called by scripts/build-images.sh (which provides the
# base image first and holds the build lock; do not run two of these at once).
#
# Inputs hashed into the image label org.enclave.inputs: the base image's id, this
# directory's Dockerfile, requirements.txt, constraints.txt and Jupyter config,
# pyproject.toml and every file of the enclave package. Same hash -> nothing to do.
set -euo pipefail

step() { echo "[notebook] $*" >&2; }
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"   # ROOT BUILD BASE LABEL PY, skip_if_unchanged
HERE="$ROOT/images/notebook"
IMAGE="${ENCLAVE_NOTEBOOK_IMAGE:-enclave-notebook:latest}"

skip_if_unchanged "$IMAGE" images/notebook/Dockerfile images/notebook/requirements.txt \
    images/notebook/constraints.txt images/notebook/*.json pyproject.toml

mkdir -p "$BUILD/wheels"
platforms=()
for p in manylinux_2_28 manylinux_2_17 manylinux2014; do platforms+=(--platform "${p}_$(uname -m)"); done
download=("$PY" -m pip download -q --disable-pip-version-check -d "$BUILD/wheels"
          --python-version 3.13 --only-binary=:all: "${platforms[@]}" --platform any
          -r "$HERE/requirements.txt" -c "$HERE/constraints.txt")
# A complete wheelhouse (warm, or vetted and copied in on an air-gapped site) needs no network.
if "${download[@]}" --no-index --find-links "$BUILD/wheels" >/dev/null 2>&1; then
    step "wheelhouse build/wheels is complete"
else
    step "downloading wheels for Python 3.13 into build/wheels"
    # (pip's notes about configured local indexes that do not list a package are noise here)
    "${download[@]}" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
fi

step "building the enclave wheel"
rm -rf "$BUILD/enclave-src" "$BUILD/notebook-context"
mkdir -p "$BUILD/enclave-src" "$BUILD/notebook-context/enclave-wheel"
# Build from a clean copy: no __pycache__, no egg-info left in the working tree.
tar -C "$ROOT" --exclude=__pycache__ --exclude='*.pyc' -cf - enclave pyproject.toml \
    | tar -C "$BUILD/enclave-src" -xf -
"$PY" -m pip wheel -q --disable-pip-version-check --no-deps \
    -w "$BUILD/notebook-context/enclave-wheel" "$BUILD/enclave-src" >/dev/null 2>"$BUILD/enclave-wheel.log" \
    || "$PY" -m pip wheel -q --disable-pip-version-check --no-deps --no-build-isolation \
        -w "$BUILD/notebook-context/enclave-wheel" "$BUILD/enclave-src" >/dev/null \
    || { cat "$BUILD/enclave-wheel.log" >&2; exit 1; }

if ! compgen -G "$BUILD/notebook-context/enclave-wheel/enclave-*.whl" >/dev/null; then
    step "no enclave wheel was built; see build/enclave-wheel.log"
    exit 1
fi

cp "$HERE/Dockerfile" "$HERE/requirements.txt" "$HERE/constraints.txt" "$HERE"/*.json "$BUILD/notebook-context/"
cp -al "$BUILD/wheels" "$BUILD/notebook-context/wheels"   # hard links: instant, no extra space

step "docker build -> $IMAGE (full log: build/notebook-build.log)"
# The legacy builder everywhere: Debian's docker.io has no buildx. Step lines show progress.
if ! DOCKER_BUILDKIT=0 docker build \
        --build-arg "BASE_IMAGE=$BASE" \
        --label "$LABEL=$inputs_hash" \
        -t "$IMAGE" "$BUILD/notebook-context" 2>&1 \
        | tee "$BUILD/notebook-build.log" \
        | { grep --line-buffered -E '^Step [0-9]+/' || true; } \
        | cut -c1-100 | sed -u 's/^/[notebook]   /' >&2; then
    tail -n 30 "$BUILD/notebook-build.log" >&2
    step "docker build failed"
    exit 1
fi
rm -rf "$BUILD/notebook-context" "$BUILD/enclave-src"
step "built $IMAGE ($(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}'), inputs ${inputs_hash:0:12})"
