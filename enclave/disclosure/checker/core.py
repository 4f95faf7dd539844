"""The output file checker: classify each file by its content and apply the rules.

Fail closed: anything the checker cannot positively read as an allowed type fails, and
anything it can read but not judge goes to a reviewer.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from enclave.disclosure.checker.documents import check_json_value, check_notebook, check_text
from enclave.disclosure.checker.filetypes import sniff
from enclave.disclosure.checker.tables import check_cells, check_evidence, check_values, profile
from enclave.disclosure.evidence import is_sidecar, read_evidence, sidecar_path
from enclave.disclosure.findings import Finding
from enclave.disclosure.policy import DisclosurePolicy
from enclave.disclosure.verdict import Verdict, worst
from enclave.errors import InvalidInput

HEAD_BYTES = 8192


@dataclass
class FileReport:
    """The checker's verdict on one file."""

    path: str
    status: Verdict
    findings: list[Finding] = field(default_factory=list)
    type: str | None = None

    def to_dict(self) -> dict:
        return {"path": self.path, "status": str(self.status), "findings": [f.to_dict() for f in self.findings]}


@dataclass
class CheckReport:
    """The verdicts on a set of files; ``status`` is the worst of them."""

    files: list[FileReport]

    @property
    def status(self) -> Verdict:
        return worst(f.status for f in self.files)

    def to_dict(self) -> dict:
        return {"status": str(self.status), "files": [f.to_dict() for f in self.files]}


def _report(path: str, findings: list[Finding], kind: str | None = None) -> FileReport:
    return FileReport(path, worst(f.status for f in findings), findings, kind)


def _refuse(path: str, rule: str, message: str) -> FileReport:
    return FileReport(path, Verdict.FAIL, [Finding(rule, Verdict.FAIL, message, locations=[path])])


def check_file(path: Path, policy: DisclosurePolicy, *, root: Path | None = None,
               evidence: Path | None = None) -> FileReport:
    """Classify ``path`` by content and apply every rule; never follows a symbolic link.

    With ``root`` (e.g. a project's outbox) the file must lie inside it and is reported
    relative to it. A table's evidence sidecar is read from ``evidence`` when given (e.g.
    when the file was copied into quarantine), else from beside the file.
    """
    path = Path(path)
    shown = str(path)
    if root is not None:
        root = Path(root).absolute()
        try:
            relative = path.absolute().relative_to(root)
        except ValueError:
            return _refuse(shown, "location", f"{shown} is outside {root}; only files in the outbox may leave")
        shown = str(relative)
        parts = relative.parts
    else:
        parts = (path.name,)
    try:
        info = path.lstat()
    except FileNotFoundError:
        return _refuse(shown, "missing", f"{shown} does not exist")
    except OSError as exc:
        return _refuse(shown, "unreadable", f"{shown} cannot be read ({exc.strerror})")
    if stat.S_ISLNK(info.st_mode):
        return _refuse(shown, "symlink", "symbolic links never leave (and are not followed); copy the file itself into the outbox")
    if not stat.S_ISREG(info.st_mode):
        return _refuse(shown, "file_type", "not a regular file (a directory, device or pipe); submit files one by one")
    if any(part.startswith(".") for part in parts):
        return _refuse(shown, "hidden", "hidden files (names starting with '.') never leave; rename it if it is a real output")
    if is_sidecar(path):
        return _refuse(shown, "evidence", "evidence sidecars hold exact small counts and stay inside; submit the output they describe, its evidence is read from beside it")
    limits = policy.checker
    if info.st_size > limits.max_file_bytes:
        return _refuse(shown, "size", f"{info.st_size} bytes is over the limit of {limits.max_file_bytes}; split or summarise the output")
    try:
        data = _read_no_follow(path)
    except OSError as exc:
        return _refuse(shown, "unreadable", f"{shown} cannot be read ({exc.strerror or exc})")
    sniffed = sniff(data[:HEAD_BYTES], data, path.suffix)
    if sniffed.problem or sniffed.type is None:
        return _refuse(shown, "file_type", sniffed.problem or "unknown file type")
    if sniffed.type not in limits.allowed_types:
        return _refuse(shown, "file_type", f"{sniffed.type} files are not allowed by policy {policy.version}; allowed: {', '.join(limits.allowed_types)}")
    kind = sniffed.type
    if kind in ("png", "jpeg"):
        findings = [Finding("image", Verdict.REVIEW, "images cannot be checked automatically; a reviewer needs the table behind it (submit that too)", locations=[shown])]
    elif kind in ("csv", "tsv"):
        findings = _check_delimited(evidence or sidecar_path(path), data, "\t" if kind == "tsv" else ",", policy)
    elif kind == "ipynb":
        findings = check_notebook(json.loads(sniffed.text or "{}"), policy)
    elif kind == "json":
        findings = check_json_value(json.loads(sniffed.text or "null"), policy, "json")
    else:
        findings = check_text(sniffed.text or "", policy, "text")
        if (sniffed.text or "").count("\n") > limits.max_rows:
            findings.append(Finding("rows", Verdict.FAIL, f"more than {limits.max_rows} lines; only summaries may leave", locations=[shown]))
    return _report(shown, findings, kind)


