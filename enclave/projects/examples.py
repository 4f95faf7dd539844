"""The example notebooks every new project's workspace starts with.

At activation the repository's ``notebooks/*.ipynb`` (the quickstart and the parameterised
cohort analysis) are copied to ``notebooks/`` of the workspace, owned by the notebook user.
A file already there is never replaced (a researcher's edits are kept), so installing twice
adds nothing. Every copy goes through ``enclave.workspace_fs``: nothing is written through a
link a member put in the workspace. The copy is an audit event of the same transaction.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from sqlalchemy.orm import Session

from enclave.audit import append_event
from enclave.config import Settings
from enclave.db.models import Project, User
from enclave.errors import PolicyError
from enclave.hub.access import NOTEBOOK_GID, NOTEBOOK_UID, prepare_workspace
from enclave.workspace_fs import LinkRefused, open_workspace

# The repository's example notebooks (what the notebook image's users are shown first).
EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "notebooks"
TARGET = "notebooks"
MAX_EXAMPLE_BYTES = 5 * 1024 * 1024


class ExamplesEvent(StrEnum):
    INSTALLED = "project.examples_installed"


def install_examples(session: Session, actor: User, settings: Settings, project: Project,
                     source: Path = EXAMPLES_DIR) -> list[str]:
    """Copy the example notebooks into ``notebooks/`` of the project's workspace, keeping
    any file already there; returns the workspace paths written (none on a second call)."""
    examples = sorted(p for p in source.glob("*.ipynb") if p.is_file() and not p.is_symlink())
    owner = (NOTEBOOK_UID, NOTEBOOK_GID)
    written: list[str] = []
    kept: list[str] = []
    prepare_workspace(settings, project.slug)
    try:
        with open_workspace(settings.workspaces_dir, project.slug) as workspace, \
                workspace.opendir(TARGET, create=True, owner=owner) as folder:
            for example in examples:
                data = example.read_bytes()[:MAX_EXAMPLE_BYTES + 1]
                if len(data) > MAX_EXAMPLE_BYTES:
                    continue
                if folder.write_atomic(example.name, data, owner=owner, replace=False):
                    written.append(f"{TARGET}/{example.name}")
                else:
                    kept.append(f"{TARGET}/{example.name}")
    except LinkRefused:
        raise PolicyError(f"{TARGET}/ of the workspace of {project.slug} is a link or a file, not a folder: "
                          "the examples were not copied; ask an admin to remove it") from None
    if written:  # a second call changes nothing, so records nothing
        append_event(session, actor, ExamplesEvent.INSTALLED, project=project, target=f"project:{project.slug}",
                     details={"written": written, "kept": kept})
    return written
