"""The contents API of a project server, locked to the workspace.

A Jupyter ``ContentsManager`` for the notebook image, set by the hub on the server's
command line (``--ServerApp.contents_manager_class``, see
:meth:`enclave.hub.browser_policy.TierBrowserPolicy.server_args`). It keeps everything
JupyterLab needs (browse, open and save notebooks and text, upload, rename, delete) and
refuses, with 403 and a one-line reason:

- any path with a symbolic link in it, anything outside the workspace and anything of
  ``/data`` (decided on the opened file descriptor by :mod:`enclave.hub.file_guard`);
- content of files that are not notebooks or UTF-8 text, of data formats recognised by
  their bytes, of byte copies of ``/data`` files, and of files over the tier's
  ``contents.max_text_bytes``; ``format=base64`` (how binary files are fetched);
- uploads over the tier's ``contents.max_upload_bytes``, all chunks of a chunked upload
  counted (a refused chunked upload is removed, not left half-written).

Directory listings carry names, sizes and dates, never content. The limits come from the
``ENCLAVE_BROWSER_POLICY`` environment variable the hub sets; without it the server does
not start. This runs as the same user as the researcher's code, so it is defence in
depth: the bound the container cannot change is the egress meter outside it.
"""

from __future__ import annotations

import base64
import binascii
import os
import stat
from typing import Any

import nbformat
from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager
from tornado import web

from enclave.hub.browser_policy import ContentsLimits, from_environment
from enclave.hub.file_guard import DataIndex, Missing, Refused, WorkspaceGuard


def _refuse(reason: str) -> web.HTTPError:
    # Jupyter returns log_message as the JSON "message", and tornado's access log formats
    # it with %: a '%' in a file name must not be a format directive.
    return web.HTTPError(403, reason.replace("%", "%%"), reason="Forbidden")


