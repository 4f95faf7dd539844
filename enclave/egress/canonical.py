"""The canonical form of an output: the only bytes that are shown to reviewers and released.

A submitted file may carry data where no viewer shows it: bytes after a PNG's end chunk,
text chunks, EXIF and JPEG comments, notebook metadata and attachments, outputs of mime
types nobody renders, a byte-order mark or stray carriage returns. Rather than hunt for
each hiding place, the enclave rebuilds every file from what it means:

- images (PNG, JPEG) are decoded and re-encoded from their pixels alone, with no metadata;
- notebooks keep only cells, their sources, execution counts and displayed outputs of the
  allowed mime types, and metadata keys on the policy's allowlist; images inside outputs
  are re-encoded like image files; the result is written deterministically;
- text (CSV, TSV, plain text, markdown, JSON, SVG) is UTF-8 without a byte-order mark and
  with ``\\n`` line ends.

What cannot be rebuilt (an undecodable image, invalid JSON, an unknown type) cannot be
released: the reason is one line, shown to the researcher and the reviewers. The canonical
bytes are stored in the content-addressed quarantine beside the submitted ones.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import os
import stat
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from PIL import Image, ImageOps

from enclave.config import Settings
from enclave.disclosure.policy import DisclosurePolicy
from enclave.disclosure.verdict import Verdict, worst
from enclave.egress.quarantine import StoredFile, object_path, read_object
from enclave.errors import InvalidInput

RULE = "canonical_form"
IMAGE_KINDS = {"png": "PNG", "jpeg": "JPEG"}
IMAGE_MIME = {"image/png": "png", "image/jpeg": "jpeg"}
TEXT_KINDS = frozenset({"csv", "tsv", "txt", "md", "json", "svg"})
EXTENSIONS = {
    ".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".txt": "txt", ".md": "md", ".markdown": "md",
    ".json": "json", ".svg": "svg", ".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".ipynb": "ipynb",
}
CELL_TYPES = frozenset({"code", "markdown", "raw"})
STREAMS = frozenset({"stdout", "stderr"})
JPEG_QUALITY = 95


@dataclass(frozen=True)
class NotebookRules:
    """What a notebook keeps: metadata keys and output mime types on the policy's allowlists."""

    metadata_allowed: frozenset[str]
    mime_types_allowed: frozenset[str]


@dataclass(frozen=True)
class CanonicalRules:
    """The policy's settings that canonicalisation needs (the checker's allowlists, the same lists)."""

    allowed_types: frozenset[str]
    notebooks: NotebookRules

    @classmethod
    def of(cls, policy: DisclosurePolicy) -> CanonicalRules:
        """The rules of ``policy``: its allowed file types and its notebook allowlists."""
        notebooks = NotebookRules(frozenset(policy.notebooks.metadata_allowed),
                                  frozenset(policy.notebooks.mime_types_allowed))
        return cls(allowed_types=frozenset(policy.checker.allowed_types), notebooks=notebooks)


@dataclass(frozen=True)
class Canonical:
    """The outcome for one file: its kind and stored canonical object, or why it has none."""

    kind: str | None
    sha256: str | None = None
    size: int | None = None
    problem: str | None = None


def _refuse(reason: str) -> InvalidInput:
    return InvalidInput(reason)


# --- kinds -----------------------------------------------------------------------------------

def _looks_like_notebook(data: bytes) -> bool:
    try:
        parsed = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(parsed, dict) and "cells" in parsed and "nbformat" in parsed


def kind_of(relpath: str, data: bytes) -> str:
    """The file's kind from its name, a JSON notebook under another name counting as a notebook."""
    suffix = PurePosixPath(relpath).suffix.lower()
    kind = EXTENSIONS.get(suffix)
    if kind is None:
        raise _refuse(f"file type {suffix or '(no extension)'} has no canonical form; "
                      "export as csv, tsv, txt, md, json, png, jpeg or ipynb")
    if kind == "json" and _looks_like_notebook(data):
        return "ipynb"
    return kind


