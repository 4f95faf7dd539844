"""Every new project's workspace gets the example notebooks at activation: copied once,
owned by the notebook user, audited, never over a researcher's edits or through a link."""

from __future__ import annotations

import os

import pytest

from enclave.audit import list_events
from enclave.errors import PolicyError
from enclave.projects.examples import EXAMPLES_DIR, ExamplesEvent, install_examples
from enclave.projects.lifecycle import ProjectAction
from enclave.projects.retention import move_project
from enclave.projects.service import get_project


def test_examples_copied_at_first_activation_audited_and_idempotent(session, factory, settings):
    factory.project("cohort", "alice", "approved")
    move_project(session, factory.admin, settings, "cohort", ProjectAction.ACTIVATE)
    notebooks = settings.workspaces_dir / "cohort" / "notebooks"
    names = sorted(p.name for p in EXAMPLES_DIR.glob("*.ipynb"))
    assert "quickstart.ipynb" in names and "cohort_analysis.ipynb" in names
    assert sorted(p.name for p in notebooks.iterdir()) == names
    for name in names:
        copy = notebooks / name
        assert copy.read_bytes() == (EXAMPLES_DIR / name).read_bytes()
        assert (copy.stat().st_uid, copy.stat().st_gid) == (1000, 100)
    [event] = [e for e in list_events(session, project="cohort") if e.action == ExamplesEvent.INSTALLED]
    assert event.details["written"] == [f"notebooks/{n}" for n in names] and event.actor == factory.admin.name

    # A researcher's edit survives a reactivation and a second install; nothing new is recorded.
    (notebooks / "quickstart.ipynb").write_text("{}")
    move_project(session, factory.admin, settings, "cohort", ProjectAction.SUSPEND, "audit")
    move_project(session, factory.admin, settings, "cohort", ProjectAction.ACTIVATE)
    assert install_examples(session, factory.admin, settings, get_project(session, "cohort")) == []
    assert (notebooks / "quickstart.ipynb").read_text() == "{}"
    assert len([e for e in list_events(session, project="cohort") if e.action == ExamplesEvent.INSTALLED]) == 1


def test_examples_never_written_through_a_link(session, factory, settings, tmp_path):
    factory.project("linked", "alice", "approved")
    outside = tmp_path / "outside"
    outside.mkdir()
    workspace = settings.workspaces_dir / "linked"
    workspace.mkdir(parents=True)
    os.symlink(outside, workspace / "notebooks")
    with pytest.raises(PolicyError, match="is a link or a file"):
        move_project(session, factory.admin, settings, "linked", ProjectAction.ACTIVATE)
    assert list(outside.iterdir()) == []