def _read_no_follow(path: Path) -> bytes:
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags)
    with os.fdopen(fd, "rb") as handle:
        return handle.read()


def _check_delimited(evidence_file: Path, data: bytes, separator: str, policy: DisclosurePolicy) -> list[Finding]:
    try:
        frame = _read_table(data, separator)
    except (pl.exceptions.PolarsError, ValueError) as exc:
        reason = str(exc).splitlines()[0][:160]
        return [Finding("file_type", Verdict.FAIL, f"not a well-formed UTF-8 table ({reason}); save it with one header line and the same number of fields per row")]
    if frame.height > policy.checker.max_rows:
        return [Finding("rows", Verdict.FAIL, f"{frame.height} rows is over the limit of {policy.checker.max_rows}; only summaries may leave")]

    def where(row: int, column: str) -> str:
        return f"line {row + 2}, column {column!r}"

    columns = profile(frame, policy)
    findings = check_cells(frame, policy, where, columns)
    if not evidence_file.is_symlink() and evidence_file.is_file():
        try:
            evidence = read_evidence(evidence_file)
        except InvalidInput as exc:
            findings.append(Finding("evidence", Verdict.REVIEW, f"{exc}; checked without it", locations=[evidence_file.name]))
        else:
            if evidence.output.sha256 == hashlib.sha256(data).hexdigest():
                return findings + check_evidence(evidence, policy)
            findings.append(Finding("evidence", Verdict.REVIEW,
                                    "the evidence sidecar does not match this file (changed after saving?); checked without it, save it again with enclave.safe",
                                    locations=[evidence_file.name]))
    return findings + check_values(frame, policy, where, columns)


def _read_table(data: bytes, separator: str) -> pl.DataFrame:
    """Parse with types where every value fits (numbers parse faster than text), else as text."""
    options = dict(separator=separator, has_header=True, truncate_ragged_lines=False, raise_if_empty=False,
                   try_parse_dates=False)
    try:
        frame = pl.read_csv(data, infer_schema_length=10_000, **options)
    except pl.exceptions.ComputeError:
        return pl.read_csv(data, infer_schema=False, **options)
    # Only whole numbers and decimals keep their parsed type; anything else is judged as text.
    keep = {c for c, t in frame.schema.items() if t.is_integer() or t.is_float() or t == pl.String}
    if len(keep) < frame.width:
        frame = frame.with_columns(pl.col(c).cast(pl.String) for c in frame.columns if c not in keep)
    return frame


def check_files(paths: Iterable[Path], policy: DisclosurePolicy, *, root: Path | None = None) -> CheckReport:
    """Check each file; the report's status is the worst verdict."""
    return CheckReport([check_file(Path(p), policy, root=root) for p in paths])
