"""The backup reads workspace files without following a link in any component, even
while a member swaps a folder for a link to a host folder in a loop."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from enclave.backup.create import Workspaces, open_source
from enclave.errors import EnclaveError
from tests.link_race import swapping


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    (home / "workspaces" / "p" / "sub").mkdir(parents=True)
    (home / "workspaces" / "p" / "sub" / "f.txt").write_text("own")
    (tmp_path / "host").mkdir()
    (tmp_path / "host" / "f.txt").write_text("host secret")
    return home


def _read(home: Path, name: str) -> bytes:
    workspaces = Workspaces(home)
    try:
        with open_source(workspaces, name, str(home / name)) as (fd, _info):
            return os.read(fd, 100)
    finally:
        workspaces.close()


def test_backup_refuses_a_linked_folder_of_a_workspace(home: Path, tmp_path: Path):
    assert _read(home, "workspaces/p/sub/f.txt") == b"own"
    os.rename(home / "workspaces" / "p" / "sub", home / "workspaces" / "p" / "away")
    (home / "workspaces" / "p" / "sub").symlink_to(tmp_path / "host")
    with pytest.raises(EnclaveError, match="symbolic link"):
        _read(home, "workspaces/p/sub/f.txt")


def test_backup_never_reads_through_a_folder_swapped_in_a_loop(home: Path, tmp_path: Path):
    ws = home / "workspaces" / "p"
    (ws / "evil").symlink_to(tmp_path / "host")
    read, refused = 0, 0
    with swapping(ws / "sub", ws / "evil"):
        for _ in range(300):
            try:
                assert _read(home, "workspaces/p/sub/f.txt") == b"own"
                read += 1
            except EnclaveError:
                refused += 1
    assert refused > 0 and read + refused == 300
