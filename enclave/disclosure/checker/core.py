"""The output file checker: classify each file by its content and apply the rules.

Fail closed: anything the checker cannot positively read as an allowed type fails, and
anything it can read but not judge goes to a reviewer. Trust comes only from evidence the
caller has verified by reproducing it (``evidence=``); the checker never reads an evidence
file from disk, so a sidecar written beside a file changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

# Importing the check modules registers their checks.
from enclave.disclosure.checker import images, rowlevel, tables, text  # noqa: F401
from enclave.disclosure.checker.filetypes import sniff
from enclave.disclosure.checker.notebooks import add_notebook
from enclave.disclosure.checker.parts import Parts
from enclave.disclosure.checker.registry import Part, PartKind, run_checks
from enclave.disclosure.evidence import Evidence, is_sidecar
from enclave.disclosure.findings import Finding
from enclave.disclosure.policy import DisclosurePolicy
from enclave.disclosure.verdict import Verdict, worst

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
               evidence: Evidence | None = None) -> FileReport:
    """Classify ``path`` by content, take it apart and run every check; never follows a link.

    With ``root`` (e.g. a project's outbox) the file must lie inside it and is reported
    relative to it. ``evidence`` is a table's evidence that the caller has already verified
    by reproducing it; without it the file is checked as a plain file, with no trust.
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
        return _refuse(shown, "evidence", "evidence files hold exact small counts and stay inside; submit the output they describe")
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
    collected = Parts(policy)
    findings: list[Finding] = []
    if evidence is not None and kind not in ("csv", "tsv"):
        findings.append(Finding("evidence", Verdict.REVIEW, "evidence was given for a file that is not a table; checked without it", locations=[shown]))
        evidence = None
    try:
        findings += _take_apart(kind, data, sniffed.text or "", shown, policy, evidence, collected)
    except (RecursionError, MemoryError, ValueError, TypeError, KeyError, IndexError, AttributeError,
            pl.exceptions.PolarsError) as exc:
        # What the checker cannot interpret fails; the reviewer sees why.
        findings.append(Finding("unreadable", Verdict.FAIL,
                                f"the checker could not interpret this file ({type(exc).__name__}: {str(exc)[:120]}); export it as a plain table or text",
                                locations=[shown]))
    return _report(shown, findings, kind)


def _take_apart(kind: str, data: bytes, text: str, shown: str, policy: DisclosurePolicy, evidence: Evidence | None,
                collected: Parts) -> list[Finding]:
    """The file's parts, then every registered check on each."""
    findings: list[Finding] = []
    limits = policy.checker
    if kind in ("png", "jpeg"):
        collected.parts.append(Part(PartKind.IMAGE, shown, data=data, origin=kind))
    elif kind in ("csv", "tsv"):
        findings += _delimited(data, "\t" if kind == "tsv" else ",", policy, evidence, collected)
    elif kind == "ipynb":
        add_notebook(json.loads(text or "{}"), collected)
    elif kind == "json":
        collected.add_json(json.loads(text or "null"), "json")
    elif text.count("\n") > limits.max_rows:
        findings.append(Finding("rows", Verdict.FAIL, f"more than {limits.max_rows} lines; only summaries may leave", locations=[shown]))
    else:
        collected.add_text(text, "text")
    findings += collected.findings
    for part in collected.parts:
        findings += run_checks(part, policy)
    return findings


def _read_no_follow(path: Path) -> bytes:
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags)
    with os.fdopen(fd, "rb") as handle:
        return handle.read()


def _delimited(data: bytes, separator: str, policy: DisclosurePolicy, evidence: Evidence | None,
               collected: Parts) -> list[Finding]:
    """A CSV or TSV as one table part; verified evidence is used only if it describes these bytes."""
    try:
        frame = _read_table(data, separator)
    except (pl.exceptions.PolarsError, ValueError) as exc:
        reason = str(exc).splitlines()[0][:160]
        return [Finding("file_type", Verdict.FAIL, f"not a well-formed UTF-8 table ({reason}); save it with one header line and the same number of fields per row")]
    if frame.height > policy.checker.max_rows:
        return [Finding("rows", Verdict.FAIL, f"{frame.height} rows is over the limit of {policy.checker.max_rows}; only summaries may leave")]
    findings = []
    if evidence is not None and evidence.output.sha256 != hashlib.sha256(data).hexdigest():
        findings.append(Finding("evidence", Verdict.REVIEW, "the evidence given describes other bytes than this file; checked without it",
                                locations=[evidence.output.file]))
        evidence = None
    collected.parts.append(Part(PartKind.TABLE, "table", frame=frame, origin="csv", evidence=evidence,
                                locate=lambda row, column: f"line {row + 2}, column {column!r}"))
    return findings


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


def check_files(paths: Iterable[Path], policy: DisclosurePolicy, *, root: Path | None = None,
                evidence: Mapping[Path, Evidence] | None = None) -> CheckReport:
    """Check each file; ``evidence`` maps a path to its caller-verified evidence."""
    evidence = {Path(p): e for p, e in (evidence or {}).items()}
    return CheckReport([check_file(Path(p), policy, root=root, evidence=evidence.get(Path(p))) for p in paths])
