"""The enclave on Docker Swarm: workspace containers as Swarm services.

Nothing here decides isolation. :func:`service_spec` translates exactly what
``enclave.sandbox.host_config`` and ``create_kwargs`` give a plain container into a Swarm
service, key by key, and refuses a key it does not know how to carry over (so a new
isolation setting added to the sandbox cannot be silently dropped on Swarm). Two settings
need another mechanism on Swarm, and both are checked rather than assumed:

- ``no-new-privileges``: services take no security options, so the notebook image's
  entrypoint sets it (``setpriv --no-new-privs``) before anything else runs;
  :func:`check_image` refuses an image whose entrypoint does not.
- no swap beyond the memory limit: services take no swap limit, so only nodes without
  swap get workspace services (:func:`verify_nodes` labels a node only then).

Each project has its own ``--internal --attachable`` overlay network (overlays have no
switch that stops containers on one network reaching each other, so one network per
project keeps projects apart); a batch job gets an internal overlay of its own with nothing
else on it, standing for the plain engine's ``network_mode=none``. Services are placed only
on nodes that see the shared store (the marker file below ENCLAVE_HOME) and have no swap.
With a registry (``ENCLAVE_SWARM_REGISTRY``, ``scripts/registry.sh``) services name their
image as ``<registry>/<name>@sha256:<digest>``, which every node pulls and verifies by that
digest; without one, by its id, which only a node already holding it can run. Either way
every node runs exactly the image checked and recorded, or none.
"""

from __future__ import annotations

import re
import secrets
import time
from pathlib import Path
from typing import Any

from enclave import sandbox
from enclave.config import Settings
from enclave.enums import ContainerEngine
from enclave.errors import Conflict, EnclaveError, PolicyError

# A node label: the storage marker this node sees, written by verify_nodes.
STORAGE_LABEL = "org.enclave.storage"
MARKER_NAME = ".enclave-storage-marker"
NETWORK_LABEL = "org.enclave.project-network"
# What the image's entrypoint must begin with (images/notebook/Dockerfile).
NO_NEW_PRIVS_ENTRYPOINT = ["/usr/bin/setpriv", "--no-new-privs"]
_SIZE = re.compile(r"^([1-9][0-9]*)([kmg])$")
_UNITS = {"k": 1024, "m": 1024**2, "g": 1024**3}
_REGISTRY = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:]+\](:[0-9]{1,5})?$")
_IMAGE_ID = re.compile(r"^[0-9a-f]{12,64}$")


def check_engine(settings: Settings, policy: sandbox.ContainerPolicy, engine: ContainerEngine) -> None:
    """Refuse to run ``engine``'s components under a policy naming another engine, and
    Swarm on SQLite. Raises PolicyError with one line saying what to change."""
    if policy.engine is not engine:
        raise PolicyError(
            f"policies/containers.yaml says engine: {policy.engine}, but this part of the enclave runs"
            f" on {engine}: set engine: {engine} there or configure the {policy.engine} spawner and worker"
        )
    if engine is ContainerEngine.SWARM and settings.is_sqlite:
        raise PolicyError(
            "engine: swarm needs PostgreSQL (the hub and the job workers of several machines share one"
            " database; SQLite lives on one disk): set ENCLAVE_DB_URL to a postgresql+psycopg:// URL"
        )


def size_bytes(size: str) -> int:
    """Docker's size notation (512m, 4g) in bytes."""
    match = _SIZE.match(size)
    if match is None:
        raise PolicyError(f"size {size!r} is not in Docker's notation (e.g. 512m, 4g)")
    return int(match.group(1)) * _UNITS[match.group(2)]


def _tmpfs_mount(target: str, options: str) -> dict[str, Any]:
    opts = dict(part.partition("=")[::2] for part in options.split(","))
    unknown = set(opts) - {"rw", "nosuid", "nodev", "size", "mode", "uid", "gid"}
    if unknown:
        raise Conflict(f"tmpfs option {sorted(unknown)[0]!r} for {target} has no Swarm equivalent; extend enclave.hub.swarm")
    mode = int(opts.get("mode", "0755"), 8)
    if opts.get("uid", "0") != "0":
        # Swarm tmpfs mounts cannot be given an owner: a private scratch folder for the
        # one (non-root) user of the container is then world-writable with the sticky bit.
        mode = 0o1777
    # Swarm mounts every tmpfs nosuid,nodev,noexec (stricter than the plain engine's).
    return {"Type": "tmpfs", "Target": target,
            "TmpfsOptions": {"SizeBytes": size_bytes(opts["size"]), "Mode": mode}}


