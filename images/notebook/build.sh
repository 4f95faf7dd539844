#!/usr/bin/env bash
# Build the notebook image offline from the host-side wheelhouse, unless an image with
# the same inputs already exists. Called by scripts/build-images.sh (which provides the
# base image first and holds the build lock; do not run two of these at once).
#
# Inputs hashed into the image label org.enclave.inputs: the base image's id, this
# directory's Dockerfile, requirements.txt, constraints.txt and Jupyter config,
# pyproject.toml and every file of the enclave package. Same hash -> nothing to do.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/images/notebook"
BUILD="$ROOT/build"
IMAGE="${ENCLAVE_NOTEBOOK_IMAGE:-enclave-notebook:latest}"
BASE="${ENCLAVE_BASE_IMAGE:-enclave-base:trixie}"
LABEL=org.enclave.inputs
if [[ -x "$ROOT/.venv/bin/python" ]]; then PY="$ROOT/.venv/bin/python"; else PY=python3; fi

step() { echo "[notebook] $*" >&2; }

base_id="$(docker image inspect -f '{{.Id}}' "$BASE")"
inputs_hash="$(
    cd "$ROOT"
    echo "base $base_id"
    sha256sum images/notebook/Dockerfile images/notebook/requirements.txt \
        images/notebook/constraints.txt images/notebook/*.json pyproject.toml
    find enclave -type f ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 | sort -z | xargs -0 sha256sum
)"
inputs_hash="$(sha256sum <<<"$inputs_hash" | cut -c1-64)"
current="$(docker image inspect -f "{{ index .Config.Labels \"$LABEL\" }}" "$IMAGE" 2>/dev/null || true)"
if [[ "$current" == "$inputs_hash" && "${ENCLAVE_REBUILD:-0}" != 1 ]]; then
    step "up to date: $IMAGE (inputs ${inputs_hash:0:12})"
    exit 0
fi

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
