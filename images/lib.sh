# Sourced by images/<image>/build.sh (after `set -euo pipefail` and a step() that prints
# one progress line): the settings every image build shares, and the step that skips a build
# whose inputs are unchanged. Sets ROOT, BUILD, BASE, LABEL and PY, and works from ROOT, so
# the inputs below are named relative to the repository.
#
#   ENCLAVE_BASE_IMAGE   base image (default enclave-base:trixie)
#   ENCLAVE_REBUILD=1    rebuild even if the inputs are unchanged

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="$ROOT/build"
BASE="${ENCLAVE_BASE_IMAGE:-enclave-base:trixie}"
LABEL=org.enclave.inputs
if [[ -x "$ROOT/.venv/bin/python" ]]; then PY="$ROOT/.venv/bin/python"; else PY=python3; fi
cd "$ROOT"

# skip_if_unchanged IMAGE FILE...: sets inputs_hash, the hash IMAGE is labelled with: of
# the base image's id, the FILEs and every file of the enclave package (names and contents),
# so that an edit to any of them rebuilds it. Ends the build (exit 0) when IMAGE already
# carries that hash, unless ENCLAVE_REBUILD=1.
skip_if_unchanged() {
    local image="$1" base_id current
    shift
    base_id="$(docker image inspect -f '{{.Id}}' "$BASE" 2>/dev/null)" \
        || { step "base image $BASE is missing: run scripts/build-images.sh"; exit 1; }
    inputs_hash="$(
        echo "base $base_id"
        sha256sum "$@"
        find enclave -type f ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 | sort -z | xargs -0 sha256sum
    )"
    inputs_hash="$(sha256sum <<<"$inputs_hash" | cut -c1-64)"
    current="$(docker image inspect -f "{{ index .Config.Labels \"$LABEL\" }}" "$image" 2>/dev/null || true)"
    if [[ "$current" == "$inputs_hash" && "${ENCLAVE_REBUILD:-0}" != 1 ]]; then
        step "up to date: $image (inputs ${inputs_hash:0:12})"
        exit 0
    fi
}