def service_spec(
    policy: sandbox.ContainerPolicy,
    mounts: list[sandbox.Mount],
    *,
    name: str,
    image: str,
    args: list[str],
    env: dict[str, str],
    labels: dict[str, str],
    network: str,
    constraints: list[str],
    job: bool = False,
    configs: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Keyword arguments for docker-py's ``APIClient.create_service``: the sandbox's
    isolation of a workspace container as a Swarm service that is never restarted.

    ``args`` are the command's arguments (the image's entrypoint stays: it sets
    no-new-privileges); ``network`` is the one overlay network the service joins;
    ``configs`` are Swarm configs given to it as read-only files (a job's notebook)."""
    host = sandbox.host_config(policy, mounts, job=job)
    create = sandbox.create_kwargs(policy)
    handled = {"network_mode", "mounts", "read_only", "tmpfs", "cap_drop", "security_opt", "privileged",
               "mem_limit", "memswap_limit", "nano_cpus", "pids_limit", "ipc_mode", "dns"}
    unknown = sorted(set(host) - handled) + sorted(set(create) - {"user", "working_dir", "labels"})
    if unknown:
        raise Conflict(f"the sandbox setting {unknown[0]!r} has no Swarm translation; extend enclave.hub.swarm")
    # Each is carried over below, or is what a service gets anyway and is proven by the
    # swarm tests (ipc private, no privileges); anything else is refused.
    if host["cap_drop"] != ["ALL"] or host["privileged"] or host["ipc_mode"] != "private":
        raise Conflict("the sandbox's capabilities, privilege or IPC settings changed; extend enclave.hub.swarm")
    if host["security_opt"] != ["no-new-privileges"]:
        raise Conflict("the sandbox's security options changed; extend enclave.hub.swarm")
    if host["memswap_limit"] != host["mem_limit"]:
        raise Conflict("the sandbox allows swap; Swarm cannot limit it, extend enclave.hub.swarm")
    docker_mounts = [*host["mounts"], *(_tmpfs_mount(t, o) for t, o in host["tmpfs"].items())]
    return {
        "name": name,
        "labels": {**create["labels"], **labels},
        "task_template": {
            "ContainerSpec": {
                "Image": image,
                "Args": list(args),
                "Env": [f"{k}={v}" for k, v in env.items()],
                "User": create["user"],
                "Dir": create["working_dir"],
                "Labels": {**create["labels"], **labels},
                "Mounts": docker_mounts,
                "ReadOnly": bool(host["read_only"]),
                "CapabilityDrop": list(host["cap_drop"]),
                "DNSConfig": {"Nameservers": list(host["dns"])},
                "Configs": list(configs or []),
            },
            "Resources": {"Limits": {"MemoryBytes": size_bytes(host["mem_limit"]),
                                     "NanoCPUs": int(host["nano_cpus"]),
                                     "Pids": int(host["pids_limit"])}},
            # A workspace that stops stays stopped: the hub or the job worker decides.
            "RestartPolicy": {"Condition": "none", "MaxAttempts": 0},
            "Placement": {"Constraints": list(constraints)},
            "Networks": [{"Target": network}],
        },
    }


def check_image(client: Any, image: str, registry: str | None = None) -> str:
    """The reference Swarm services run ``image`` by, once its entrypoint is checked to set
    no-new-privileges first (Conflict otherwise).

    ``registry`` (``host:port``; None: the setting ``ENCLAVE_SWARM_REGISTRY``) empty: the
    image's id. Otherwise the pinned reference ``<registry>/<name>@sha256:<digest>`` under
    which this very image was pushed (the local image's RepoDigests), after the engine has
    found that digest in the registry and, when ``image`` is a tag, found the registry's tag
    at that same digest. An image not pushed, a registry that does not hold it or whose tag
    now names another image is refused with one line (Conflict): fail closed."""
    import docker.errors

    try:
        found = client.images.get(image)
    except docker.errors.ImageNotFound:
        raise EnclaveError(f"the notebook image {image} is missing: build it with scripts/build-images.sh") from None
    entrypoint = found.attrs.get("Config", {}).get("Entrypoint") or []
    if entrypoint[: len(NO_NEW_PRIVS_ENTRYPOINT)] != NO_NEW_PRIVS_ENTRYPOINT:
        raise Conflict(
            f"image {image} does not set no-new-privileges in its entrypoint (Swarm services cannot):"
            " rebuild it with scripts/build-images.sh"
        )
    if registry is None:
        registry = Settings.from_env().swarm_registry
    if not registry:
        return found.id
    return pinned_reference(client, found, image, registry)


def _check_registry(registry: str) -> str:
    if not _REGISTRY.match(registry):
        raise PolicyError(f"ENCLAVE_SWARM_REGISTRY {registry!r} is not host:port (e.g. 172.17.0.1:5000,"
                          " no scheme or path): set it to the address scripts/registry.sh up prints")
    return registry


def _repository_and_tag(image: str, registry: str) -> tuple[str | None, str | None]:
    """The repository (without the registry) and tag ``image`` names; (None, None) for an id."""
    if image.startswith("sha256:") or _IMAGE_ID.match(image):
        return None, None
    name = image.removeprefix(f"{registry}/")
    if "@" in name:
        return name.split("@", 1)[0], None
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        repository, tag = name.rsplit(":", 1)
        return repository, tag
    return name, "latest"


def _registry_digest(client: Any, reference: str, registry: str) -> str | None:
    """The manifest digest the registry gives for ``reference``, asked through the engine
    (which trusts the registry's CA in /etc/docker/certs.d); None if it holds no such
    manifest; Conflict if it cannot be asked."""
    import docker.errors

    try:
        return client.api.inspect_distribution(reference)["Descriptor"]["digest"]
    except docker.errors.NotFound:
        return None
    except docker.errors.APIError as exc:
        reason = str(exc.explanation or exc).splitlines()[0]
        raise Conflict(f"the registry {registry} did not answer the Docker engine for {reference} ({reason}):"
                       " start it with scripts/registry.sh up") from None


def pinned_reference(client: Any, found: Any, image: str, registry: str) -> str:
    """``<registry>/<name>@sha256:<digest>`` for the local image ``found`` (named ``image``
    by the caller): see :func:`check_image`."""
    prefix = f"{_check_registry(registry)}/"
    repository, tag = _repository_and_tag(image, registry)
    pushed = sorted(d for d in found.attrs.get("RepoDigests") or [] if d.startswith(prefix))
    if repository is not None:
        pushed = [d for d in pushed if d.split("@", 1)[0] == f"{prefix}{repository}"]
    if repository is None:
        name = found.tags[0] if found.tags else "NAME:TAG"
    else:
        name = f"{repository}:{tag}" if tag else repository
    push = f"push it with scripts/registry.sh push {name}"
    if not pushed:
        raise Conflict(f"image {image} ({found.id[7:19]}) is not in the registry {registry}: {push}")
    if tag is not None:
        current = _registry_digest(client, f"{prefix}{repository}:{tag}", registry)
        if current is None:
            raise Conflict(f"the registry {registry} has no {repository}:{tag}: {push}")
        reference = f"{prefix}{repository}@{current}"
        if reference not in pushed:
            raise Conflict(f"the registry's {repository}:{tag} ({current[7:19]}) is not the image {image} here"
                           f" ({found.id[7:19]}): {push} again")
        return reference
    wanted = [image] if image in pushed else pushed
    for reference in wanted:
        if _registry_digest(client, reference, registry) == reference.split("@", 1)[1]:
            return reference
    raise Conflict(f"the registry {registry} no longer holds image {image} ({found.id[7:19]}): {push}")


def project_network_name(policy: sandbox.ContainerPolicy, slug: str) -> str:
    return f"{policy.network}-{slug}"


def ensure_overlay(client: Any, name: str, *, attachable: bool = True, labels: dict[str, str] | None = None) -> str:
    """Create (or check) the ``--internal`` overlay network ``name``; return its id. An
    existing network of that name that is not an internal overlay raises Conflict."""
    import docker.errors

    try:
        network = client.networks.get(name)
    except docker.errors.NotFound:
        try:
            network = client.networks.create(name, driver="overlay", internal=True, attachable=attachable,
                                             check_duplicate=True,
                                             labels={sandbox.SANDBOX_LABEL: "1", **(labels or {})})
        except docker.errors.APIError:
            network = client.networks.get(name)  # created concurrently
    attrs = network.attrs
    for _ in range(20):
        # Just after it is made, the manager can describe a network before it knows its driver.
        if attrs.get("Driver"):
            break
        time.sleep(0.25)
        network.reload()
        attrs = network.attrs
    if attrs.get("Driver") != "overlay" or not attrs.get("Internal"):
        raise Conflict(f"Docker network {name!r} exists but is not an --internal overlay ({attrs.get('Driver')},"
                       f" internal {attrs.get('Internal')}); remove it (docker network rm {name})")
    return network.id


def ensure_project_network(client: Any, policy: sandbox.ContainerPolicy, slug: str) -> str:
    """The project's own internal, attachable overlay network (the hub and job workers
    join it; no other project's containers do); returns its name."""
    name = project_network_name(policy, slug)
    ensure_overlay(client, name, labels={NETWORK_LABEL: slug})
    return name


# --- the shared store: every node must see the same tree ----------------------------------

def ensure_marker(home: Path) -> str:
    """The random marker in ENCLAVE_HOME, created on first use; nodes that read the same
    value from the same path see the same shared store."""
    path = home / MARKER_NAME
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True)
        tmp = home / f"{MARKER_NAME}.{secrets.token_hex(4)}"
        tmp.write_text(secrets.token_hex(16) + "\n")
        tmp.chmod(0o644)
        tmp.replace(path)
    return path.read_text().strip()


