"""Findings: what a rule found, how bad it is, and where."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

import polars as pl

from enclave.disclosure.policy import DisclosurePolicy
from enclave.disclosure.rules import REASON, RULES, STATUS
from enclave.disclosure.verdict import Verdict, worst

# Findings list at most this many example reasons in their message; all cells stay in .cells.
_EXAMPLES = 3


@dataclass(frozen=True)
class Finding:
    """One rule's verdict on part of an output.

    ``cells`` names table cells as (row_label, column_label) tuples when the output is a
    table the library built; ``locations`` says where in a file, in words.
    """

    rule: str
    status: Verdict
    message: str
    cells: list[tuple] = field(default_factory=list)
    locations: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"rule": self.rule, "status": str(self.status), "message": self.message, "locations": list(self.locations)}


@dataclass(frozen=True)
class Evaluation:
    """Per-cell verdict ranks (one column per rule plus ``status``) and the findings."""

    ranks: pl.DataFrame
    findings: list[Finding]

    @property
    def status(self) -> Verdict:
        return worst(f.status for f in self.findings)

    def cell_status(self) -> pl.Series:
        """The worst rank per cell (0 pass, 1 review, 2 fail)."""
        return self.ranks[STATUS]


def evaluate(
    stats: pl.DataFrame,
    policy: DisclosurePolicy,
    rules: Sequence[str],
    cells: Sequence[Hashable],
    locations: Sequence[str] | None = None,
) -> Evaluation:
    """Run the named rules over every cell; an unknown rule name is a ``review`` finding."""
    if len(cells) != stats.height:
        raise ValueError("one cell label is needed per row of statistics")
    locations = list(locations) if locations is not None else [_describe(c) for c in cells]
    columns: dict[str, pl.Series] = {}
    findings: list[Finding] = []
    for name in rules:
        rule = RULES.get(name)
        if rule is None:
            findings.append(Finding(name, Verdict.REVIEW, f"unknown rule {name!r}: a reviewer must check this output by hand"))
            continue
        result = rule.fn(stats, policy)
        columns[name] = result[STATUS]
        findings.extend(_findings_of(rule.name, rule.summary, result, cells, locations))
    if columns:
        ranks = pl.DataFrame(columns).with_columns(pl.max_horizontal(list(columns)).alias(STATUS))
    else:
        ranks = pl.DataFrame({STATUS: pl.Series([0] * stats.height, dtype=pl.Int8)})
    return Evaluation(ranks, findings)


def _findings_of(name: str, summary: str, result: pl.DataFrame, cells: Sequence, locations: Sequence[str]) -> list[Finding]:
    findings = []
    status = result[STATUS].to_list()
    reasons = result[REASON].to_list()
    for rank in (2, 1):
        hits = [i for i, s in enumerate(status) if s == rank]
        if not hits:
            continue
        examples = "; ".join(f"{locations[i]}: {reasons[i]}" for i in hits[:_EXAMPLES])
        more = f" (+{len(hits) - _EXAMPLES} more)" if len(hits) > _EXAMPLES else ""
        findings.append(
            Finding(
                rule=name,
                status=Verdict.from_rank(rank),
                message=f"{len(hits)} {summary}: {examples}{more}",
                cells=[cells[i] for i in hits],
                locations=[locations[i] for i in hits],
            )
        )
    return findings


def _describe(cell: Hashable) -> str:
    if isinstance(cell, tuple):
        return "(" + ", ".join(str(part) for part in cell) + ")"
    return str(cell)


def excerpt(text: object, limit: int = 60) -> str:
    """A short, single-line quotation of offending content, for a reviewer to see it."""
    value = " ".join(str(text).split())
    if len(value) > limit:
        value = value[: limit - 1] + "…"
    return repr(value)