# --- text ------------------------------------------------------------------------------------

def _text(data: bytes, what: str = "the file") -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _refuse(f"{what} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\x00" in text:
        raise _refuse(f"{what} holds NUL bytes, so it is binary data, not text; export text or an image")
    return _lines(text)


def _lines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def canonical_text(data: bytes, kind: str) -> bytes:
    """UTF-8 without byte-order mark, ``\\n`` line ends; JSON must parse."""
    text = _text(data)
    if kind == "json":
        try:
            json.loads(text)
        except json.JSONDecodeError as exc:
            raise _refuse(f"the file is not valid JSON (line {exc.lineno}, column {exc.colno}); fix it or export it as .txt") from None
    return text.encode("utf-8")


# --- images ----------------------------------------------------------------------------------

def _pixels(img: Image.Image) -> Image.Image:
    """The decoded pixels in a plain mode, as a fresh image with no metadata at all."""
    transparent = "transparency" in img.info
    if img.mode in ("P", "PA"):
        img = img.convert("RGBA" if transparent or img.mode == "PA" else "RGB")
    elif img.mode in ("L", "RGB") and transparent:
        img = img.convert("LA" if img.mode == "L" else "RGBA")
    elif img.mode not in ("1", "L", "LA", "I", "I;16", "RGB", "RGBA"):
        img = img.convert("RGB")
    return Image.frombytes(img.mode, img.size, img.tobytes())


def canonical_image(data: bytes, kind: str, what: str = "the file") -> bytes:
    """The image decoded and re-encoded from its pixels (PNG lossless; JPEG at a fixed quality)."""
    fmt = IMAGE_KINDS[kind]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=[fmt]) as img:
                if getattr(img, "n_frames", 1) != 1:
                    raise _refuse(f"{what} is an animated {fmt} with {img.n_frames} frames; export a single still image")
                img.load()
                if kind == "jpeg":
                    # Show the picture the way viewers do, then drop the EXIF that said how.
                    img = ImageOps.exif_transpose(img)
                if kind == "jpeg" and img.mode not in ("L", "RGB"):
                    img = img.convert("RGB")
                fresh = _pixels(img)
    except InvalidInput:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _refuse(f"{what} is not a decodable {fmt} image ({type(exc).__name__}); export it again as {kind}") from None
    out = io.BytesIO()
    if kind == "png":
        fresh.save(out, format="PNG", optimize=False, compress_level=6)
    else:
        fresh.save(out, format="JPEG", quality=JPEG_QUALITY, subsampling=0, optimize=False, progressive=False)
    return out.getvalue()


# --- notebooks -------------------------------------------------------------------------------

