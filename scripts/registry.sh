#!/usr/bin/env bash
# The enclave's internal image registry on the Swarm manager: Debian's docker-registry
# (the CNCF distribution server), over TLS with a private CA, so every node pulls exactly
# the image the hub checked and the provenance records, by digest, without the internet.
#
#   scripts/registry.sh up              start it (idempotent) and trust its CA on this host;
#                                       prints its address (host:port)
#   scripts/registry.sh push IMAGE      tag IMAGE (name[:tag]) into the registry, push it and
#                                       print the pinned reference <address>/<name>@sha256:<digest>
#   scripts/registry.sh trust CONTAINER put the CA into the certs.d of the engine that runs in
#                                       CONTAINER (a simulated node); no engine restarts
#   scripts/registry.sh address         print the address
#   scripts/registry.sh status          exit 0 if it runs
#   scripts/registry.sh down            stop it (the images stay in its storage)
#
#   ENCLAVE_REGISTRY_PORT   its port (default 5000) on this host's docker0 address, which
#                           every node container reaches and no workspace does
#   ENCLAVE_REGISTRY_DIR    its CA, certificate, configuration, storage, log and pid file
#                           (default build/registry in the repository)
#
# The enclave uses it when ENCLAVE_SWARM_REGISTRY is set to the printed address (the hub and
# the job workers): services then run <address>/<name>@sha256:<digest>. Engines trust the
# registry through /etc/docker/certs.d/<address>/ca.crt, which they read on each connection:
# nothing is marked insecure in a daemon configuration and no engine is restarted.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PORT="${ENCLAVE_REGISTRY_PORT:-5000}"
DIR="${ENCLAVE_REGISTRY_DIR:-$ROOT/build/registry}"
BIN=/usr/bin/docker-registry
RUN_AS=docker-registry  # the package's own unprivileged user

say() { echo "[registry] $*" >&2; }
die() { say "$*"; exit 1; }

host_addr() {
    local addr
    addr="$(ip -4 -o addr show docker0 2>/dev/null | awk '{print $4}' | cut -d/ -f1 | head -n 1)"
    [[ -n "$addr" ]] || die "no docker0 address: start the engine (scripts/ensure-docker.sh)"
    echo "$addr"
}

address() { echo "$(host_addr):$PORT"; }

