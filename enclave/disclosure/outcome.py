"""Two verdicts in words: the table as computed, and the table as it is saved.

A table the safe-statistics library builds is judged twice. The *raw* table (every cell as
computed) may fail the rules; the library then suppresses the failing cells (and, with
margins, enough others that none can be worked out), and what it *saves* is judged again.
A bare "fail" for the raw table reads as if the output could not leave, although the saved
table passes; so both verdicts are always said together, in a sentence such as
"3 cells below 10 and 7 zeros suppressed: the saved table is safe."

The same words serve the researcher (``SafeResult``) and the reviewer (the evidence view of
a file), computed from the cells' verdicts (``EvidenceCell``) and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from enclave.disclosure.verdict import Verdict, worst

# How a count of cells failing each rule reads ("3 cells below 10"); {t} is the threshold.
_RULE_WORDS: dict[str, tuple[str, str]] = {
    "threshold": ("cell below {t}", "cells below {t}"),
    "zeros": ("zero", "zeros"),
    "nk_dominance": ("cell dominated by its largest contributors", "cells dominated by their largest contributors"),
    "p_percent": ("cell whose largest contribution others could estimate (p% rule)",
                  "cells whose largest contribution others could estimate (p% rule)"),
    "dof": ("model with too few residual degrees of freedom", "models with too few residual degrees of freedom"),
    "rounding": ("count not rounded as the policy requires", "counts not rounded as the policy requires"),
}
SAVED_WORDS = {
    Verdict.PASS: "the saved table is safe",
    Verdict.REVIEW: "the saved table needs a reviewer's judgement",
    Verdict.FAIL: "the saved table is not safe",
}


@dataclass(frozen=True)
class CellVerdicts:
    """What the outcome needs of one cell: each rule's verdict and whether it is hidden."""

    verdicts: Mapping[str, Verdict]
    status: Verdict
    suppressed: bool


@dataclass(frozen=True)
class TableOutcome:
    """The raw table's verdict, the saved table's verdict, and the counts behind them."""

    raw: Verdict
    saved: Verdict
    cells: int
    failing: dict[str, int] = field(default_factory=dict)  # rule -> raw cells failing it
    failed_cells: int = 0     # raw cells failing any rule
    exposed: int = 0          # failing cells shown all the same
    protective: int = 0       # passing cells hidden so that no failing one can be worked out
    review_cells: int = 0     # cells a person must judge (e.g. dominance undefined)
    other: list[str] = field(default_factory=list)  # findings not about cells, as "rule: verdict"
    threshold: int = 10

    def failing_words(self) -> str:
        """ "3 cells below 10 and 7 zeros" (every rule that failed, in rule order)."""
        parts = []
        for rule, count in self.failing.items():
            one, many = _RULE_WORDS.get(rule, (f"cell failing {rule}", f"cells failing {rule}"))
            parts.append(f"{count} {(one if count == 1 else many).format(t=self.threshold)}")
        return _join(parts)

    def sentence(self) -> str:
        """Both verdicts in one sentence, e.g. "3 cells below 10 and 7 zeros suppressed:
        the saved table is safe." """
        saved = SAVED_WORDS[self.saved]
        if self.failed_cells == 0:
            head = f"No cell fails the rules ({_cells(self.cells)} checked)"
        elif self.exposed == 0:
            head = f"{self.failing_words()} suppressed"
        else:
            head = (f"{self.failing_words()} fail the rules and {_cells(self.exposed)} of them "
                    f"{'is' if self.exposed == 1 else 'are'} shown")
        notes = []
        if self.protective:
            notes.append(f"{self.protective} more cell{'s' if self.protective != 1 else ''} hidden to protect them")
        if self.review_cells:
            notes.append(f"{_cells(self.review_cells)} for a reviewer to judge")
        if self.other:
            notes.append("also " + "; ".join(self.other))
        return f"{head}{' (' + ', '.join(notes) + ')' if notes else ''}: {saved}."

    def verdicts(self) -> str:
        """ "raw table: fail · saved table: pass" """
        return f"raw table (as computed): {self.raw} · saved table (after suppression): {self.saved}"


def table_outcome(cells: Sequence[CellVerdicts], threshold: int,
                  other: Iterable[tuple[str, Verdict]] = ()) -> TableOutcome:
    """Judge the raw and the saved table from each cell's verdicts.

    ``other`` are findings not about cells (an unknown rule, bin edges taken from the data):
    they count against the saved table as they stand. A failing cell that is shown makes the
    saved table fail; a shown cell needing review, review; nothing at all means review
    (fail closed: an empty table is nothing to judge by rule).
    """
    other = [(rule, Verdict(status)) for rule, status in other]
    failing: dict[str, int] = {}
    failed = exposed = protective = review = 0
    for cell in cells:
        fails = [rule for rule, verdict in cell.verdicts.items() if verdict is Verdict.FAIL]
        for rule in fails:
            failing[rule] = failing.get(rule, 0) + 1
        if cell.status is Verdict.FAIL:
            failed += 1
            exposed += not cell.suppressed
        elif cell.suppressed:
            protective += 1
        elif cell.status is Verdict.REVIEW:
            review += 1
    raw = worst([c.status for c in cells] + [v for _, v in other])
    shown = [Verdict.FAIL] * bool(exposed) + [Verdict.REVIEW] * bool(review) + [v for _, v in other]
    saved = worst(shown) if cells else Verdict.REVIEW
    order = list(_RULE_WORDS)
    failing = dict(sorted(failing.items(), key=lambda kv: (order.index(kv[0]) if kv[0] in order else len(order), kv[0])))
    return TableOutcome(raw=raw, saved=saved, cells=len(cells), failing=failing, failed_cells=failed,
                        exposed=exposed, protective=protective, review_cells=review,
                        other=[f"{rule.replace('_', ' ')}: {verdict}" for rule, verdict in other if verdict is not Verdict.PASS],
                        threshold=threshold)


def _cells(count: int) -> str:
    return f"{count} cell{'s' if count != 1 else ''}"


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