def placement_constraints(marker: str) -> list[str]:
    """Where workspace services may run: nodes labelled with this store's marker."""
    return [f"node.labels.{STORAGE_LABEL} == {marker}"]


_CHECK_SCRIPT = (
    'm=$(cat "$1" 2>/dev/null || echo none);'
    " s=$(awk '/^SwapTotal:/ {print $2}' /proc/meminfo);"
    ' echo "marker=$m swap=$s"'
)


def verify_nodes(client: Any, home: Path, image: str, *, include_managers: bool = False,
                 timeout: float = 300.0) -> dict[str, str]:
    """Check each ready worker node with a one-shot service: it must read ENCLAVE_HOME's
    marker at the same path and have no swap. A node that passes gets the storage label,
    any other node loses it (so nothing is placed there). Managers run the hub and hold
    the keys and the database, so they get no workspace unless ``include_managers`` (a
    one-machine swarm). Returns {node hostname: verdict}."""
    marker = ensure_marker(home)
    image_id = check_image(client, image)
    verdicts: dict[str, str] = {}
    checks = {}
    for node in client.nodes.list():
        attrs = node.attrs
        host = attrs["Description"]["Hostname"]
        if attrs["Status"]["State"] != "ready" or attrs["Spec"].get("Availability") != "active":
            verdicts[host] = "not ready"
            _label(node, None)
            continue
        if attrs["Spec"].get("Role") == "manager" and not include_managers:
            verdicts[host] = "manager: no workspaces"
            _label(node, None)
            continue
        name = f"enclave-nodecheck-{secrets.token_hex(4)}"
        checks[host] = (node, client.services.create(
            image_id, name=name, args=["sh", "-c", _CHECK_SCRIPT, "check", f"/shared/{MARKER_NAME}"],
            mounts=[f"{home}:/shared:ro"], constraints=[f"node.id == {node.id}"],
            # root (the owner of ENCLAVE_HOME, 0700) but with no capability and nothing writable
            restart_policy={"Condition": "none"}, user="0:0", cap_drop=["ALL"], read_only=True,
            labels={sandbox.SANDBOX_LABEL: "1"}))
    deadline = time.monotonic() + timeout
    for host, (node, service) in checks.items():
        verdict = "no answer"
        try:
            while time.monotonic() < deadline:
                tasks = service.tasks()
                states = {t["Status"]["State"] for t in tasks}
                if states & {"complete", "failed", "rejected"}:
                    out = b"".join(service.logs(stdout=True, stderr=True)).decode(errors="replace")
                    if f"marker={marker} swap=0" in out:
                        verdict = "ok"
                    elif "marker=" in out:
                        seen = out.split("marker=", 1)[1].split()[0]
                        verdict = "no swap allowed" if seen == marker else "does not see the shared store"
                    else:
                        errors = [t["Status"].get("Err", "") for t in tasks]
                        verdict = f"check failed: {next((e for e in errors if e), 'no output')}"
                    break
                time.sleep(0.5)
        finally:
            service.remove()
        verdicts[host] = verdict
        _label(node, marker if verdict == "ok" else None)
    return verdicts


def _label(node: Any, marker: str | None) -> None:
    node.reload()
    spec = dict(node.attrs["Spec"])
    labels = dict(spec.get("Labels") or {})
    if marker is None:
        if STORAGE_LABEL not in labels:
            return
        labels.pop(STORAGE_LABEL)
    else:
        if labels.get(STORAGE_LABEL) == marker:
            return
        labels[STORAGE_LABEL] = marker
    spec["Labels"] = labels
    node.update(spec)
