"""enclave.hub.file_guard on a real file system: links, /data, formats, sizes, copies."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from enclave.hub.file_guard import DataIndex, Missing, Refused, WorkspaceGuard, data_format


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    ws, data = tmp_path / "project", tmp_path / "data"
    (ws / "sub").mkdir(parents=True)
    (data / "demo").mkdir(parents=True)
    (data / "demo" / "patients.parquet").write_bytes(b"PAR1" + os.urandom(500) + b"PAR1")
    (data / "demo" / "codes.csv").write_text("code,label\nA1,first\n")
    (ws / "notes.txt").write_text("hello\n")
    (ws / "sub" / "analysis.ipynb").write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
    return ws, data


def guard(tree: tuple[Path, Path]) -> WorkspaceGuard:
    ws, data = tree
    return WorkspaceGuard(str(ws), DataIndex.scan(str(data)))


def test_file_guard_serves_text_and_notebooks(tree):
    g = guard(tree)
    assert g.read_text("notes.txt", 1024) == b"hello\n"
    assert g.read_text("sub/analysis.ipynb", 1024).startswith(b'{"cells"')


@pytest.mark.parametrize("make_link", ["file", "folder", "intermediate", "relative"])
def test_file_guard_refuses_a_link_anywhere_in_the_path(tree, make_link):
    ws, data = tree
    if make_link == "file":
        (ws / "p.parquet").symlink_to(data / "demo" / "patients.parquet")
        path = "p.parquet"
    elif make_link == "folder":
        (ws / "d").symlink_to(data / "demo")
        path = "d/codes.csv"
    elif make_link == "intermediate":
        (ws / "sub2").symlink_to(ws / "sub")  # a link inside the workspace is refused too
        path = "sub2/analysis.ipynb"
    else:
        (ws / "up").symlink_to("../data/demo/codes.csv")
        path = "up"
    with pytest.raises(Refused, match="symbolic link"):
        guard(tree).read_text(path, 1 << 20)
    with pytest.raises(Refused, match="symbolic link"):
        guard(tree).check(path)


@pytest.mark.parametrize("path", ["../data/demo/codes.csv", "sub/../notes.txt", "./notes.txt", "sub//x", "a\\b"])
def test_file_guard_refuses_dot_segments_and_odd_characters(tree, path):
    with pytest.raises(Refused):
        guard(tree).read_text(path, 1 << 20)


def test_file_guard_refuses_a_hard_link_to_a_data_file(tree):
    ws, data = tree
    os.link(data / "demo" / "codes.csv", ws / "codes-link.csv")
    with pytest.raises(Refused, match="file of /data"):
        guard(tree).read_text("codes-link.csv", 1 << 20)
    assert "codes-link.csv" not in [name for name, _ in guard(tree).list_dir("")]


def test_file_guard_refuses_a_byte_copy_of_a_data_file_whatever_its_name(tree):
    ws, data = tree
    (ws / "innocent.md").write_bytes((data / "demo" / "codes.csv").read_bytes())
    with pytest.raises(Refused, match="copy of a file of /data"):
        guard(tree).read_text("innocent.md", 1 << 20)
    # Same size, other bytes: served.
    (ws / "other.md").write_text("code,label\nB2,first\n")
    assert guard(tree).read_text("other.md", 1 << 20)


@pytest.mark.parametrize(
    "head, kind",
    [
        (b"PAR1\x15\x04", "Parquet"), (b"ARROW1\x00\x00", "Arrow/Feather"), (b"SQLite format 3\x00", "SQLite"),
        (b"PK\x03\x04\x14\x00", "zip (Excel, npz ...)"), (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "OLE2 (legacy Excel)"),
        (b"\x1f\x8b\x08\x00", "gzip"), (b"BZh91AY&SY", "bzip2"), (b"\xfd7zXZ\x00\x00", "xz"),
        (b"\x28\xb5\x2f\xfd\x00", "zstd"), (b"\x80\x04\x95\x00", "pickle"), (b"\x93NUMPY\x01\x00", "NumPy"),
        (b"\x89HDF\r\n\x1a\n", "HDF5"), (b"\x00" * 512 + b"\x89HDF\r\n\x1a\n", "HDF5"),
        (b"a" * 257 + b"ustar\x0000", "tar"),
    ],
)
def test_file_guard_recognises_data_formats_by_content(tree, head, kind):
    assert data_format(head) == kind
    ws, _ = tree
    (ws / "renamed.txt").write_bytes(head + b"\n" * 64)
    with pytest.raises(Refused, match="holds .* data|binary|not UTF-8"):
        guard(tree).read_text("renamed.txt", 1 << 20)


@pytest.mark.parametrize("text", [b"code,label\n", b"BZh is a prefix\n", b"ORCID list\n", b"X\nY\n", b"{}\n"])
def test_file_guard_text_is_not_mistaken_for_a_data_format(text):
    assert data_format(text) is None


def test_file_guard_refuses_binary_and_non_utf8(tree):
    ws, _ = tree
    (ws / "bin.txt").write_bytes(b"abc\x00def")
    (ws / "latin.txt").write_bytes("café".encode("latin-1"))
    with pytest.raises(Refused, match="binary"):
        guard(tree).read_text("bin.txt", 1 << 20)
    with pytest.raises(Refused, match="not UTF-8"):
        guard(tree).read_text("latin.txt", 1 << 20)


def test_file_guard_refuses_files_over_the_limit(tree):
    ws, _ = tree
    (ws / "big.txt").write_text("x" * 2048)
    assert guard(tree).read_text("big.txt", 2048)
    with pytest.raises(Refused, match="2049 bytes|over 2048 bytes|files over 2048"):
        (ws / "big.txt").write_text("x" * 2049)
        guard(tree).read_text("big.txt", 2048)


def test_file_guard_refuses_fifos_and_reports_missing(tree):
    ws, _ = tree
    os.mkfifo(ws / "pipe")
    with pytest.raises(Refused, match="not a regular file"):
        guard(tree).read_text("pipe", 1024)  # O_NONBLOCK: no hang waiting for a writer
    with pytest.raises(Missing):
        guard(tree).read_text("nope.txt", 1024)
    guard(tree).check("newdir/new.txt")  # a missing tail is fine for a save


def test_file_guard_listing_leaves_out_links_and_special_files(tree):
    ws, data = tree
    (ws / "l").symlink_to(data)
    os.mkfifo(ws / "pipe")
    assert sorted(name for name, _ in guard(tree).list_dir("")) == ["notes.txt", "sub"]


def test_file_guard_a_folder_swapped_for_a_link_in_a_loop_never_leaks(tree):
    """The race a check-by-name-then-open loses: 'sub' flips between a folder and a link
    to /data while the guard reads sub/codes.csv."""
    ws, data = tree
    (ws / "sub" / "codes.csv").write_text("safe,text\n")
    real, link = ws / "sub", ws / "sublink"
    link.symlink_to(data / "demo")
    stop = threading.Event()

    def flip():
        while not stop.is_set():
            os.rename(real, ws / "tmp")
            os.rename(link, real)
            os.rename(real, link)
            os.rename(ws / "tmp", real)

    flipper = threading.Thread(target=flip)
    flipper.start()
    g = guard(tree)
    served = []
    try:
        for _ in range(2000):
            try:
                served.append(g.read_text("sub/codes.csv", 1024))
            except (Refused, Missing):
                pass
    finally:
        stop.set()
        flipper.join()
    assert served and set(served) == {b"safe,text\n"}
