"""What every safe-statistics call returns: the checked output and its evidence."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import polars as pl

import enclave
from enclave.disclosure.evidence import (
    DatasetRef,
    Evidence,
    EvidenceCell,
    OutputRef,
    sha256_file,
    sidecar_path,
    write_evidence,
)
from enclave.disclosure.findings import Finding
from enclave.disclosure.outcome import CellVerdicts, TableOutcome, table_outcome
from enclave.disclosure.policy import DisclosurePolicy
from enclave.disclosure.rules import MISSING, NEGATIVES, RULES, TOP1, TOP2, TOPN, TOTAL, N
from enclave.disclosure.verdict import Verdict
from enclave.errors import InvalidInput
from enclave.safe.query import data_root, parse_query

DATASETS_ENV = "ENCLAVE_DATASETS"
SAVE_SUFFIXES = {".csv": ",", ".tsv": "\t"}


@dataclass
class SafeResult:
    """A checked output.

    ``status`` is the worst verdict of the rules on the output *as computed* (the raw
    table); ``saved_status`` is the verdict of what ``save`` writes, after suppression, and
    ``summary`` says both in words ("3 cells below 10 and 7 zeros suppressed: the saved
    table is safe"). ``findings`` say which rule objected to which cells; ``table`` is what
    may be shown, with every failing cell (and, with margins, enough others) suppressed.
    ``save`` writes the table and its evidence sidecar.
    """

    table: pd.DataFrame
    status: Verdict
    findings: list[Finding]
    suppressed: list[tuple]
    secondary: list[tuple]
    cell_stats: pl.DataFrame
    cells: list[tuple]
    margin_flags: list[bool]
    cell_ranks: pl.DataFrame
    hidden: list[bool]
    policy: DisclosurePolicy
    rules: list[str]
    analysis: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)
    # The reproducible query the table was computed from (None: a frame of unknown origin).
    query: dict[str, Any] | None = None

    @property
    def outcome(self) -> TableOutcome:
        """Both verdicts (raw and saved) with the counts behind them."""
        cells = [CellVerdicts(verdicts={r: Verdict.from_rank(ranks[i]) for r, ranks in self._rule_ranks().items()},
                              status=Verdict.from_rank(self.cell_ranks["status"][i]), suppressed=self.hidden[i])
                 for i in range(len(self.cells))]
        other = [(f.rule, f.status) for f in self.findings if f.rule not in self.rules or f.rule not in RULES]
        return table_outcome(cells, self.policy.threshold, other)

    @property
    def saved_status(self) -> Verdict:
        """The verdict of the table as saved (after suppression)."""
        return self.outcome.saved

    @property
    def summary(self) -> str:
        """Both verdicts in one sentence, e.g. "3 cells below 10 suppressed: the saved table is safe." """
        return self.outcome.sentence()

    def _rule_ranks(self) -> dict[str, list[int]]:
        return {r: self.cell_ranks[r].to_list() for r in self.rules if r in self.cell_ranks.columns}

    def _finding_lines(self) -> list[tuple[str, str, str]]:
        """(rule, what it means for the saved table, message) per finding."""
        # A finding about cells the saved table hides is history, not a verdict on what leaves.
        hidden = {cell for cell, h in zip(self.cells, self.hidden) if h}
        lines = []
        for f in self.findings:
            if f.status is Verdict.FAIL and f.cells and all(c in hidden for c in f.cells):
                state = "in the raw table; suppressed"
            elif f.status is Verdict.FAIL:
                state = "shown: not safe"
            else:
                state = "needs a reviewer" if f.status is Verdict.REVIEW else "passes"
            lines.append((f.rule.replace("_", " "), state, f.message))
        return lines

    def __str__(self) -> str:
        return self.summary

    def __repr__(self) -> str:
        outcome = self.outcome
        lines = [outcome.sentence(), f"  {outcome.verdicts()}"]
        lines += [f"  - {rule} ({state}): {message}" for rule, state, message in self._finding_lines()]
        if self.suppressed:
            lines.append(f"  {len(self.suppressed)} cell(s) suppressed ({len(self.secondary)} to protect others)")
        return "\n".join(lines) + "\n" + self.table.to_string(na_rep="suppressed")

    def _repr_html_(self) -> str:
        outcome = self.outcome
        items = "".join(f"<li><b>{_escape(rule)}</b> ({_escape(state)}): {_escape(message)}</li>"
                        for rule, state, message in self._finding_lines())
        return (f"<p><b>{_escape(outcome.sentence())}</b><br><small>{_escape(outcome.verdicts())}</small></p>"
                f"<ul>{items}</ul>" + self.table.to_html(na_rep="suppressed"))

    def save(self, path: str | os.PathLike[str], *, datasets: Mapping[str, str] | None = None) -> Path:
        """Write the table (``.csv`` or ``.tsv``) and ``<path>.evidence.json`` beside it.

        ``datasets`` names the dataset versions read (name -> version); by default those the
        workspace announces in ``$ENCLAVE_DATASETS``. Returns the path of the table.
        """
        path = Path(path)
        sep = SAVE_SUFFIXES.get(path.suffix.lower())
        if sep is None:
            raise InvalidInput(f"{path.name}: save tables as .csv or .tsv (the output checker reads those)")
        if not path.parent.is_dir():
            raise InvalidInput(f"{path.parent} is not a directory; create it first (e.g. project/outbox)")
        temp = path.with_name(f".{path.name}.partial")
        temp.write_bytes(self.render(sep))
        os.replace(temp, path)
        evidence = self.evidence(path.name, sha256_file(path), path.stat().st_size, _datasets(datasets, self.query))
        write_evidence(sidecar_path(path), evidence)
        return path

    def render(self, sep: str = ",") -> bytes:
        """The bytes ``save`` writes for the table (the enclave's replay renders the same)."""
        table = self.table.copy()
        if isinstance(table.columns, pd.MultiIndex):
            table.columns = [" | ".join(str(p) for p in col if str(p)) for col in table.columns]
        return table.to_csv(sep=sep, na_rep="", lineterminator="\n").encode("utf-8")

    def evidence_cells(self) -> list[EvidenceCell]:
        """Every cell as computed, before suppression, with its figures and verdicts."""
        stats = self.cell_stats
        nk_share, p_ratio = dominance_figures(stats, self.policy)
        columns = {c: stats[c].to_list() if c in stats.columns else [None] * stats.height
                   for c in (N, TOTAL, TOP1, TOP2, TOPN, NEGATIVES, MISSING)}
        rule_ranks = self._rule_ranks()
        cells = []
        for i, (row, column) in enumerate(self.cells):
            cells.append(
                EvidenceCell(
                    row=_as_list(row), column=_as_list(column), margin=self.margin_flags[i],
                    n=columns[N][i], total=_num(columns[TOTAL][i]), top1=_num(columns[TOP1][i]),
                    top2=_num(columns[TOP2][i]), topn=_num(columns[TOPN][i]),
                    negatives=columns[NEGATIVES][i] or 0, missing=columns[MISSING][i] or 0,
                    nk_share=nk_share[i], p_ratio=p_ratio[i],
                    verdicts={r: Verdict.from_rank(ranks[i]) for r, ranks in rule_ranks.items()},
                    status=Verdict.from_rank(self.cell_ranks["status"][i]),
                    suppressed=self.hidden[i],
                )
            )
        return cells

    def evidence(self, name: str, sha256: str, size: int, datasets: list[DatasetRef]) -> Evidence:
        """The evidence of this result saved as ``name`` (bytes with ``sha256`` and ``size``)."""
        return Evidence(
            output=OutputRef(file=name, sha256=sha256, bytes=size),
            analysis=self.analysis | self.extra,
            policy_version=self.policy.version,
            policy=self.policy.model_dump(mode="json"),
            rules=self.rules,
            datasets=datasets,
            status=self.status,
            findings=[f.to_dict() for f in self.findings],
            cells=self.evidence_cells(),
            created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            library=f"enclave.safe {enclave.__version__}",
            query=self.query,
        )


def dominance_figures(stats: pl.DataFrame, policy: DisclosurePolicy) -> tuple[list[float | None], list[float | None]]:
    """Per cell: the share of the n largest contributions and the p ratio (None if undefined)."""
    if TOTAL not in stats.columns or TOP1 not in stats.columns:
        return [None] * stats.height, [None] * stats.height
    get = lambda c: stats[c].to_list() if c in stats.columns else [None] * stats.height  # noqa: E731
    nk_share, p_ratio = [], []
    for total, top1, top2, topn in zip(get(TOTAL), get(TOP1), get(TOP2), get(TOPN)):
        if total is None or top1 is None or math.isnan(total) or total <= 0:
            nk_share.append(None)
            p_ratio.append(None)
            continue
        topn = topn if topn is not None else min(policy.nk_dominance.n * top1, total)
        top2 = top2 if top2 is not None else min(top1, max(total - top1, 0.0))
        nk_share.append(topn / total)
        p_ratio.append((total - top1 - top2) / top1 if top1 > 0 else None)
    return nk_share, p_ratio


def _datasets(given: Mapping[str, str] | None, query: dict[str, Any] | None = None) -> list[DatasetRef]:
    """The datasets announced (name -> version) and those the query reads, each with the
    checksum of its view as mounted now (from the view's manifest)."""
    if given is None:
        raw = os.environ.get(DATASETS_ENV, "").strip()
        given = {}
        if raw:
            try:
                given = json.loads(raw)
            except json.JSONDecodeError:
                raise InvalidInput(f"${DATASETS_ENV} is not JSON ({{\"name\": \"version\"}}); ask an administrator to fix the workspace") from None
            if not isinstance(given, dict):
                raise InvalidInput(f"${DATASETS_ENV} must map dataset names to versions; ask an administrator to fix the workspace")
    names = {str(k): str(v) for k, v in given.items()}
    read = parse_query(query).datasets() if query is not None else set()
    return [DatasetRef(name=n, version=names.get(n), view_sha256=_view_sha256(n)) for n in sorted(set(names) | read)]


def _view_sha256(dataset: str) -> str | None:
    """The checksum the catalogue wrote into the view's manifest (None if there is none)."""
    try:
        manifest = json.loads((data_root() / dataset / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    digest = manifest.get("sha256") if isinstance(manifest, dict) else None
    return digest if isinstance(digest, str) else None


def _as_list(label: Any) -> list[Any]:
    parts = label if isinstance(label, tuple) else (label,)
    return [p if isinstance(p, (int, float, str, bool)) or p is None else str(p) for p in parts]


def _num(value: Any) -> float | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
