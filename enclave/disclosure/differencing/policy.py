"""The differencing policy (``policies/differencing.yaml``): the check and the cell-key method."""

from __future__ import annotations

from pydantic import Field, model_validator

from enclave.disclosure.verdict import Verdict
from enclave.policy import StrictModel, TierName

CELL_KEYS = 256  # record keys and cell keys run 0..255, as in the ONS 2021 Census design


class PTable(StrictModel):
    """A perturbation table: per true count, how many of the 256 cell keys get each change.

    ``rows`` maps a count to ``{perturbation: number of cell keys}``; the highest count's
    row applies to every larger count. Checked on load: every row uses all 256 keys, is
    unbiased (its perturbations weighted by their keys sum to 0), moves no count by more
    than ``max_perturbation``, never gives a negative count, zero stays zero, and no count
    becomes one of 1 .. ``smallest_published`` - 1 (no zero-to-small, no small published).
    """

    name: str = Field(min_length=1)
    max_perturbation: int = Field(ge=1, le=50)
    smallest_published: int = Field(ge=1, le=50)
    rows: dict[int, dict[int, int]] = Field(min_length=2)

    @model_validator(mode="after")
    def _check(self) -> PTable:
        if self.rows.get(0) != {0: CELL_KEYS}:
            raise ValueError(f"the row of count 0 must be {{0: {CELL_KEYS}}}: zeros are never perturbed")
        top = max(self.rows)
        counts = sorted(set(self.rows) | set(range(top + 1, top + self.max_perturbation + self.smallest_published + 1)))
        for count in counts:
            row = self.row(count)
            if sum(row.values()) != CELL_KEYS or any(k < 0 for k in row.values()):
                raise ValueError(f"row {min(count, top)}: the numbers of cell keys must be >= 0 and add up to {CELL_KEYS}")
            if sum(d * k for d, k in row.items()) != 0:
                raise ValueError(f"row {min(count, top)}: biased (perturbations times keys must add up to 0)")
            for d, k in row.items():
                if k == 0:
                    continue
                if abs(d) > self.max_perturbation:
                    raise ValueError(f"row {min(count, top)}: perturbation {d} exceeds max_perturbation {self.max_perturbation}")
                if count + d < 0 or 0 < count + d < self.smallest_published:
                    raise ValueError(f"row {min(count, top)}: count {count} could become {count + d}, below "
                                     f"smallest_published {self.smallest_published} or negative")
        return self

    def row(self, count: int) -> dict[int, int]:
        return self.rows.get(count) or self.rows[max(c for c in self.rows if c <= count)]


class CellKeyChoice(StrictModel):
    """Where the cell-key method applies: a default, then per project tier, then per dataset."""

    default: bool = False
    per_tier: dict[TierName, bool] = Field(default_factory=dict)
    per_dataset: dict[str, bool] = Field(default_factory=dict)

    def applies(self, tier: str | None, datasets: list[str]) -> bool:
        chosen = self.per_tier.get(tier, self.default) if tier is not None else self.default
        for name in datasets:
            if name in self.per_dataset:
                chosen = chosen or self.per_dataset[name]
        return chosen


class DifferencingPolicy(StrictModel):
    """What the differencing check reports and whether tables are released with noise."""

    version: str = Field("2026.1", min_length=1)
    # Verdict of a file with a cell whose population differs from an earlier one's by a small group.
    status: Verdict = Verdict.FAIL
    # Smallest difference (people) that may be published; None: the disclosure threshold.
    threshold: int | None = Field(None, ge=2, le=1000)
    # Verdict of an output the enclave could not fingerprint (a plain file), when the project
    # has earlier releases a reviewer must compare it with.
    unfingerprinted: Verdict = Verdict.REVIEW
    # At most this many pairs are named in one finding.
    max_listed: int = Field(10, ge=1, le=1000)
    cell_key: CellKeyChoice = CellKeyChoice()
    ptable: PTable | None = None

    @model_validator(mode="after")
    def _ptable_when_used(self) -> DifferencingPolicy:
        used = self.cell_key.default or any(self.cell_key.per_tier.values()) or any(self.cell_key.per_dataset.values())
        if used and self.ptable is None:
            raise ValueError("cell_key is switched on somewhere but no ptable is given")
        return self
