"""Who may open which project server, and what it sees: the service layer behind
EnclaveSpawner (no JupyterHub or Docker imports here, so it is tested without either).

A project server is one named JupyterHub server per (user, project); its name is the
project's slug. It may start only while the project is active, the user is a member
and the user's training is current; it mounts the project's live views read-only at
``/data/<dataset>``, the project's shared workspace read-write at
``/home/jovyan/project`` and a copy of the site's disclosure policy read-only at
``/etc/enclave/policies``, and nothing else of the enclave's state.
"""

from __future__ import annotations

import datetime as dt
import importlib
import os
import re
import secrets
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from enclave.config import Settings
from enclave.db.models import Grant, Project, User
from enclave.enums import ProjectStatus
from enclave.errors import PermissionDenied, PolicyError
from enclave.incidents import check_not_suspended
from enclave.permissions import is_member
from enclave.policy import POLICY_FILES as POLICY_MODELS
from enclave.policy import parse_policy_bytes, read_policy_bytes
from enclave.projects.service import projects_of
from enclave.sandbox import POLICIES_PATH, POLICY_FILES
from enclave.users import find_user
from enclave.workspace_fs import LinkRefused, open_workspace

WORKSPACE_TARGET = "/home/jovyan/project"
DATA_TARGET = "/data"
NOTEBOOK_UID = 1000
NOTEBOOK_GID = 100
# What may appear as a directory name under /data (dataset names are validated on
# ingest; this is the spawner's own guard against a path escaping /data).
DATASET_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

# (dataset name, host path of the project's read-only view) for each live grant.
ViewsProvider = Callable[[Session, Project], list[tuple[str, Path]]]


class ServerAction(StrEnum):
    SPAWN = "hub.server_start"
    STOP = "hub.server_stop"
    REFUSE = "hub.server_refused"
    ENFORCE_STOP = "hub.server_enforced_stop"


@dataclass(frozen=True)
class ProjectMount:
    """One bind mount of a project server (host path -> container path)."""

    source: Path
    target: str
    read_only: bool


def spawnable_projects(session: Session, user: User) -> list[Project]:
    """The projects whose server ``user`` may open now: member, and the project active."""
    return projects_of(session, user, ProjectStatus.ACTIVE)


def check_can_spawn(session: Session, user_name: str, slug: str, now: dt.datetime) -> tuple[User, Project]:
    """Return (user, project) if ``user_name`` may open project ``slug`` at ``now``; else
    raise PermissionDenied with one line saying why and what to do.

    A project that had data grants and has none live any more (all expired or revoked)
    is refused too: its approval to use data has lapsed. A project that never had a
    grant may open (to prepare code in its workspace)."""
    user = find_user(session, user_name)
    if user is None:
        raise PermissionDenied(f"{user_name} is not an enclave user: ask an admin to add you")
    check_not_suspended(session, user)  # an open incident or a disabled account
    if not slug:
        names = ", ".join(p.slug for p in spawnable_projects(session, user)) or "none yet"
        raise PermissionDenied(
            f"open a project server by its project name (/hub/spawn/{user_name}/<project>); your active projects: {names}"
        )
    project = session.scalars(select(Project).where(Project.slug == slug)).one_or_none()
    if project is None or not is_member(user, project):
        # Same answer for "no such project" and "not yours": project names are not disclosed.
        raise PermissionDenied(f"{user_name} is not a member of a project named {slug!r}: ask its PI to add you")
    if project.status is not ProjectStatus.ACTIVE:
        raise PermissionDenied(
            f"project {slug} is {project.status.value}, not active: servers open only while a project is active"
        )
    if not user.training_valid_on(now.date()):
        when = f"expired on {user.training_expires}" if user.training_expires else "is not recorded"
        raise PermissionDenied(f"{user_name}'s training {when}: renew it and ask an admin to record it")
    grants = session.scalars(select(Grant).where(Grant.project_id == project.id)).all()
    if grants and not any(g.is_live(now) for g in grants):
        raise PermissionDenied(
            f"every data grant of project {slug} has expired or been revoked: ask an admin to renew the grant"
        )
    return user, project


def default_views(session: Session, project: Project) -> list[tuple[str, Path]]:
    """The catalogue's live views of ``project``; none while the catalogue service is absent."""
    try:
        from enclave.catalog.service import active_views
    except ImportError:
        return []
    return [(name, Path(path)) for name, path in active_views(session, project)]


