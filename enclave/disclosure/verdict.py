"""Verdicts of disclosure checks, ordered pass < review < fail."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class Verdict(StrEnum):
    """How safe an output is: ``pass`` may leave, ``review`` needs a person, ``fail`` may not."""

    PASS = "pass"
    REVIEW = "review"
    FAIL = "fail"

    @property
    def rank(self) -> int:
        """0 for pass, 1 for review, 2 for fail (the code rule functions return per cell)."""
        return _RANK[self]

    @classmethod
    def from_rank(cls, rank: int) -> Verdict:
        return _BY_RANK[int(rank)]

    # str already orders alphabetically ("fail" < "pass"); severity order replaces it.
    def __lt__(self, other: object) -> bool:
        return self.rank < Verdict(other).rank if isinstance(other, str) else NotImplemented

    def __le__(self, other: object) -> bool:
        return self.rank <= Verdict(other).rank if isinstance(other, str) else NotImplemented

    def __gt__(self, other: object) -> bool:
        return self.rank > Verdict(other).rank if isinstance(other, str) else NotImplemented

    def __ge__(self, other: object) -> bool:
        return self.rank >= Verdict(other).rank if isinstance(other, str) else NotImplemented

    # StrEnum inherits str ordering and hashing; keep hashing consistent with equality.
    __hash__ = StrEnum.__hash__


_RANK = {Verdict.PASS: 0, Verdict.REVIEW: 1, Verdict.FAIL: 2}
_BY_RANK = {rank: verdict for verdict, rank in _RANK.items()}


def worst(verdicts: Iterable[Verdict | str]) -> Verdict:
    """The most severe verdict; ``pass`` for nothing at all."""
    result = Verdict.PASS
    for verdict in verdicts:
        verdict = Verdict(verdict)
        if verdict > result:
            result = verdict
    return result
