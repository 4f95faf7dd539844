"""Provenance of a run, and whether a rerun reproduced it.

A run records what went in (the notebook's sha256, the parameters, the image digest (the
image's id, or on Docker Swarm with a registry the pinned reference
``<registry>/<name>@sha256:<digest>`` every node pulled), the dataset views with their
versions and file checksums) and what came out (the sha256 of
every output file). Comparing a rerun with its original says, file by file, whether the
outputs match (byte-identical, equal as tables for CSV, equal cell by cell for the
executed notebook) and which inputs changed, which is usually why they do not.

Functions over dictionaries and folders read through ``enclave.workspace_fs``: no
database, no Docker.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable, Mapping
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import Any

import polars as pl

from enclave.errors import EnclaveError, NotFound
from enclave.workspace_fs import SYMLINK, WorkspaceDir, open_tree

# How large an output may be for a rerun to compare it beyond its checksum.
COMPARE_MAX_BYTES = 256 * 1024 * 1024

# A folder of outputs: an open one (reached without links), or a host path the enclave
# owns, which is opened the same way.
Folder = Path | WorkspaceDir


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_manifest(directory: Folder) -> dict[str, str]:
    """Every file under ``directory`` (relative POSIX path -> sha256); a link is recorded
    as ``symlink``, never followed (``enclave.workspace_fs``). A missing folder has none."""
    if isinstance(directory, WorkspaceDir):
        return directory.manifest()
    try:
        with open_tree(directory) as folder:
            return folder.manifest()
    except NotFound:
        return {}


@dataclass(frozen=True)
class ViewRecord:
    """One dataset view as a run saw it."""

    dataset: str
    version: int | None
    version_sha256: str | None
    files: dict[str, str]

    @property
    def sha256(self) -> str:
        """One digest over the view's file listing (names and checksums)."""
        return sha256_bytes(json.dumps(self.files, sort_keys=True, separators=(",", ":")).encode())

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "sha256": self.sha256}


def view_record(dataset: str, host_path: Path, version: int | None = None,
                version_sha256: str | None = None) -> ViewRecord:
    """Checksum a view directory as mounted into the run."""
    return ViewRecord(dataset, version, version_sha256, file_manifest(host_path))


class OutputMatch(StrEnum):
    """How one output of a rerun compares with the original (worst last)."""

    IDENTICAL = "identical"
    EQUAL_TABLE = "equal_table"
    EQUAL_NOTEBOOK = "equal_notebook"
    EQUAL_EVIDENCE = "equal_evidence"
    DIFFERS = "differs"
    MISSING = "missing"
    EXTRA = "extra"


MATCHING = frozenset({OutputMatch.IDENTICAL, OutputMatch.EQUAL_TABLE, OutputMatch.EQUAL_NOTEBOOK,
                      OutputMatch.EQUAL_EVIDENCE})
# The safe library's evidence sidecars (enclave.disclosure.evidence) record when they were
# written; everything else in them must match.
EVIDENCE_SUFFIX = ".evidence.json"
EVIDENCE_VOLATILE = frozenset({"created"})


@dataclass(frozen=True)
class FileComparison:
    path: str
    match: OutputMatch
    detail: str = ""


@dataclass(frozen=True)
class Comparison:
    """The verdict on a rerun: per-file matches and the inputs that changed."""

    files: list[FileComparison] = field(default_factory=list)
    input_changes: list[str] = field(default_factory=list)

    @property
    def matches(self) -> bool:
        return bool(self.files) and all(f.match in MATCHING for f in self.files)

    def as_json(self) -> dict[str, Any]:
        return {
            "matches": self.matches,
            "files": [{"path": f.path, "match": f.match.value, "detail": f.detail} for f in self.files],
            "input_changes": list(self.input_changes),
        }

    def summary(self) -> str:
        """One line: reproduced, or which outputs differ and the likely reasons."""
        if self.matches:
            return f"reproduced: all {len(self.files)} output(s) match"
        bad = [f"{f.path} ({f.match.value})" for f in self.files if f.match not in MATCHING]
        why = "; ".join(self.input_changes) if self.input_changes else "no input changed (the notebook is not deterministic)"
        listing = ", ".join(bad) if bad else "no outputs to compare"
        return f"NOT reproduced: {listing}; inputs that changed: {why}"


