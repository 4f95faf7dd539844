"""Placing the demo notebooks never writes through a link a member put in the workspace."""

from __future__ import annotations

import os

import pytest

from enclave.demo.setup import NOTEBOOKS, _place_notebooks
from enclave.errors import EnclaveError


def test_demo_notebooks_are_placed_once_and_never_through_a_link(settings, tmp_path):
    _place_notebooks(settings, "cardio")
    placed = settings.workspaces_dir / "cardio" / "notebooks"
    assert sorted(p.name for p in placed.iterdir()) == sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
    first = next(placed.iterdir())
    first.write_text("edited by the researcher")
    _place_notebooks(settings, "cardio")
    assert first.read_text() == "edited by the researcher"  # never overwritten
    host = tmp_path / "host-dir"
    host.mkdir(mode=0o700)
    os.rename(placed, placed.with_name("notebooks-away"))
    placed.symlink_to(host)
    with pytest.raises(EnclaveError, match="symbolic link"):
        _place_notebooks(settings, "cardio")
    assert os.listdir(host) == []