class GuardedContentsManager(AsyncLargeFileManager):
    """An ``AsyncLargeFileManager`` that serves only what the browser may have."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.limits: ContentsLimits = from_environment().contents
        self.guard = WorkspaceGuard(self.root_dir, DataIndex.scan())
        self.log.info(
            "enclave contents guard: text up to %d bytes, uploads up to %d bytes, no links, no /data",
            self.limits.max_text_bytes, self.limits.max_upload_bytes,
        )

    # --- every operation by name: no link in the path, nothing outside the workspace -----

    def _get_os_path(self, path: str) -> str:
        os_path = super()._get_os_path(path)
        try:
            self.guard.check(path.strip("/"))
        except Refused as exc:
            raise _refuse(str(exc)) from None
        return os_path

    # --- reading ---------------------------------------------------------------------------

    async def get(self, path: str, content: bool = True, type: str | None = None,
                  format: str | None = None, require_hash: bool = False) -> dict[str, Any]:
        """The model of ``path``; its content read from the guarded file descriptor."""
        path = path.strip("/")
        model = await super().get(path, content=False, type=type, format=format, require_hash=False)
        if model["type"] == "directory":
            if content:
                model["content"] = await self._listing(path)
                model["format"] = "json"
            return model
        if not (content or require_hash):
            return model
        if content and model["type"] == "file" and format == "base64":
            raise _refuse(f"{path}: only notebooks and text are shown in the browser (format=base64 is not served)")
        raw = self._read(path)
        if content and model["type"] == "notebook":
            validation_error: dict[str, Any] = {}
            try:
                nb = nbformat.reads(raw.decode("utf-8"), as_version=4, capture_validation_error=validation_error)
            except Exception as exc:  # noqa: BLE001 - any parse failure is the same answer
                raise web.HTTPError(400, f"{path} is not a readable notebook: {type_name(exc)}".replace("%", "%%")) from None
            self.mark_trusted_cells(nb, path)
            model.update(content=nb, format="json")
            self.validate_notebook_model(model, validation_error)
        elif content:
            model.update(content=raw.decode("utf-8"), format="text", mimetype=model.get("mimetype") or "text/plain")
        if require_hash:
            model.update(**self._get_hash(raw))
        return model

    def _read(self, path: str) -> bytes:
        try:
            return self.guard.read_text(path, self.limits.max_text_bytes)
        except Missing:
            raise web.HTTPError(404, f"No such file or directory: {path}".replace("%", "%%")) from None
        except Refused as exc:
            self.log.warning("enclave contents guard refused %s: %s", path, exc)
            raise _refuse(str(exc)) from None

    async def _listing(self, path: str) -> list[dict[str, Any]]:
        try:
            entries = list(self.guard.list_dir(path))
        except Missing:
            raise web.HTTPError(404, f"No such directory: {path}".replace("%", "%%")) from None
        except Refused as exc:
            raise _refuse(str(exc)) from None
        listing = []
        for name, _st in entries:
            if not self.should_list(name) or (not self.allow_hidden and name.startswith(".")):
                continue
            try:
                listing.append(await self.get(f"{path}/{name}" if path else name, content=False))
            except web.HTTPError:
                continue  # changed since it was listed (for example replaced by a link)
        return listing

    # --- writing ---------------------------------------------------------------------------

    async def save(self, model: dict[str, Any], path: str = "") -> dict[str, Any]:
        """Save as usual, within the tier's upload limit (every chunk counted)."""
        path = path.strip("/")
        if model.get("type") == "file" and "content" in model:
            incoming = _decoded_size(model.get("content"), model.get("format"))
            chunk = model.get("chunk")
            already = 0 if chunk in (None, 1) else self._size_on_disk(path)
            total = already + incoming
            if total > self.limits.max_upload_bytes:
                if chunk not in (None, 1):
                    self._remove_partial(path)
                raise _refuse(
                    f"{path}: an upload of {total} bytes or more is over this tier's limit of "
                    f"{self.limits.max_upload_bytes} bytes"
                )
        return await super().save(model, path)

    def _size_on_disk(self, path: str) -> int:
        try:
            fd = self.guard.open(path)
        except Missing:
            raise web.HTTPError(400, f"{path}: a later chunk came before the first one".replace("%", "%%")) from None
        except Refused as exc:
            raise _refuse(str(exc)) from None
        try:
            return os.fstat(fd).st_size
        finally:
            os.close(fd)

    def _remove_partial(self, path: str) -> None:
        parent, _, name = path.rpartition("/")
        try:
            fd = self.guard.open(parent)
        except (Missing, Refused):
            return
        try:
            if stat.S_ISREG(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode):
                os.unlink(name, dir_fd=fd)
        except OSError:
            pass
        finally:
            os.close(fd)

    async def _copy_dir(self, from_path: str, to_path_original: str, to_name: str, to_path: str) -> dict[str, Any]:
        """Copy a folder only if nothing in it is a link (a copy would follow it)."""
        for dirpath, dirnames, filenames in os.walk(self._get_os_path(from_path), followlinks=False):
            for name in (*dirnames, *filenames):
                if os.path.islink(os.path.join(dirpath, name)):
                    raise _refuse(f"{from_path} holds a symbolic link ({name}); it cannot be copied")
        return await super()._copy_dir(
            from_path=from_path, to_path_original=to_path_original, to_name=to_name, to_path=to_path
        )


def type_name(exc: BaseException) -> str:
    return type(exc).__name__


def _decoded_size(content: Any, fmt: str | None) -> int:
    """Bytes an upload's content decodes to (an upper bound for base64 that cannot be
    decoded: the save refuses it anyway)."""
    if not isinstance(content, str):
        return 0
    if fmt == "base64":
        try:
            return len(base64.b64decode(content.encode("ascii"), validate=False))
        except (binascii.Error, UnicodeEncodeError, ValueError):
            return len(content) * 3 // 4
    return len(content.encode("utf-8", "surrogatepass"))
