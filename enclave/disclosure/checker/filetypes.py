"""What a file really is, judged from its bytes; the name is only a claim to check."""

from __future__ import annotations

import codecs
import json
from dataclasses import dataclass

# (offset, signature, kind, family). Families other than "image" never leave.
_SIGNATURES: tuple[tuple[int, bytes, str, str], ...] = (
    (0, b"\x89PNG\r\n\x1a\n", "png", "image"),
    (0, b"\xff\xd8\xff", "jpeg", "image"),
    (0, b"GIF87a", "gif", "image"),
    (0, b"GIF89a", "gif", "image"),
    (0, b"II*\x00", "tiff", "image"),
    (0, b"MM\x00*", "tiff", "image"),
    (0, b"BM", "bmp", "image?"),
    (0, b"%PDF", "pdf", "document"),
    (0, b"PK\x03\x04", "zip archive (also xlsx, docx, jar)", "archive"),
    (0, b"PK\x05\x06", "zip archive", "archive"),
    (0, b"PK\x07\x08", "zip archive", "archive"),
    (0, b"\x1f\x8b", "gzip archive", "archive"),
    (0, b"BZh", "bzip2 archive", "archive"),
    (0, b"\xfd7zXZ\x00", "xz archive", "archive"),
    (0, b"7z\xbc\xaf\x27\x1c", "7z archive", "archive"),
    (0, b"Rar!\x1a\x07", "rar archive", "archive"),
    (0, b"\x28\xb5\x2f\xfd", "zstandard archive", "archive"),
    (257, b"ustar", "tar archive", "archive"),
    (0, b"\x7fELF", "ELF executable", "executable"),
    (0, b"MZ", "Windows executable", "executable"),
    (0, b"\xfe\xed\xfa\xce", "Mach-O executable", "executable"),
    (0, b"\xfe\xed\xfa\xcf", "Mach-O executable", "executable"),
    (0, b"\xcf\xfa\xed\xfe", "Mach-O executable", "executable"),
    (0, b"\xca\xfe\xba\xbe", "Mach-O or Java class", "executable"),
    (0, b"#!", "script with an interpreter line", "executable"),
    (0, b"\x00asm", "WebAssembly module", "executable"),
    (0, b"SQLite format 3\x00", "SQLite database", "data"),
    (0, b"PAR1", "Parquet data", "data"),
    (0, b"ARROW1", "Arrow/Feather data", "data"),
    (0, b"\x89HDF", "HDF5 data", "data"),
    (0, b"\x93NUMPY", "NumPy array", "data"),
    (0, b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "OLE2 document (xls, doc)", "document"),
    (0, b"RIFF", "RIFF media", "data"),
    (0, b"\x80\x04\x95", "Python pickle", "data"),
    (0, b"\x80\x05\x95", "Python pickle", "data"),
    (0, b"ORC", "ORC data", "data"),
    (0, b"Obj\x01", "Avro data", "data"),
)

EXTENSION_TYPES = {
    ".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".txt": "txt", ".md": "md", ".markdown": "md",
    ".json": "json", ".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".ipynb": "ipynb",
}
TEXT_TYPES = frozenset({"csv", "tsv", "txt", "md", "json", "ipynb"})
IMAGE_TYPES = frozenset({"png", "jpeg"})
HEAD_BYTES = 8192


@dataclass(frozen=True)
class Sniffed:
    """``type`` is an allowlist name (csv, png ...) or None; ``problem`` why not, if so."""

    type: str | None
    description: str
    family: str
    text: str | None = None
    problem: str | None = None


def sniff(head: bytes, data: bytes | None, extension: str) -> Sniffed:
    """Classify a file from its first bytes (``head``) and, for text, its whole content.

    ``data`` is the whole file when it is small enough to be text worth reading, else None.
    """
    claimed = EXTENSION_TYPES.get(extension.lower())
    for offset, signature, description, family in _SIGNATURES:
        if head[offset:offset + len(signature)] == signature:
            kind = description if family in ("image",) else None
            if kind in IMAGE_TYPES:
                if claimed != kind:
                    return Sniffed(None, description, "disguised",
                                   problem=f"content is a {description} image but the name says {extension or 'nothing'}; rename it to .{'jpg' if kind == 'jpeg' else kind}")
                return Sniffed(kind, description, "image")
            return Sniffed(None, description, family, problem=f"a {description} may not leave the enclave; export results as csv, txt, md, json, png or jpeg")
    if data is None:
        return Sniffed(None, "unreadable", "binary", problem="the file could not be read in full")
    if b"\x00" in data:
        return Sniffed(None, "binary data", "binary", problem="binary data of unknown type may not leave; export results as csv, txt or json")
    try:
        if claimed in ("csv", "tsv"):
            # The table reader validates every field's encoding itself: decode a sample only
            # (incrementally, so a character cut at the sample's end is no error).
            codecs.getincrementaldecoder("utf-8-sig")().decode(data[:HEAD_BYTES], final=len(data) <= HEAD_BYTES)
            text = ""
        else:
            text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return Sniffed(None, "non-UTF-8 data", "binary", problem="the file is not UTF-8 text; save it as UTF-8 (or it is binary data, which may not leave)")
    if claimed in IMAGE_TYPES:
        return Sniffed(None, "text", "disguised", problem=f"the name says {extension} but the content is text; name it for what it is")
    if claimed is None:
        return Sniffed(None, "text", "text", problem=f"unknown file type {extension or '(no extension)'}; rename text outputs to .txt, .csv, .tsv, .md or .json")
    if claimed in ("json", "ipynb"):
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            return Sniffed(None, "text", "text", problem=f"the name says {extension} but the content is not JSON (line {exc.lineno}); fix or rename it")
        except RecursionError:
            return Sniffed(None, "JSON", "text", problem="JSON nested too deeply to be read; export results as flat tables")
        if claimed == "ipynb" and not (isinstance(parsed, dict) and "cells" in parsed and "nbformat" in parsed):
            return Sniffed(None, "JSON", "text", problem="the name says .ipynb but the content is not a Jupyter notebook")
        if claimed == "json" and isinstance(parsed, dict) and "cells" in parsed and "nbformat" in parsed:
            return Sniffed("ipynb", "Jupyter notebook", "text", text=text)
    return Sniffed(claimed, claimed, "text", text=None if claimed in ("csv", "tsv") else text)
