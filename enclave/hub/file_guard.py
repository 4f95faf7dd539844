"""Which workspace files a notebook server may hand to the browser, decided on open files.

Used inside the notebook container by ``enclave.hub.contents_guard`` (the contents API).
It has no Jupyter imports, so it is unit-tested on the host.

The rules, each checked on the file descriptor that is then read (never by name first and
open later: a name can be swapped for a link between the two):

- a path is opened one component at a time from the workspace root with ``O_NOFOLLOW``:
  a symbolic link anywhere in it is refused, as are ``.``/``..`` and empty components;
- the opened file must lie in the workspace (its real location, from ``/proc/self/fd``,
  is below the root and on the root's file system) and must not be a file under
  ``/data`` (by device and inode, which also catches a hard link);
- only regular files and directories are opened (no FIFOs, devices or sockets);
- content is returned only for UTF-8 text (notebooks are text) up to ``max_text_bytes``;
  data formats recognised by their first bytes (Parquet, Arrow, SQLite, Excel, archives,
  pickle, NumPy, HDF5 ...) are refused whatever the file is called, and so is a byte
  copy of any file under ``/data`` (same size, then same sha256).
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field

WORKSPACE_ROOT = "/home/jovyan/project"
DATA_ROOT = "/data"

# (offset, magic bytes, what the format is). Checked on the first bytes of a file.
MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"PAR1", "Parquet"),
    (0, b"ARROW1", "Arrow/Feather"),
    (0, b"\xff\xff\xff\xff", "Arrow stream"),
    (0, b"FEA1", "Feather"),
    (0, b"SQLite format 3\x00", "SQLite"),
    (0, b"PK\x03\x04", "zip (Excel, npz ...)"),
    (0, b"PK\x05\x06", "zip"),
    (0, b"PK\x07\x08", "zip"),
    (0, b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "OLE2 (legacy Excel)"),
    (0, b"\x1f\x8b", "gzip"),
    (0, b"\xfd7zXZ\x00", "xz"),
    (0, b"\x28\xb5\x2f\xfd", "zstd"),
    (0, b"\x04\x22\x4d\x18", "lz4"),
    (0, b"7z\xbc\xaf\x27\x1c", "7-zip"),
    (0, b"Rar!\x1a\x07", "rar"),
    (257, b"ustar", "tar"),
    (0, b"\x93NUMPY", "NumPy"),
    (0, b"\x89HDF\r\n\x1a\n", "HDF5"),
    (512, b"\x89HDF\r\n\x1a\n", "HDF5"),
    (1024, b"\x89HDF\r\n\x1a\n", "HDF5"),
    (2048, b"\x89HDF\r\n\x1a\n", "HDF5"),
    (0, b"Obj\x01", "Avro"),
    (0, b"RDX2\n", "R data"),
    (0, b"RDX3\n", "R data"),
    (0, b"$FL2", "SPSS"),
    (0, b"$FL3", "SPSS"),
    (0, b"<stata_dta>", "Stata"),
    (0, b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xc2\xea\x81\x60\xb3\x14\x11\xcf", "SAS"),
    (0, b"%PDF", "PDF"),
)
# A pickle of protocol 2 and later starts with the PROTO opcode and the protocol number.
PICKLE_PROTOCOLS = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")
SNIFF_BYTES = 4096

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


class Refused(Exception):
    """The path or file may not be served; str() is the one-line reason."""


class Missing(Exception):
    """A component of the path does not exist (the caller answers 404)."""


def data_format(head: bytes) -> str | None:
    """The data format the first bytes of a file show, or None."""
    for offset, magic, name in MAGIC:
        if head[offset:offset + len(magic)] == magic:
            return name
    if head[:2] in PICKLE_PROTOCOLS:
        return "pickle"
    if head[:3] == b"BZh" and head[3:4].isdigit() and head[4:10] == b"1AY&SY":
        return "bzip2"
    return None


def split_path(path: str) -> list[str]:
    """The components of an API path (relative to the workspace root); refuses ``.``,
    ``..``, NUL and backslashes rather than normalising them."""
    if "\x00" in path or "\\" in path:
        raise Refused("this path contains a character the enclave does not allow")
    parts = path.strip("/").split("/") if path.strip("/") else []
    for part in parts:
        if part in ("", ".", ".."):
            raise Refused("paths with '.', '..' or '//' are not served; use the path as the file browser shows it")
    return parts


@dataclass
class DataIndex:
    """The files under /data, to recognise them (by inode) and their copies (by size,
    then sha256, computed lazily and cached)."""

    root: str = DATA_ROOT
    inodes: set[tuple[int, int]] = field(default_factory=set)
    by_size: dict[int, list[str]] = field(default_factory=dict)
    _digests: dict[str, str] = field(default_factory=dict)

    @classmethod
    def scan(cls, root: str = DATA_ROOT) -> DataIndex:
        index = cls(root=root)
        if not os.path.isdir(root):
            return index
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            for name in (*dirnames, *filenames):
                full = os.path.join(dirpath, name)
                try:
                    st = os.lstat(full)
                except OSError:
                    continue
                index.inodes.add((st.st_dev, st.st_ino))
                if stat.S_ISREG(st.st_mode):
                    index.by_size.setdefault(st.st_size, []).append(full)
        return index

    def digest_of(self, path: str) -> str | None:
        if path not in self._digests:
            try:
                with open(path, "rb") as f:
                    self._digests[path] = hashlib.file_digest(f, "sha256").hexdigest()
            except OSError:
                return None
        return self._digests[path]

    def copy_of(self, content: bytes) -> str | None:
        """The /data file whose bytes ``content`` is, or None."""
        candidates = self.by_size.get(len(content))
        if not candidates:
            return None
        digest = hashlib.sha256(content).hexdigest()
        for candidate in candidates:
            if self.digest_of(candidate) == digest:
                return candidate
        return None


class WorkspaceGuard:
    """Opens and reads workspace paths by the rules in the module docstring."""

    def __init__(self, root: str = WORKSPACE_ROOT, data: DataIndex | None = None) -> None:
        self.root = os.path.realpath(root)
        fd = os.open(self.root, _DIR_FLAGS)
        try:
            st = os.fstat(fd)
        finally:
            os.close(fd)
        self.root_dev = st.st_dev
        self.data = data if data is not None else DataIndex.scan()
        self.data_real = os.path.realpath(self.data.root)

    # --- opening -------------------------------------------------------------------------

    def _open_root(self) -> int:
        fd = os.open(self.root, _DIR_FLAGS)
        self._check_location(fd, "")
        return fd

    def open(self, path: str) -> int:
        """An fd of ``path`` (a regular file or a directory), opened without following any
        link. Raises Missing if a component does not exist, Refused otherwise."""
        parts = split_path(path)
        fd = self._open_root()
        try:
            for i, part in enumerate(parts):
                last = i == len(parts) - 1
                new = self._step(fd, part, last, "/".join(parts[: i + 1]))
                os.close(fd)
                fd = new
            st = os.fstat(fd)
            if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
                raise Refused(f"{path} is not a regular file or folder")
            return fd
        except BaseException:
            os.close(fd)
            raise

    def _step(self, dir_fd: int, name: str, last: bool, shown: str) -> int:
        try:
            new = os.open(name, _FILE_FLAGS if last else _DIR_FLAGS, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                raise Missing(shown) from None
            if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
                if self._is_link(dir_fd, name):
                    raise Refused(f"{shown} is a symbolic link; the enclave does not follow links") from None
                raise Missing(shown) from None
            if exc.errno in (errno.EACCES, errno.EPERM):
                raise Refused(f"{shown} cannot be read") from None
            raise
        try:
            self._check_location(new, shown)
        except BaseException:
            os.close(new)
            raise
        return new

    @staticmethod
    def _is_link(dir_fd: int, name: str) -> bool:
        try:
            return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
        except OSError:
            return False

    def _check_location(self, fd: int, shown: str) -> None:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) in self.data.inodes:
            raise Refused(f"{shown or '/'} is a file of /data; approved data is never shown in the browser")
        if st.st_dev != self.root_dev:
            raise Refused(f"{shown or '/'} is outside the project workspace")
        real = os.readlink(f"/proc/self/fd/{fd}")
        if real.endswith(" (deleted)"):
            raise Refused(f"{shown} was deleted")
        if real != self.root and not real.startswith(self.root + "/"):
            raise Refused(f"{shown or '/'} is outside the project workspace")
        if real == self.data_real or real.startswith(self.data_real + "/"):
            raise Refused(f"{shown} is under /data; approved data is never shown in the browser")

    def check(self, path: str, *, may_be_missing: bool = True) -> None:
        """Check every existing component of ``path`` (for operations by name: save,
        rename, delete); a missing tail is fine when ``may_be_missing``."""
        try:
            os.close(self.open(path))
        except Missing:
            if not may_be_missing:
                raise

    def list_dir(self, path: str) -> Iterator[tuple[str, os.stat_result]]:
        """(name, stat) of the regular files and folders in a workspace folder; links and
        special files are left out."""
        fd = self.open(path)
        try:
            if not stat.S_ISDIR(os.fstat(fd).st_mode):
                raise Refused(f"{path} is not a folder")
            entries = []
            with os.scandir(fd) as it:
                for entry in it:
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    if stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode):
                        if (st.st_dev, st.st_ino) not in self.data.inodes:
                            entries.append((entry.name, st))
        finally:
            os.close(fd)
        return iter(entries)

    # --- reading -------------------------------------------------------------------------

    def read_text(self, path: str, max_bytes: int) -> bytes:
        """The bytes of a workspace text file (a notebook is text), for the browser.
        Raises Refused, with the reason, for anything the browser may not have."""
        fd = self.open(path)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise Refused(f"{path} is not a file")
            if st.st_size > max_bytes:
                raise Refused(
                    f"403: {path} is {st.st_size} bytes; files over {max_bytes} bytes are not shown in the browser "
                    "at this tier (work with it in a notebook)"
                )
            content = _read_at_most(fd, max_bytes + 1)
        finally:
            os.close(fd)
        if len(content) > max_bytes:
            raise Refused(f"{path} is over {max_bytes} bytes; it is not shown in the browser at this tier")
        self.check_content(path, content)
        return content

    def check_content(self, path: str, content: bytes) -> None:
        """Refuse data formats, binary files and copies of /data files."""
        kind = data_format(content[:SNIFF_BYTES])
        if kind is not None:
            raise Refused(f"{path} holds {kind} data; data files are never shown in the browser")
        if b"\x00" in content:
            raise Refused(f"{path} is a binary file; only notebooks and text are shown in the browser")
        try:
            content.decode("utf-8")
        except UnicodeDecodeError:
            raise Refused(f"{path} is not UTF-8 text; only notebooks and text are shown in the browser") from None
        if self.data.copy_of(content) is not None:
            raise Refused(f"{path} is a copy of a file of /data; approved data is never shown in the browser")


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks = []
    remaining = limit
    while remaining > 0:
        chunk = os.read(fd, min(remaining, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)