def _source(value: Any, where: str) -> str:
    if isinstance(value, str):
        return _lines(value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return _lines("".join(value))
    raise _refuse(f"{where} is not text; open and save the notebook in Jupyter")


def _metadata(value: Any, allowed: frozenset[str], where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _refuse(f"{where} has metadata that is not an object; open and save the notebook in Jupyter")
    return {key: value[key] for key in sorted(value) if key in allowed}


def _output_value(mime: str, value: Any, where: str) -> Any:
    if mime in IMAGE_MIME:
        kind = IMAGE_MIME[mime]
        text = "".join(value) if isinstance(value, list) and all(isinstance(v, str) for v in value) else value
        if not isinstance(text, str):
            raise _refuse(f"{where}: its {mime} output is not base64 text")
        try:
            raw = base64.b64decode("".join(text.split()), validate=True)
        except (binascii.Error, ValueError):
            raise _refuse(f"{where}: its {mime} output is not valid base64") from None
        return base64.b64encode(canonical_image(raw, kind, f"{where}: its {mime} output")).decode("ascii")
    if mime == "application/json" or mime.endswith("+json"):
        return json.loads(json.dumps(value))
    return _source(value, f"{where}: its {mime} output")


def _output(output: Any, rules: NotebookRules, where: str) -> dict[str, Any] | None:
    if not isinstance(output, dict):
        raise _refuse(f"{where} is not an object; open and save the notebook in Jupyter")
    kind = output.get("output_type")
    if kind == "stream":
        name = output.get("name")
        if name not in STREAMS:
            raise _refuse(f"{where} is a stream named {name!r}; only stdout and stderr are known")
        return {"output_type": "stream", "name": name, "text": _source(output.get("text", ""), where)}
    if kind == "error":
        traceback = output.get("traceback", [])
        if not isinstance(traceback, list) or not all(isinstance(t, str) for t in traceback):
            raise _refuse(f"{where} has a traceback that is not a list of lines")
        return {"output_type": "error", "ename": _source(output.get("ename", ""), where),
                "evalue": _source(output.get("evalue", ""), where), "traceback": [_lines(t) for t in traceback]}
    if kind in ("display_data", "execute_result"):
        data = output.get("data", {})
        if not isinstance(data, dict):
            raise _refuse(f"{where} has output data that is not an object")
        kept = {mime: _output_value(mime, data[mime], where) for mime in sorted(data) if mime in rules.mime_types_allowed}
        if not kept:
            return None  # nothing a viewer of the allowed types would display
        result: dict[str, Any] = {"output_type": kind, "data": kept, "metadata": {}}
        if kind == "execute_result":
            result["execution_count"] = _execution_count(output.get("execution_count"), where)
        return result
    raise _refuse(f"{where} has unknown output type {kind!r}; open and save the notebook in Jupyter")


def _execution_count(value: Any, where: str) -> int | None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
        return value
    raise _refuse(f"{where} has an execution count that is not a number")


def _cell(index: int, cell: Any, rules: NotebookRules) -> dict[str, Any]:
    where = f"cell {index + 1}"
    if not isinstance(cell, dict):
        raise _refuse(f"{where} is not an object; open and save the notebook in Jupyter")
    cell_type = cell.get("cell_type")
    if cell_type not in CELL_TYPES:
        raise _refuse(f"{where} has unknown cell type {cell_type!r}; use code, markdown or raw cells")
    # Ids are regenerated: an id is a free string a viewer never shows.
    result: dict[str, Any] = {"cell_type": cell_type, "id": f"cell-{index + 1}",
                              "metadata": _metadata(cell.get("metadata"), rules.metadata_allowed, where),
                              "source": _source(cell.get("source", ""), where)}
    if cell_type == "code":
        outputs = cell.get("outputs", [])
        if not isinstance(outputs, list):
            raise _refuse(f"{where} has outputs that are not a list")
        kept = [_output(o, rules, f"{where}, output {i + 1}") for i, o in enumerate(outputs)]
        result["outputs"] = [o for o in kept if o is not None]
        result["execution_count"] = _execution_count(cell.get("execution_count"), where)
    return result


def canonical_notebook(data: bytes, rules: NotebookRules) -> bytes:
    """Cells, sources, execution counts and displayed outputs; allowlisted metadata; sorted keys."""
    try:
        nb = json.loads(_text(data, "the notebook"))
    except json.JSONDecodeError as exc:
        raise _refuse(f"the notebook is not valid JSON (line {exc.lineno}); open and save it in Jupyter") from None
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise _refuse("the file is not a Jupyter notebook (no list of cells); open and save it in Jupyter")
    if nb.get("nbformat") != 4:
        raise _refuse(f"the notebook is in format {nb.get('nbformat')!r}; save it with a current Jupyter (format 4)")
    result = {"cells": [_cell(i, c, rules) for i, c in enumerate(nb["cells"])],
              "metadata": _metadata(nb.get("metadata"), rules.metadata_allowed, "the notebook"),
              "nbformat": 4, "nbformat_minor": 5}
    return (json.dumps(result, sort_keys=True, indent=1, ensure_ascii=False) + "\n").encode("utf-8")


# --- any file --------------------------------------------------------------------------------

def canonical_bytes(relpath: str, data: bytes, rules: CanonicalRules) -> tuple[str, bytes]:
    """(kind, canonical bytes) of a submitted file; raises InvalidInput (one line) when it has none."""
    kind = kind_of(relpath, data)
    if kind not in rules.allowed_types:
        raise _refuse(f"{kind} files may not leave under the disclosure policy (allowed: {', '.join(sorted(rules.allowed_types))})")
    if kind in IMAGE_KINDS:
        return kind, canonical_image(data, kind)
    if kind == "ipynb":
        return kind, canonical_notebook(data, rules.notebooks)
    return kind, canonical_text(data, kind)


def store_bytes(settings: Settings, data: bytes) -> StoredFile:
    """Put ``data`` in the content-addressed quarantine (atomically; an existing link is refused)."""
    sha = hashlib.sha256(data).hexdigest()
    target = object_path(settings, sha)
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        existing = os.lstat(target)
    except FileNotFoundError:
        existing = None
    if existing is not None:
        if not stat.S_ISREG(existing.st_mode):
            raise InvalidInput(f"quarantined object {sha[:12]} is not a regular file: restore the quarantine from backup")
        read_object(settings, sha)  # the same bytes are there already (verified)
        return StoredFile(sha256=sha, size=len(data), path=target)
    tmp_dir = settings.quarantine_dir / "tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp_name = tempfile.mkstemp(dir=tmp_dir, prefix="canonical-")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
            os.fchmod(out.fileno(), 0o444)
        os.rename(tmp_name, target)
        dir_fd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except BaseException:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        raise
    return StoredFile(sha256=sha, size=len(data), path=target)


def canonicalise_objects(settings: Settings, policy: DisclosurePolicy, objects: dict[str, Path]) -> dict[str, Canonical]:
    """For each ``relpath -> quarantined object``, store its canonical form or say why there is none."""
    rules = CanonicalRules.of(policy)
    results: dict[str, Canonical] = {}
    for relpath, path in objects.items():
        data = path.read_bytes()
        try:
            kind, canonical = canonical_bytes(relpath, data, rules)
        except InvalidInput as exc:
            results[relpath] = Canonical(kind=None, problem=str(exc))
            continue
        except Exception as exc:  # noqa: BLE001 - whatever breaks, the file must not leave
            results[relpath] = Canonical(kind=None, problem=f"its canonical form could not be made ({type(exc).__name__})")
            continue
        stored = store_bytes(settings, canonical)
        results[relpath] = Canonical(kind=kind, sha256=stored.sha256, size=stored.size)
    return results


def with_canonical_findings(results: dict[str, dict[str, Any]], canonical: dict[str, Canonical]) -> dict[str, dict[str, Any]]:
    """The check results with a ``fail`` finding for each file that has no canonical form."""
    merged = dict(results)
    for relpath, outcome in canonical.items():
        if outcome.problem is None:
            continue
        result = dict(merged.get(relpath) or {"status": str(Verdict.PASS), "findings": []})
        finding = {"rule": RULE, "status": str(Verdict.FAIL), "locations": [],
                   "message": f"cannot be released: {outcome.problem}"}
        result["findings"] = [*result.get("findings", []), finding]
        result["status"] = str(worst([result.get("status", Verdict.PASS), Verdict.FAIL]))
        merged[relpath] = result
    return merged


def problem_of(check_json: dict[str, Any] | None) -> str | None:
    """Why a submitted file has no canonical form, from its check results."""
    for finding in (check_json or {}).get("findings", []):
        if finding.get("rule") == RULE:
            return str(finding.get("message", "")).removeprefix("cannot be released: ") or None
    return None
