"""What is wrong with an input: bad rows and columns, gathered before anything is written.

Ingest collects every problem it can find into a :class:`ValidationReport`; a report with
problems refuses the whole ingest (no version is created) and is shown to the admin.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from enclave.errors import InvalidInput

# Report at most this many problems per table in detail (counts stay exact).
MAX_DETAILED = 50


@dataclass(frozen=True)
class Problem:
    """One bad value, row, column or file: where it is and what is wrong with it."""

    table: str
    where: str  # "row 17", "Patient.ndjson line 3", "header", "file"
    column: str | None
    message: str

    def __str__(self) -> str:
        col = f" column {self.column}" if self.column else ""
        return f"{self.table} {self.where}{col}: {self.message}"


@dataclass
class ValidationReport:
    """Problems found in one input, with exact counts per table and column."""

    source: str
    problems: list[Problem] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)  # "table.column" -> bad values

    def add(self, problem: Problem, count: int = 1) -> None:
        if sum(1 for p in self.problems if p.table == problem.table) < MAX_DETAILED:
            self.problems.append(problem)
        key = f"{problem.table}.{problem.column or '*'}"
        self.counts[key] = self.counts.get(key, 0) + count

    def count(self, table: str, column: str | None, n: int) -> None:
        """Record ``n`` more bad values whose details were not listed one by one."""
        if n:
            key = f"{table}.{column or '*'}"
            self.counts[key] = self.counts.get(key, 0) + n

    @property
    def ok(self) -> bool:
        return not self.problems and not any(self.counts.values())

    def raise_if_bad(self) -> None:
        if not self.ok:
            raise IngestRefused(self)

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "counts": dict(sorted(self.counts.items())),
            "problems": [
                {"table": p.table, "where": p.where, "column": p.column, "message": p.message}
                for p in self.problems
            ],
        }


class IngestRefused(InvalidInput):
    """Malformed input: nothing was written; ``report`` lists the bad rows and columns."""

    def __init__(self, report: ValidationReport) -> None:
        self.report = report
        total = sum(report.counts.values()) or len(report.problems)
        cols = ", ".join(f"{k} ({v})" for k, v in sorted(report.counts.items()) if v)
        first = "; ".join(str(p) for p in report.problems[:3])
        super().__init__(
            f"{report.source} refused, no version created: {total} problem(s) in {cols}; "
            f"first: {first}: fix the input (or its dictionary) and ingest again"
        )
