#!/usr/bin/env bash
# Provide the base image the notebook image builds FROM.
#
#   ENCLAVE_BASE_IMAGE   image name (default enclave-base:trixie)
#
# Order: reuse the image if the engine already has it; for a non-default name (a site with
# a registry, e.g. python:3.13-slim) try `docker pull`; otherwise, or when the pull fails,
# build a Debian trixie minbase root filesystem with debootstrap and `docker import` it.
# Prints the image name on the last line of stdout; progress goes to stderr.
set -euo pipefail

DEFAULT_IMAGE=enclave-base:trixie
IMAGE="${ENCLAVE_BASE_IMAGE:-$DEFAULT_IMAGE}"
SUITE=trixie
MIRROR="${ENCLAVE_DEBIAN_MIRROR:-http://deb.debian.org/debian}"

step() { echo "[base] $*" >&2; }

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
    step "reusing $IMAGE (already in the engine)"
    echo "$IMAGE"
    exit 0
fi

if [[ "$IMAGE" != "$DEFAULT_IMAGE" ]]; then
    step "pulling $IMAGE"
    if docker pull --quiet "$IMAGE" >&2; then
        echo "$IMAGE"
        exit 0
    fi
    step "pull of $IMAGE failed; building it from Debian $SUITE instead"
fi

if ! command -v debootstrap >/dev/null 2>&1; then
    step "installing debootstrap"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >&2
fi

ROOTFS="$(mktemp -d "${TMPDIR:-/tmp}/enclave-rootfs.XXXXXX")"
trap 'rm -rf "$ROOTFS"' EXIT

step "debootstrap --variant=minbase $SUITE (about 30 s)"
debootstrap --variant=minbase "$SUITE" "$ROOTFS" "$MIRROR" >"$ROOTFS.log" 2>&1 || {
    tail -20 "$ROOTFS.log" >&2
    step "debootstrap failed; full log in $ROOTFS.log"
    exit 1
}
rm -f "$ROOTFS.log"
# Package lists and caches only make the image bigger; the notebook build runs apt-get update.
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/var/cache/apt/archives/*.deb

step "docker import -> $IMAGE"
tar -C "$ROOTFS" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' \
    --message "Debian $SUITE minbase for the enclave" \
    - "$IMAGE" >/dev/null
step "built $IMAGE"
echo "$IMAGE"