def input_changes(original: Mapping[str, Any], rerun: Mapping[str, Any]) -> list[str]:
    """What differs between two runs' recorded inputs, one readable phrase per change.

    Each mapping has ``notebook_sha256``, ``parameters``, ``image_digest`` and ``views``
    (a list of :meth:`ViewRecord.as_json` dictionaries).
    """
    changes: list[str] = []
    if original.get("notebook_sha256") != rerun.get("notebook_sha256"):
        changes.append("the notebook changed")
    if original.get("parameters") != rerun.get("parameters"):
        changes.append(f"parameters changed from {original.get('parameters')} to {rerun.get('parameters')}")
    if original.get("image_digest") != rerun.get("image_digest"):
        changes.append(f"the image changed from {_short(original.get('image_digest'))} "
                       f"to {_short(rerun.get('image_digest'))}")
    before = {v["dataset"]: v for v in original.get("views", [])}
    after = {v["dataset"]: v for v in rerun.get("views", [])}
    for name in sorted(before.keys() | after.keys()):
        old, new = before.get(name), after.get(name)
        if new is None:
            changes.append(f"dataset {name} is no longer available to the project")
        elif old is None:
            changes.append(f"dataset {name} is newly available to the project")
        elif old.get("version") != new.get("version"):
            changes.append(f"dataset {name} changed from version {old.get('version')} to {new.get('version')}")
        elif old.get("sha256") != new.get("sha256"):
            changes.append(f"the view of dataset {name} changed (same version {new.get('version')}, "
                           "different files: the grant's columns or rows, or opt-outs, changed)")
    return changes


def _short(digest: Any) -> str:
    """An image id (``sha256:...``) or pinned reference (``host:port/name@sha256:...``) in
    short: 12 hex digits, after the reference's repository name."""
    text = str(digest or "unknown")
    name, at, ref_digest = text.rpartition("@")
    short = ref_digest.split(":", 1)[-1][:12]
    return f"{name.rsplit('/', 1)[-1]}@{short}" if at else short


def compare_outputs(
    original: Mapping[str, str], original_dir: Folder, rerun: Mapping[str, str], rerun_dir: Folder,
) -> list[FileComparison]:
    """Compare two output manifests (relative path -> sha256) file by file. The files are
    read through ``enclave.workspace_fs``: a link, even one swapped in after the checksum
    was taken, is never read."""
    with ExitStack() as stack:
        old_dir, new_dir = (d if isinstance(d, WorkspaceDir) else stack.enter_context(open_tree(d))
                            for d in (original_dir, rerun_dir))
        results: list[FileComparison] = []
        for path, digest in sorted(original.items()):
            if path not in rerun:
                results.append(FileComparison(path, OutputMatch.MISSING, "the rerun did not write it"))
                continue
            results.append(_compare_file(path, digest, old_dir, rerun[path], new_dir))
        for path in sorted(set(rerun) - set(original)):
            results.append(FileComparison(path, OutputMatch.EXTRA, "only the rerun wrote it"))
        return results


def _compare_file(path: str, digest: str, old_dir: WorkspaceDir, new_digest: str, new_dir: WorkspaceDir) -> FileComparison:
    if SYMLINK in (digest, new_digest):
        return FileComparison(path, OutputMatch.DIFFERS, "a symbolic link: not compared")
    if digest == new_digest:
        return FileComparison(path, OutputMatch.IDENTICAL)
    name = PurePosixPath(path)
    suffix = name.suffix.lower()
    if not (name.name.endswith(EVIDENCE_SUFFIX) or suffix in (".csv", ".ipynb")):
        return FileComparison(path, OutputMatch.DIFFERS, "the bytes differ")
    try:
        old, new = (d.read_bytes(path, max_bytes=COMPARE_MAX_BYTES) for d in (old_dir, new_dir))
    except EnclaveError as exc:
        return FileComparison(path, OutputMatch.DIFFERS, f"not compared: {exc}")
    if name.name.endswith(EVIDENCE_SUFFIX):
        same, detail = evidence_equal(old, new)
        return FileComparison(path, OutputMatch.EQUAL_EVIDENCE if same else OutputMatch.DIFFERS, detail)
    if suffix == ".csv":
        same, detail = tables_equal(old, new)
        return FileComparison(path, OutputMatch.EQUAL_TABLE if same else OutputMatch.DIFFERS, detail)
    if suffix == ".ipynb":
        same, detail = notebooks_equal(old, new)
        return FileComparison(path, OutputMatch.EQUAL_NOTEBOOK if same else OutputMatch.DIFFERS, detail)
    return FileComparison(path, OutputMatch.DIFFERS, "the bytes differ")


