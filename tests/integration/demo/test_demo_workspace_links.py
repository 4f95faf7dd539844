"""The demo's example notebooks come from the one routine every project's activation uses
(``enclave.projects.examples.install_examples``): audited, and never written through a
link a member put in the workspace."""

from __future__ import annotations

import os

import pytest

from enclave.audit import list_events
from enclave.db.session import unit_of_work
from enclave.demo.setup import setup_demo
from enclave.errors import EnclaveError
from enclave.projects.examples import EXAMPLES_DIR, ExamplesEvent


def test_demo_notebooks_are_installed_at_activation_as_for_any_project(settings):
    setup_demo(settings, patients=150)
    names = sorted(p.name for p in EXAMPLES_DIR.glob("*.ipynb"))
    with unit_of_work(settings) as s:
        for slug in ("cardio", "diabetes"):
            placed = settings.workspaces_dir / slug / "notebooks"
            assert sorted(p.name for p in placed.iterdir()) == names
            [event] = [e for e in list_events(s, project=slug) if e.action == ExamplesEvent.INSTALLED]
            assert event.actor == "admin" and event.details["written"] == [f"notebooks/{n}" for n in names]
    # A researcher's edit survives the demo being set up again.
    edited = settings.workspaces_dir / "cardio" / "notebooks" / names[0]
    edited.write_text("edited by the researcher")
    setup_demo(settings, patients=150)
    assert edited.read_text() == "edited by the researcher"


def test_demo_notebooks_are_never_written_through_a_link(settings, tmp_path):
    host = tmp_path / "host-dir"
    host.mkdir(mode=0o700)
    workspace = settings.workspaces_dir / "cardio"
    workspace.mkdir(parents=True)
    (workspace / "notebooks").symlink_to(host)
    with pytest.raises(EnclaveError, match="is a link or a file"):
        setup_demo(settings, patients=150)
    assert os.listdir(host) == []
