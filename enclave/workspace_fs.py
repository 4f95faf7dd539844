"""Host access to project workspaces that never follows a link.

A workspace is writable from inside its project's containers, so every name in it is
untrusted: a member can swap any folder for a symbolic link (to another project's
workspace, whose host path shows in ``/proc/self/mountinfo``, or to any host file) at any
moment, in a loop, with ``renameat2(RENAME_EXCHANGE)``. A check of a path followed by an
open of the same name is a race the member wins. So the host (root) never opens a
workspace path by name. It opens the workspace once, then every path relative to that
descriptor with the kernel refusing every link on the way: ``openat2(2)`` with
``RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS`` where the kernel has it,
otherwise one component at a time with ``O_NOFOLLOW | O_DIRECTORY``. What it reads, checks
(``fstat``) and hashes is only ever the descriptor it opened; folders are created with
``mkdirat`` relative to an open parent, and files are written to a temporary name and
renamed inside the same open folder.

Every failure is one line (``InvalidInput``, ``NotFound`` or ``PermissionDenied``) naming
the path as the member knows it; no ``OSError`` leaves this module.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import hashlib
import os
import platform
import secrets
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path, PurePosixPath

from enclave.errors import InvalidInput, NotFound, PermissionDenied

CHUNK = 1024 * 1024
# openat2(2): the system call number (the same on x86_64 and aarch64) and its flags.
_SYS_OPENAT2 = {"x86_64": 437, "aarch64": 437, "arm64": 437}.get(platform.machine())
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO must not wait for a writer; O_NOCTTY: nor adopt a terminal.
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY
# Concurrent renames make openat2 answer EAGAIN now and then; it is retried this often.
_EAGAIN_TRIES = 8


class LinkRefused(InvalidInput):
    """A component of a workspace path is a symbolic link, or not a folder where one must be."""


class NotRegularFile(InvalidInput):
    """The path is a folder, FIFO, device or socket where a regular file is needed."""


class HardLinked(InvalidInput):
    """A file with more than one name (it may be another file, such as a dataset)."""


class TooLarge(InvalidInput):
    """A file over the size its caller accepts."""

    def __init__(self, message: str, size: int, limit: int) -> None:
        super().__init__(message)
        self.size, self.limit = size, limit


class EntryKind(StrEnum):
    FILE = "file"
    DIR = "dir"
    LINK = "link"
    OTHER = "other"  # FIFO, device, socket


@dataclass(frozen=True)
class Entry:
    """One name in a workspace folder, as ``lstat`` saw it (links are not followed)."""

    name: str
    kind: EntryKind
    size: int
    nlink: int


# --- opening beneath a descriptor ------------------------------------------------------

class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


@functools.cache
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc


def _openat2(dir_fd: int, path: str, flags: int, mode: int) -> int:
    how = _OpenHow(flags, mode if flags & os.O_CREAT else 0, RESOLVE)
    raw = os.fsencode(path)
    for _ in range(_EAGAIN_TRIES):
        fd = _libc().syscall(ctypes.c_long(_SYS_OPENAT2), ctypes.c_int(dir_fd), ctypes.c_char_p(raw),
                             ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how)))
        if fd >= 0:
            return int(fd)
        err = ctypes.get_errno()
        if err not in (errno.EAGAIN, errno.EINTR):
            raise OSError(err, os.strerror(err), path)
    raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN), path)


@functools.cache
def openat2_available() -> bool:
    """Whether this kernel (and seccomp profile) offers openat2(2); probed once."""
    if _SYS_OPENAT2 is None:
        return False
    root = os.open("/", _DIR_FLAGS)
    try:
        os.close(_openat2(root, ".", _DIR_FLAGS, 0))
        return True
    except OSError:
        # ENOSYS (an older kernel), EPERM (a seccomp profile), E2BIG/EINVAL (an older
        # open_how): the per-component walk is just as safe, only slower.
        return False
    finally:
        os.close(root)


def _open_beneath(dir_fd: int, parts: tuple[str, ...], flags: int, mode: int = 0) -> int:
    """Open ``parts`` (already clean components) below ``dir_fd`` following no link."""
    if openat2_available():
        return _openat2(dir_fd, "/".join(parts), flags | os.O_NOFOLLOW, mode)
    opened: list[int] = []
    current = dir_fd
    try:
        for part in parts[:-1]:
            current = os.open(part, _DIR_FLAGS, dir_fd=current)
            opened.append(current)
        return os.open(parts[-1], flags | os.O_NOFOLLOW, mode, dir_fd=current)
    finally:
        for fd in opened:
            os.close(fd)


def printable_name(name: str) -> str:
    """A file name as pages and messages show it: bytes that are not UTF-8 (a member may
    give a file any bytes as its name) as ``\\xNN``."""
    return name if name.isascii() else os.fsencode(name).decode("utf-8", "backslashreplace")


def utf8_name(name: str) -> bool:
    """Whether ``name`` is text (its bytes are UTF-8): only such names can be stored,
    shown or released; ``os.fsdecode`` keeps the bytes of any other as surrogates."""
    if name.isascii():
        return True
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def refuse_non_utf8(name: str, what: str = "file") -> None:
    """InvalidInput, shown in one printable line, when ``name`` is not UTF-8."""
    if not utf8_name(name):
        raise InvalidInput(f"{printable_name(name)} is not a UTF-8 name: rename the {what} to plain letters, "
                           "digits and punctuation, then try again")


def clean_parts(relpath: str | PurePosixPath, shown: str | None = None) -> tuple[str, ...]:
    """The components of a relative path; refuses absolute paths, ``..``, NUL, emptiness and
    names that are not UTF-8."""
    text = str(relpath)
    refuse_non_utf8(text)
    label = shown or repr(text)
    path = PurePosixPath(text)
    parts = tuple(p for p in path.parts if p not in ("", "."))
    if "\x00" in text or path.is_absolute() or not parts or ".." in parts:
        raise InvalidInput(f"{label} is not a path inside the workspace: give it relative to the workspace, without '..'")
    return parts


# --- what the host does in a workspace ---------------------------------------------------

class WorkspaceDir:
    """An open folder of a workspace, reached without following any link.

    ``prefix`` is how paths below it are shown in messages (e.g. ``outbox/``). Close it,
    or use it as a context manager; folders opened from it are independent descriptors.
    """

    def __init__(self, fd: int, prefix: str = "", label: str | None = None) -> None:
        self.fd = fd
        self.prefix = prefix
        self.label = label or (prefix.rstrip("/") or "the workspace")

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> WorkspaceDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def shown(self, parts: tuple[str, ...]) -> str:
        return printable_name(self.prefix + "/".join(parts))

    # -- errors --

    def _refusal(self, exc: OSError, parts: tuple[str, ...], want_dir: bool) -> Exception:
        """Turn an OSError of opening ``parts`` into a one-line enclave error."""
        shown = self.shown(parts)
        if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EXDEV):
            return self._which_link(parts, want_dir)
        if exc.errno == errno.ENOENT:
            return NotFound(f"{shown} does not exist: check the path (it is relative to {self.label})")
        if exc.errno in (errno.EACCES, errno.EPERM):
            return PermissionDenied(f"{shown} cannot be opened (permission denied): ask an admin to check its owner")
        if exc.errno == errno.ENXIO:
            return NotRegularFile(f"{shown} is a socket: only regular files can be used")
        return InvalidInput(f"{shown} cannot be opened ({exc.strerror}): check it is a plain file or folder")

    def _which_link(self, parts: tuple[str, ...], want_dir: bool) -> LinkRefused:
        """Name the first component that is a link or not a folder (a second look, for
        the message only: nothing is read through it)."""
        current = self.fd
        opened: list[int] = []
        try:
            for i, part in enumerate(parts):
                last = i == len(parts) - 1
                try:
                    info = os.stat(part, dir_fd=current, follow_symlinks=False)
                except OSError:
                    break
                shown = self.shown(parts[: i + 1])
                if stat.S_ISLNK(info.st_mode):
                    if last and not want_dir:
                        return LinkRefused(f"{shown} is a symbolic link: links are never followed; save a real copy instead")
                    return LinkRefused(f"{shown} is a symbolic link or not a folder: only real folders are used; "
                                       "restore it as a folder")
                if not stat.S_ISDIR(info.st_mode) and (not last or want_dir):
                    return LinkRefused(f"{shown} is a symbolic link or not a folder: only real folders are used; "
                                       "restore it as a folder")
                if last:
                    break
                try:
                    current = os.open(part, _DIR_FLAGS, dir_fd=current)
                except OSError:
                    break
                opened.append(current)
        finally:
            for fd in opened:
                os.close(fd)
        return LinkRefused(f"{self.shown(parts)} is a symbolic link or lies in a linked folder (it changed while "
                           "being opened): links are never followed; restore real folders and retry")

    # -- folders --

    def opendir_listed(self, name: str) -> WorkspaceDir:
        """Open the folder ``name`` a listing of this folder gave, whatever its bytes (see
        :meth:`open_listed`); a link is refused."""
        try:
            fd = _open_beneath(self.fd, (name,), _DIR_FLAGS)
        except OSError as exc:
            raise self._refusal(exc, (name,), want_dir=True) from None
        return WorkspaceDir(fd, self.shown((name,)) + "/")

    def opendir(self, relpath: str | PurePosixPath, *, create: bool = False, mode: int = 0o770,
                owner: tuple[int, int] | None = None) -> WorkspaceDir:
        """Open the folder ``relpath``; with ``create``, make each missing component (mode
        ``mode``) and give each component of ``relpath`` to ``owner`` (uid, gid) with that
        mode. A link anywhere is refused, and nothing is created or changed through one."""
        parts = clean_parts(relpath, self.prefix + str(relpath))
        if not create:
            try:
                fd = _open_beneath(self.fd, parts, _DIR_FLAGS)
            except OSError as exc:
                raise self._refusal(exc, parts, want_dir=True) from None
            return WorkspaceDir(fd, self.shown(parts) + "/")
        current = WorkspaceDir(os.dup(self.fd), self.prefix, self.label)
        try:
            for i, part in enumerate(parts):
                try:
                    os.mkdir(part, mode, dir_fd=current.fd)
                except FileExistsError:
                    pass
                except OSError as exc:
                    raise current._refusal(exc, (part,), want_dir=True) from None
                child = current.opendir(part)
                current.close()
                current = child
                if owner is not None:
                    current.own(owner, mode)
                current.prefix = self.shown(parts[: i + 1]) + "/"
            return current
        except BaseException:
            current.close()
            raise

    def mkdir_fresh(self, name: str, *, mode: int = 0o770, owner: tuple[int, int] | None = None) -> WorkspaceDir:
        """Create the folder ``name`` (one component) that must not exist yet, and open it."""
        parts = clean_parts(name)
        if len(parts) != 1:
            raise InvalidInput(f"{name!r} must be a single folder name")
        try:
            os.mkdir(parts[0], mode, dir_fd=self.fd)
        except FileExistsError:
            raise InvalidInput(f"{self.shown(parts)} already exists: move it aside and retry") from None
        except OSError as exc:
            raise self._refusal(exc, parts, want_dir=True) from None
        child = self.opendir(parts[0])
        if owner is not None:
            child.own(owner, mode)
        return child

    def own(self, owner: tuple[int, int], mode: int) -> None:
        """chown (when root) and chmod this folder through its descriptor."""
        try:
            if os.geteuid() == 0:
                os.fchown(self.fd, *owner)
            os.fchmod(self.fd, mode)
        except OSError as exc:
            raise PermissionDenied(f"cannot set the owner of {self.label} ({exc.strerror}): run as root") from None

    def entries(self) -> list[Entry]:
        """The names in this folder, sorted, with what each is (links are not followed)."""
        found = []
        try:
            with os.scandir(self.fd) as listing:
                for item in listing:
                    try:
                        info = item.stat(follow_symlinks=False)
                    except OSError:
                        continue  # removed meanwhile
                    mode = info.st_mode
                    kind = (EntryKind.LINK if stat.S_ISLNK(mode) else EntryKind.DIR if stat.S_ISDIR(mode)
                            else EntryKind.FILE if stat.S_ISREG(mode) else EntryKind.OTHER)
                    found.append(Entry(item.name, kind, info.st_size, info.st_nlink))
        except OSError as exc:
            raise InvalidInput(f"{self.label} cannot be listed ({exc.strerror}): check its permissions") from None
        return sorted(found, key=lambda e: e.name)

    def walk(self, *, max_depth: int = 32, max_entries: int = 100_000,
             enter: Callable[[PurePosixPath], bool] | None = None) -> Iterator[tuple[PurePosixPath, Entry]]:
        """Every file, link and special file below this folder as (relative path, entry),
        depth first in name order. Folders are entered by descriptor, never through a link;
        one that turns into a link meanwhile is reported as a link. ``enter`` decides which
        folders to go into; folders up to ``max_depth`` levels down are read, and
        ``max_entries`` bounds the work."""
        count = 0

        def visit(folder: WorkspaceDir, rel: PurePosixPath, depth: int) -> Iterator[tuple[PurePosixPath, Entry]]:
            nonlocal count
            for entry in folder.entries():
                count += 1
                if count > max_entries:
                    raise InvalidInput(f"{self.label} holds more than {max_entries} files: tidy it up and retry")
                path = rel / entry.name
                if entry.kind is not EntryKind.DIR:
                    yield path, entry
                    continue
                if depth >= max_depth or (enter is not None and not enter(path)):
                    continue
                try:
                    child = folder.opendir_listed(entry.name)
                except LinkRefused:
                    yield path, Entry(entry.name, EntryKind.LINK, 0, 1)
                    continue
                except NotFound:
                    continue
                with child:
                    yield from visit(child, path, depth + 1)

        yield from visit(self, PurePosixPath(), 0)

    # -- files --

    @contextmanager
    def open_file(self, relpath: str | PurePosixPath, *, single_link: bool = False) -> Iterator[tuple[int, os.stat_result]]:
        """Open the regular file ``relpath`` for reading; yield (fd, fstat of it).

        Refuses a link at any depth, anything that is not a regular file and, with
        ``single_link``, a file with more than one hard link.
        """
        parts = clean_parts(relpath, self.prefix + str(relpath))
        with self.open_listed(parts, single_link=single_link) as found:
            yield found

    @contextmanager
    def open_listed(self, parts: tuple[str, ...], *, single_link: bool = False,
                    no_atime: bool = False) -> Iterator[tuple[int, os.stat_result]]:
        """:meth:`open_file` for components a listing of this folder gave (each one name a
        folder holds: no ``/``, NUL, ``.`` or ``..``), of any bytes: the backup keeps a file
        whatever its name, and opens thousands of them. ``no_atime``: reading leaves the
        file's access time as it was (a backup is no use of the file; and no inode is
        written for it), where the owner or root reads."""
        try:
            try:
                fd = _open_beneath(self.fd, parts, _FILE_FLAGS | (os.O_NOATIME if no_atime else 0))
            except PermissionError:
                if not no_atime:
                    raise
                fd = _open_beneath(self.fd, parts, _FILE_FLAGS)  # O_NOATIME is for the owner and root
        except OSError as exc:
            raise self._refusal(exc, parts, want_dir=False) from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                shown = self.shown(parts)
                kind = ("a folder" if stat.S_ISDIR(info.st_mode) else "a FIFO" if stat.S_ISFIFO(info.st_mode)
                        else "a device" if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode)
                        else "a socket" if stat.S_ISSOCK(info.st_mode) else "not a regular file")
                raise NotRegularFile(f"{shown} is {kind}: only regular files can be used")
            if single_link and info.st_nlink != 1:
                shown = self.shown(parts)
                raise HardLinked(f"{shown} has {info.st_nlink} hard links: it may be another file (such as a dataset) "
                                 "under a new name; save a real copy of the output instead of linking it")
            yield fd, info
        finally:
            os.close(fd)

    def read_bytes(self, relpath: str | PurePosixPath, *, max_bytes: int, single_link: bool = False) -> bytes:
        """The bytes of the regular file ``relpath``, read once from its descriptor; at
        most ``max_bytes`` (TooLarge beyond, even if the file grows while it is read)."""
        with self.open_file(relpath, single_link=single_link) as (fd, info):
            shown = self.shown(clean_parts(relpath))
            if info.st_size > max_bytes:
                raise TooLarge(f"{shown} is {info.st_size} bytes, over the limit of {max_bytes}", info.st_size, max_bytes)
            chunks, size = [], 0
            try:
                while chunk := os.read(fd, min(CHUNK, max_bytes + 1 - size)):
                    chunks.append(chunk)
                    size += len(chunk)
                    if size > max_bytes:
                        raise TooLarge(f"{shown} grew over the limit of {max_bytes} bytes while read", size, max_bytes)
            except OSError as exc:
                raise InvalidInput(f"{shown} cannot be read ({exc.strerror})") from None
            return b"".join(chunks)

    def sha256(self, relpath: str | PurePosixPath) -> str:
        """The sha256 of the regular file ``relpath``, hashed from its descriptor."""
        return self.sha256_listed(clean_parts(relpath, self.prefix + str(relpath)))

    def sha256_listed(self, parts: tuple[str, ...]) -> str:
        """:meth:`sha256` of a file :meth:`walk` listed (its components, whatever their
        bytes: a scan must see every file, however it is named)."""
        digest = hashlib.sha256()
        with self.open_listed(parts) as (fd, _info):
            try:
                while chunk := os.read(fd, CHUNK):
                    digest.update(chunk)
            except OSError as exc:
                raise InvalidInput(f"{self.shown(parts)} cannot be read ({exc.strerror})") from None
        return digest.hexdigest()

    def write_atomic(self, name: str, data: bytes, *, mode: int = 0o644, owner: tuple[int, int] | None = None,
                     replace: bool = True) -> bool:
        """Write ``data`` as the file ``name`` of this folder: to a temporary name, fsynced,
        then renamed over ``name`` within this open folder (never through a link). Without
        ``replace`` an existing ``name`` is kept. True if the file was written."""
        parts = clean_parts(name)
        if len(parts) != 1:
            raise InvalidInput(f"{name!r} must be a single file name")
        tmp = f".{parts[0]}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=self.fd)
        except OSError as exc:
            raise self._refusal(exc, (tmp,), want_dir=False) from None
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
                os.fchmod(out.fileno(), mode)
                if owner is not None and os.geteuid() == 0:
                    os.fchown(out.fileno(), *owner)
            if replace:
                os.rename(tmp, parts[0], src_dir_fd=self.fd, dst_dir_fd=self.fd)
            else:
                try:
                    os.link(tmp, parts[0], src_dir_fd=self.fd, dst_dir_fd=self.fd, follow_symlinks=False)
                except FileExistsError:
                    return False
                finally:
                    os.unlink(tmp, dir_fd=self.fd)
            return True
        except OSError as exc:
            try:
                os.unlink(tmp, dir_fd=self.fd)
            except OSError:
                pass
            raise InvalidInput(f"{self.shown(parts)} cannot be written ({exc.strerror}): check the folder") from None

    def manifest(self, **walk_options: int) -> dict[str, str]:
        """Every file below this folder (relative POSIX path -> sha256). A link, or a file
        that turned into one while hashed, is recorded as ``symlink`` and never followed.
        A name that is not UTF-8 is recorded as shown (:func:`printable_name`)."""
        found: dict[str, str] = {}
        for path, entry in self.walk(**walk_options):
            name = printable_name(path.as_posix())
            if entry.kind is EntryKind.LINK:
                found[name] = SYMLINK
            elif entry.kind is EntryKind.FILE:
                try:
                    found[name] = self.sha256_listed(path.parts)
                except LinkRefused:
                    found[name] = SYMLINK
                except (NotFound, NotRegularFile):
                    continue
        return dict(sorted(found.items()))


# How a manifest records a link (never followed: on the host it could point anywhere).
SYMLINK = "symlink"


def open_tree(path: Path, *, label: str | None = None) -> WorkspaceDir:
    """Open a folder the enclave itself owns (a workspace's parent, a view) by its host
    path. Only the last component must not be a link; everything below is then reached
    through :class:`WorkspaceDir`."""
    try:
        return WorkspaceDir(os.open(path, _DIR_FLAGS), label=label or str(path))
    except FileNotFoundError:
        raise NotFound(f"{label or path} does not exist: ask an admin to prepare it") from None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise LinkRefused(f"{label or path} is a symbolic link or not a folder: ask an admin to restore it") from None
        raise InvalidInput(f"{label or path} cannot be opened ({exc.strerror}): check its permissions") from None


def open_workspace(workspaces_dir: Path, slug: str, *, create: bool = False, mode: int = 0o770,
                   owner: tuple[int, int] | None = None) -> WorkspaceDir:
    """Open the workspace ``<workspaces_dir>/<slug>`` (created, owned by ``owner``, when
    ``create``); the workspace itself may not be a link either."""
    name = clean_parts(slug)
    if len(name) != 1:
        raise InvalidInput(f"{slug!r} is not a project name")
    label = f"the workspace of project {slug}"
    if create:
        try:
            workspaces_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InvalidInput(f"{workspaces_dir} cannot be created ({exc.strerror}): check ENCLAVE_HOME") from None
    with open_tree(workspaces_dir, label="the workspaces folder") as parent:
        try:
            if create:
                ws = parent.opendir(name[0], create=True, mode=mode, owner=owner)
            else:
                ws = parent.opendir(name[0])
        except LinkRefused:
            raise LinkRefused(f"{label} is a symbolic link or not a folder: ask an admin to restore it") from None
        except NotFound:
            raise NotFound(f"{label} does not exist yet: open the project's server once, or ask an admin") from None
    ws.prefix, ws.label = "", label
    return ws
