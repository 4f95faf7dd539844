"""The checker's registry: every file check has one signature and a name.

A file is first taken apart into *parts* (``enclave.disclosure.checker.parts``): texts,
tables, images and notebook structures, each with where it sits in the file. Every check
registered here for a part's kind then runs on it: ``check(part, policy) -> [Finding]``.
The check's name is the ``rule`` of its findings unless it reports a statistical rule
(``threshold``, ``zeros``, ``rounding``, ``dof``) by that rule's name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import polars as pl

from enclave.disclosure.evidence import Evidence
from enclave.disclosure.findings import Finding
from enclave.disclosure.policy import DisclosurePolicy

Where = Callable[[int, str], str]  # (data row index, column) -> location in words


class PartKind(StrEnum):
    """What a part of a file is."""

    TEXT = "text"
    TABLE = "table"
    IMAGE = "image"
    NOTEBOOK = "notebook"


@dataclass
class Part:
    """One piece of a file to judge.

    ``where`` says in words where it sits ("cell 3 output 1", "line 12"). A table carries
    its frame and ``locate`` (row, column -> words); ``origin`` says how it was found
    (csv, delimited, markdown, html, json, fixed-width, literal). ``evidence`` is set only
    for a table whose evidence the caller has verified by reproducing it.
    """

    kind: PartKind
    where: str
    text: str = ""
    frame: pl.DataFrame | None = None
    locate: Where | None = None
    origin: str = ""
    data: bytes = b""
    value: Any = None
    evidence: Evidence | None = None
    cache: dict[str, Any] = field(default_factory=dict)


CheckFn = Callable[[Part, DisclosurePolicy], list[Finding]]


@dataclass(frozen=True)
class Check:
    """A registered check: its name, the kind of part it reads, what it catches, the function."""

    name: str
    kind: PartKind
    summary: str
    fn: CheckFn


CHECKS: dict[str, Check] = {}


def check(name: str, kind: PartKind, summary: str) -> Callable[[CheckFn], CheckFn]:
    """Register ``fn`` as the check ``name`` for parts of ``kind``."""

    def decorate(fn: CheckFn) -> CheckFn:
        if name in CHECKS:
            raise ValueError(f"check {name!r} is registered twice")
        CHECKS[name] = Check(name, kind, summary, fn)
        return fn

    return decorate


def run_checks(part: Part, policy: DisclosurePolicy) -> list[Finding]:
    """Every registered check for the part's kind, in registration order."""
    findings: list[Finding] = []
    for registered in CHECKS.values():
        if registered.kind is part.kind:
            findings += registered.fn(part, policy)
    return findings