pid_alive() {
    local pid
    pid="$(cat "$DIR/registry.pid" 2>/dev/null || true)"
    [[ -n "$pid" ]] && [[ "$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" || true)" == "$BIN serve $DIR/config.yml "* ]]
}

answers() {
    curl -fsS --max-time 5 --cacert "$DIR/ca.crt" "https://$(address)/v2/" >/dev/null 2>&1
}

# A private CA (kept in $DIR, key 0600) and a server certificate for this host's docker0
# address, renewed when the address changes.
certificates() (
    local addr="$1"
    umask 077
    if [[ ! -s "$DIR/ca.key" || ! -s "$DIR/ca.crt" ]]; then
        say "making the registry's private CA"
        openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -sha256 -days 3650 \
            -subj "/CN=Enclave internal registry CA" -keyout "$DIR/ca.key" -out "$DIR/ca.crt" \
            -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
            -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
        rm -f "$DIR/server.crt"
    fi
    if [[ -s "$DIR/server.crt" ]] && openssl x509 -in "$DIR/server.crt" -noout -checkip "$addr" 2>/dev/null \
            | grep -q "does match" && openssl verify -CAfile "$DIR/ca.crt" "$DIR/server.crt" >/dev/null 2>&1 \
            && openssl x509 -in "$DIR/server.crt" -noout -checkend 86400 >/dev/null; then
        return
    fi
    say "making the server certificate for $addr"
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -sha256 \
        -subj "/CN=$addr" -keyout "$DIR/server.key" -out "$DIR/server.csr" 2>/dev/null
    printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:%s\n' \
        "$addr" >"$DIR/server.ext"
    openssl x509 -req -in "$DIR/server.csr" -CA "$DIR/ca.crt" -CAkey "$DIR/ca.key" -CAcreateserial -sha256 \
        -days 825 -extfile "$DIR/server.ext" -out "$DIR/server.crt" 2>/dev/null
    rm -f "$DIR/server.csr" "$DIR/server.ext"
    chmod 0644 "$DIR/ca.crt" "$DIR/server.crt"
)

config() {
    local addr="$1"
    [[ -s "$DIR/http.secret" ]] || (umask 077; openssl rand -hex 32 >"$DIR/http.secret")
    cat >"$DIR/config.yml.new" <<EOF
# Written by scripts/registry.sh; edits are overwritten.
version: 0.1
log:
  level: info
  fields:
    service: enclave-registry
storage:
  filesystem:
    rootdirectory: $DIR/storage
  # Nothing pushed is ever deleted through the API: a digest a run recorded stays pullable.
  delete:
    enabled: false
  cache:
    blobdescriptor: inmemory
http:
  addr: $addr:$PORT
  secret: $(cat "$DIR/http.secret")
  tls:
    certificate: $DIR/server.crt
    key: $DIR/server.key
    minimumtls: tls1.2
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
EOF
    mv "$DIR/config.yml.new" "$DIR/config.yml"
}

# Engines read /etc/docker/certs.d/<address>/ on each connection: trusting the CA there
# needs no restart and touches no daemon configuration.
trust_host() {
    local certs="/etc/docker/certs.d/$(address)"
    install -d -m 0755 /etc/docker/certs.d "$certs"
    install -m 0644 "$DIR/ca.crt" "$certs/ca.crt"
}

up() {
    command -v "$BIN" >/dev/null 2>&1 || die "$BIN is missing: run scripts/install-system.sh (Debian's docker-registry)"
    id -u "$RUN_AS" >/dev/null 2>&1 || die "user $RUN_AS is missing: reinstall Debian's docker-registry package"
    local addr
    addr="$(host_addr)"
    mkdir -p "$DIR/storage"
    chmod 0755 "$DIR"
    certificates "$addr"
    trust_host
    if pid_alive && answers; then
        address
        return
    fi
    if pid_alive; then
        kill "$(cat "$DIR/registry.pid")" 2>/dev/null || true
        sleep 1
    fi
    config "$addr"
    # The registry runs as its own user: it reads its key and writes only its storage.
    chown -R "$RUN_AS:$RUN_AS" "$DIR/storage"
    chown "$RUN_AS" "$DIR/server.key" "$DIR/config.yml"
    chmod 0600 "$DIR/server.key" "$DIR/config.yml"
    say "starting the registry on https://$addr:$PORT (log: $DIR/registry.log)"
    (cd "$DIR" && exec setsid setpriv --reuid="$RUN_AS" --regid="$RUN_AS" --init-groups --no-new-privs \
        "$BIN" serve "$DIR/config.yml" >>"$DIR/registry.log" 2>&1 </dev/null) &
    echo $! >"$DIR/registry.pid"
    for _ in $(seq 1 120); do
        answers && { address; return; }
        pid_alive || break
        sleep 0.5
    done
    tail -n 20 "$DIR/registry.log" >&2 || true
    die "the registry did not answer on https://$addr:$PORT"
}

down() {
    if pid_alive; then
        say "stopping the registry"
        local pid
        pid="$(cat "$DIR/registry.pid")"
        kill "$pid"
        for _ in $(seq 1 40); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.25
        done
    fi
    rm -f "$DIR/registry.pid"
}

push() {
    local image="${1:-}"
    [[ -n "$image" ]] || die "usage: scripts/registry.sh push IMAGE (a name[:tag] this engine holds)"
    docker image inspect "$image" >/dev/null 2>&1 || die "no image $image here: build it first (scripts/build-images.sh)"
    answers || die "the registry does not answer at $(address): start it with scripts/registry.sh up"
    local reg repo name tag
    reg="$(address)"
    name="${image#"$reg/"}"
    [[ "$name" != *@* && "$name" != sha256:* ]] || die "push an image by name[:tag], not by digest or id: $image"
    repo="${name%:*}"
    tag="${name##*:}"
    if [[ "$repo" == "$name" || "$tag" == */* ]]; then
        repo="$name"
        tag=latest
    fi
    docker tag "$image" "$reg/$repo:$tag"
    local out digest
    out="$(docker push "$reg/$repo:$tag" 2>&1)" || { echo "$out" | tail -n 5 >&2; die "pushing $image to $reg failed"; }
    digest="$(echo "$out" | sed -n 's/^.*digest: \(sha256:[0-9a-f]\{64\}\).*$/\1/p' | tail -n 1)"
    [[ -n "$digest" ]] || { echo "$out" | tail -n 5 >&2; die "the push of $image gave no digest"; }
    echo "$reg/$repo@$digest"
}

trust() {
    local container="${1:-}"
    [[ -n "$container" ]] || die "usage: scripts/registry.sh trust CONTAINER"
    [[ -s "$DIR/ca.crt" ]] || die "no CA yet: run scripts/registry.sh up"
    local certs="/etc/docker/certs.d/$(address)"
    docker exec -i "$container" sh -c "mkdir -p '$certs' && cat >'$certs/ca.crt.new' && chmod 0644 '$certs/ca.crt.new' \
        && mv '$certs/ca.crt.new' '$certs/ca.crt'" <"$DIR/ca.crt"
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    push) push "${2:-}" ;;
    trust) trust "${2:-}" ;;
    address) address ;;
    status) pid_alive && answers ;;
    *) echo "usage: scripts/registry.sh up|push IMAGE|trust CONTAINER|address|status|down" >&2; exit 2 ;;
esac
