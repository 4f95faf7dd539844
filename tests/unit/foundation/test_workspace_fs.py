"""enclave.workspace_fs on a real filesystem: no link is ever followed, at any depth, with
openat2 and with the per-component fallback; errors are one line, never an OSError."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from enclave import workspace_fs
from enclave.errors import InvalidInput, NotFound
from enclave.workspace_fs import (
    SYMLINK,
    EntryKind,
    HardLinked,
    LinkRefused,
    NotRegularFile,
    TooLarge,
    open_workspace,
)
from tests.link_race import swapping


@pytest.fixture(params=["openat2", "per-component"])
def mode(request, monkeypatch) -> str:
    if request.param == "openat2":
        if not workspace_fs.openat2_available():
            pytest.skip("this kernel has no openat2")
    else:
        monkeypatch.setattr(workspace_fs, "openat2_available", lambda: False)
    return request.param


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """workspaces/own (a notebook, a folder) and workspaces/other (the target of links)."""
    root = tmp_path / "workspaces"
    (root / "own" / "notebooks").mkdir(parents=True)
    (root / "own" / "notebooks" / "a.ipynb").write_text("own")
    (root / "other" / "notebooks").mkdir(parents=True)
    (root / "other" / "notebooks" / "a.ipynb").write_text("other project's secret")
    return root


def test_workspace_fs_reads_a_real_file(tree: Path, mode: str):
    with open_workspace(tree, "own") as ws:
        assert ws.read_bytes("notebooks/a.ipynb", max_bytes=100) == b"own"
        assert ws.read_bytes("./notebooks//a.ipynb", max_bytes=100) == b"own"
        assert ws.sha256("notebooks/a.ipynb") == hashlib.sha256(b"own").hexdigest()


@pytest.mark.parametrize("where", ["file", "folder", "deeper-folder", "workspace"])
def test_workspace_fs_refuses_a_link_in_any_component(tree: Path, mode: str, where: str):
    own, other = tree / "own", tree / "other"
    (own / "deep" / "er").mkdir(parents=True)
    (own / "deep" / "er" / "a.ipynb").write_text("own")
    if where == "file":
        (own / "notebooks" / "a.ipynb").unlink()
        (own / "notebooks" / "a.ipynb").symlink_to(other / "notebooks" / "a.ipynb")
        path, slug = "notebooks/a.ipynb", "own"
    elif where == "folder":
        (own / "notebooks" / "a.ipynb").unlink()
        (own / "notebooks").rmdir()
        (own / "notebooks").symlink_to(other / "notebooks")
        path, slug = "notebooks/a.ipynb", "own"
    elif where == "deeper-folder":
        (own / "deep" / "er" / "a.ipynb").unlink()
        (own / "deep" / "er").rmdir()
        (own / "deep" / "er").symlink_to(other / "notebooks")
        path, slug = "deep/er/a.ipynb", "own"
    else:
        (tree / "linked").symlink_to(own)
        path, slug = "notebooks/a.ipynb", "linked"
    with pytest.raises(LinkRefused, match="symbolic link") as refused:
        with open_workspace(tree, slug) as ws:
            ws.read_bytes(path, max_bytes=100)
    assert "\n" not in str(refused.value)
    if where != "file":  # nor is a folder created or opened through the link
        with pytest.raises(LinkRefused):
            with open_workspace(tree, slug) as ws:
                ws.opendir(os.path.dirname(path) + "/new", create=True).close()
        assert not (tree / "other" / "notebooks" / "new").exists()


def test_workspace_fs_names_the_linked_component(tree: Path, mode: str):
    own = tree / "own"
    (own / "notebooks" / "a.ipynb").unlink()
    (own / "notebooks").rmdir()
    (own / "notebooks").symlink_to(tree / "other" / "notebooks")
    with open_workspace(tree, "own") as ws, pytest.raises(LinkRefused, match="^notebooks is a symbolic link"):
        ws.read_bytes("notebooks/a.ipynb", max_bytes=100)


def test_workspace_fs_refuses_special_files_hard_links_and_sizes(tree: Path, mode: str):
    own = tree / "own"
    os.mkfifo(own / "pipe")
    os.link(own / "notebooks" / "a.ipynb", own / "twin")
    (own / "big").write_bytes(b"x" * 101)
    with open_workspace(tree, "own") as ws:
        with pytest.raises(NotRegularFile, match="pipe is a FIFO"):
            ws.read_bytes("pipe", max_bytes=100)
        with pytest.raises(NotRegularFile, match="notebooks is a folder"):
            ws.read_bytes("notebooks", max_bytes=100)
        with pytest.raises(HardLinked, match="2 hard links"):
            ws.read_bytes("twin", max_bytes=100, single_link=True)
        assert ws.read_bytes("twin", max_bytes=100) == b"own"  # allowed where it does not matter
        with pytest.raises(TooLarge):
            ws.read_bytes("big", max_bytes=100)
        with pytest.raises(NotFound, match="does not exist"):
            ws.read_bytes("notebooks/none.ipynb", max_bytes=100)
        for bad in ("../other/notebooks/a.ipynb", "/etc/passwd", "", "a\x00b", "notebooks/../../x"):
            with pytest.raises(InvalidInput):
                ws.read_bytes(bad, max_bytes=100)


def test_workspace_fs_creates_folders_and_writes_atomically_without_following_links(tree: Path, mode: str,
                                                                                    tmp_path: Path):
    own = tree / "own"
    host = tmp_path / "host-secret"
    host.mkdir(mode=0o700)
    (own / "outbox").symlink_to(host)
    with open_workspace(tree, "own") as ws:
        with pytest.raises(LinkRefused):
            ws.opendir("outbox/jobs", create=True, mode=0o777)
        with ws.opendir("made/here", create=True, mode=0o750) as made:
            assert made.write_atomic("f.txt", b"one")
            assert made.write_atomic("f.txt", b"two")
            assert not made.write_atomic("f.txt", b"three", replace=False)
            with pytest.raises(InvalidInput, match="already exists"):
                made.mkdir_fresh("f.txt")
            made.mkdir_fresh("fresh").close()
    assert os.listdir(host) == [] and oct(host.stat().st_mode & 0o777) == "0o700"
    assert (own / "made" / "here" / "f.txt").read_bytes() == b"two"
    assert sorted(os.listdir(own / "made" / "here")) == ["f.txt", "fresh"]  # no temporary left
    assert oct((own / "made").stat().st_mode & 0o777) == "0o750"


def test_workspace_fs_walk_and_manifest_report_links_and_never_enter_them(tree: Path, mode: str):
    own = tree / "own"
    (own / "sub" / "deeper").mkdir(parents=True)
    (own / "sub" / "deeper" / "t.csv").write_text("x\n1\n")
    (own / "to-other").symlink_to(tree / "other")
    (own / "file-link").symlink_to(tree / "other" / "notebooks" / "a.ipynb")
    with open_workspace(tree, "own") as ws:
        walked = {p.as_posix(): e.kind for p, e in ws.walk()}
        manifest = ws.manifest()
        shallow = {p.as_posix() for p, _ in ws.walk(max_depth=1)}
        entries = {e.name: e.kind for e in ws.entries()}
    assert walked == {"file-link": EntryKind.LINK, "notebooks/a.ipynb": EntryKind.FILE,
                      "sub/deeper/t.csv": EntryKind.FILE, "to-other": EntryKind.LINK}
    assert manifest["to-other"] == SYMLINK and manifest["file-link"] == SYMLINK
    assert manifest["notebooks/a.ipynb"] == hashlib.sha256(b"own").hexdigest()
    assert "sub/deeper/t.csv" not in shallow and "notebooks/a.ipynb" in shallow
    assert entries["sub"] is EntryKind.DIR and entries["to-other"] is EntryKind.LINK


def test_workspace_fs_walks_and_hashes_names_that_are_not_utf8_but_refuses_them_as_input(tree: Path, mode: str):
    """Walks see every file whatever bytes its name has (a scan must not miss one), and
    record it printably; a path given as input with such bytes is refused in one line."""
    own = os.fsencode(tree / "own")
    os.makedirs(os.path.join(own, b"d\xe9j\xe0"))
    with open(os.path.join(own, b"d\xe9j\xe0", b"t-\xff.csv"), "wb") as out:
        out.write(b"x\n1\n")
    os.symlink(b"/etc", os.path.join(own, b"l\xff"))
    with open_workspace(tree, "own") as ws:
        walked = {p.as_posix(): e.kind for p, e in ws.walk()}
        manifest = ws.manifest()
        name = os.fsdecode(b"d\xe9j\xe0/t-\xff.csv")
        assert walked[name] is EntryKind.FILE and walked[os.fsdecode(b"l\xff")] is EntryKind.LINK
        assert ws.sha256_listed(tuple(name.split("/"))) == hashlib.sha256(b"x\n1\n").hexdigest()
        with pytest.raises(InvalidInput, match=r"^d\\xe9j\\xe0/t-\\xff.csv is not a UTF-8 name: rename"):
            ws.sha256(name)
    assert manifest["d\\xe9j\\xe0/t-\\xff.csv"] == hashlib.sha256(b"x\n1\n").hexdigest()
    assert manifest["l\\xff"] == SYMLINK
    assert all(key.encode("utf-8") for key in manifest)


def test_workspace_fs_never_reads_through_a_folder_swapped_in_a_loop(tree: Path, mode: str):
    """The attack of the job-submission race, at the module: a folder exchanged with a link
    to another project's folder, 500 reads, never the other project's bytes."""
    own = tree / "own"
    (own / "evil").symlink_to(tree / "other" / "notebooks")
    outcomes = {"own": 0, "refused": 0}
    by_name_leaked = 0
    with swapping(own / "notebooks", own / "evil"), open_workspace(tree, "own") as ws:
        for _ in range(500):
            try:
                data = ws.read_bytes("notebooks/a.ipynb", max_bytes=100)
            except LinkRefused:
                outcomes["refused"] += 1
            else:
                assert data == b"own"
                outcomes["own"] += 1
            # The control: opening the same name by path does follow the swapped-in link.
            by_name_leaked += (own / "notebooks" / "a.ipynb").read_bytes() == b"other project's secret"
    assert outcomes["own"] + outcomes["refused"] == 500
    assert outcomes["refused"] > 0 and by_name_leaked > 0, (outcomes, by_name_leaked)