def workspace_dir(settings: Settings, slug: str) -> Path:
    """The host directory of project ``slug``'s shared workspace."""
    return settings.workspaces_dir / slug


def publish_container_policies(settings: Settings) -> Path:
    """Copy the site's policy files that enclave.safe applies (``sandbox.POLICY_FILES``, each
    validated first) into ``settings.container_policies_dir/current``; return that folder.

    Containers mount the folder, never the policy directory: it holds those files and
    nothing else (no other policy, no key), and it lies in ENCLAVE_HOME, which every Swarm
    node sees. Each file is read once, and exactly the bytes validated are published, so an
    edit landing between the check and the copy never reaches a container unchecked. Each
    file is replaced atomically (a new file renamed over the old, never written through a
    link), so a running server reads the old or the new rules, never half of either. An
    invalid or missing policy raises PolicyError and leaves the published copy as it was
    (no server or job starts under rules the site did not write)."""
    root = settings.container_policies_dir
    current = root / "current"
    current.mkdir(parents=True, exist_ok=True)
    for folder in (root, current):
        if not stat.S_ISDIR(os.lstat(folder).st_mode):
            raise PolicyError(f"{folder} is a link, not a folder: containers' policies are never published "
                              "through a link; remove it and start the server again")
        folder.chmod(0o755)
    for name in POLICY_FILES:
        source = settings.policies_dir / name
        module, model = POLICY_MODELS[name].split(":")
        data = read_policy_bytes(source)
        parse_policy_bytes(source, data, getattr(importlib.import_module(module), model))
        _replace_file(root, current / name, data)
    for stray in current.iterdir():
        if stray.name not in POLICY_FILES:
            shutil.rmtree(stray) if stray.is_dir() and not stray.is_symlink() else stray.unlink()
    return current


def _replace_file(scratch: Path, target: Path, data: bytes) -> None:
    """Make ``target`` a regular file (0644) holding ``data``: a new file written in
    ``scratch`` (outside the mounted folder, so no container sees it half-written) and
    renamed over ``target``, which replaces a link there rather than following it."""
    try:
        if stat.S_ISREG(os.lstat(target).st_mode) and target.read_bytes() == data:
            return
    except OSError:
        pass
    temp = scratch / f".{target.name}.{secrets.token_hex(4)}"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, 0o644)
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def project_mounts(
    settings: Settings, session: Session, project: Project, views: ViewsProvider = default_views
) -> list[ProjectMount]:
    """The bind mounts of a ``project`` server or job: its workspace (read-write), each live
    view (read-only) and the site's policies for enclave.safe (read-only,
    :func:`publish_container_policies`). Refuses (PolicyError) a view outside
    ``settings.views_dir`` or with a dataset name that is not a plain directory name, and
    an invalid policy: fail closed, mount nothing."""
    mounts = [
        ProjectMount(workspace_dir(settings, project.slug), WORKSPACE_TARGET, read_only=False),
        ProjectMount(publish_container_policies(settings), POLICIES_PATH, read_only=True),
    ]
    views_root = settings.views_dir.resolve()
    seen: set[str] = set()
    for name, path in sorted(views(session, project)):
        if not DATASET_NAME_RE.match(name) or name in seen:
            raise PolicyError(f"dataset name {name!r} cannot be mounted under {DATA_TARGET}: fix the grant's dataset name")
        resolved = Path(path).resolve()
        if not resolved.is_relative_to(views_root):
            raise PolicyError(f"view {path} of {name} is outside {views_root}: only materialised views are mounted")
        seen.add(name)
        mounts.append(ProjectMount(resolved, f"{DATA_TARGET}/{name}", read_only=True))
    return mounts


def prepare_workspace(settings: Settings, slug: str) -> Path:
    """Create the project's workspace and its ``outbox/`` on the host, owned by the
    notebook user (uid 1000) so the non-root container can write there.

    This runs as root on a folder researchers write to, so it never follows a link
    (``enclave.workspace_fs``): a member who replaced ``outbox`` with a symbolic link (to
    anything on the host) gets a refusal, not a chown of the link's target.
    """
    owner = (NOTEBOOK_UID, NOTEBOOK_GID)
    try:
        with open_workspace(settings.workspaces_dir, slug, create=True, owner=owner) as workspace:
            workspace.opendir("outbox", create=True, owner=owner).close()
    except LinkRefused:
        raise PolicyError(
            f"{workspace_dir(settings, slug)} or its outbox is a link or a file, not a folder: "
            "the server will not start until an admin removes it"
        ) from None
    return workspace_dir(settings, slug)