def tables_equal(old: bytes, new: bytes) -> tuple[bool, str]:
    """Two CSV files hold the same table: same columns, same rows (in any order)."""
    try:
        a = pl.read_csv(io.BytesIO(old), infer_schema_length=None)
        b = pl.read_csv(io.BytesIO(new), infer_schema_length=None)
    except (pl.exceptions.PolarsError, OSError) as exc:
        return False, f"cannot be read as a table ({str(exc).splitlines()[0]})"
    if a.columns != b.columns:
        return False, f"columns differ: {a.columns} vs {b.columns}"
    if a.height != b.height:
        return False, f"row counts differ: {a.height} vs {b.height}"
    if a.schema != b.schema:
        return False, "column types differ"
    if not a.sort(a.columns, nulls_last=True).equals(b.sort(b.columns, nulls_last=True)):
        return False, "same shape, different values"
    return True, "same table (formatting or row order differs)"


def evidence_equal(old: bytes, new: bytes) -> tuple[bool, str]:
    """Two evidence sidecars say the same, apart from when they were written."""
    try:
        a, b = (json.loads(p) for p in (old, new))
    except ValueError as exc:
        return False, f"cannot be read as JSON ({exc})"
    if not (isinstance(a, dict) and isinstance(b, dict)):
        return False, "not an evidence record"
    keys = sorted(k for k in a.keys() | b.keys() if k not in EVIDENCE_VOLATILE and a.get(k) != b.get(k))
    if keys:
        return False, f"evidence differs in {', '.join(keys)}"
    return True, "same evidence (written at another time)"


def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def _outputs(raw: list[Any]) -> list[Any]:
    """A cell's outputs as content: execution counts, timings and stream chunking vary between runs.

    The kernel sends printed text in chunks when its flush timer fires, so one run may hold a
    line as one stream output and the next as two; adjacent chunks of one stream are joined.
    """
    outputs: list[Any] = []
    for out in raw:
        if not isinstance(out, dict):
            outputs.append(out)
            continue
        out = {k: v for k, v in out.items() if k not in ("execution_count", "metadata")}
        if out.get("output_type") == "stream":
            out["text"] = _text(out.get("text", ""))
            last = outputs[-1] if outputs else None
            if isinstance(last, dict) and last.get("output_type") == "stream" and last.get("name") == out.get("name"):
                last["text"] += out["text"]
                continue
        outputs.append(out)
    return outputs


def _cells(raw: bytes) -> list[tuple[str, str, list[Any]]]:
    data = json.loads(raw)
    cells = []
    for cell in data.get("cells", []):
        outputs = _outputs(cell.get("outputs", []))
        source = cell.get("source", "")
        cells.append((cell.get("cell_type", ""), "".join(source) if isinstance(source, list) else source, outputs))
    return cells


def notebooks_equal(old: bytes, new: bytes) -> tuple[bool, str]:
    """Two executed notebooks have the same cells with the same outputs (metadata aside)."""
    try:
        a, b = _cells(old), _cells(new)
    except (ValueError, AttributeError, TypeError) as exc:
        return False, f"cannot be read as a notebook ({exc})"
    if len(a) != len(b):
        return False, f"cell counts differ: {len(a)} vs {len(b)}"
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        if x[:2] != y[:2]:
            return False, f"cell {i + 1} source differs"
        if x[2] != y[2]:
            return False, f"cell {i + 1} output differs"
    return True, "same cells and outputs (run metadata differs)"


def comparison(
    original_inputs: Mapping[str, Any], rerun_inputs: Mapping[str, Any],
    original_outputs: Mapping[str, str], original_dir: Folder,
    rerun_outputs: Mapping[str, str], rerun_dir: Folder,
) -> Comparison:
    """The full verdict on a rerun."""
    return Comparison(
        files=compare_outputs(original_outputs, original_dir, rerun_outputs, rerun_dir),
        input_changes=input_changes(original_inputs, rerun_inputs),
    )


def records_json(views: Iterable[ViewRecord]) -> list[dict[str, Any]]:
    return [v.as_json() for v in sorted(views, key=lambda v: v.dataset)]
