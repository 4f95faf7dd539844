"""The comparison of populations (enclave.disclosure.differencing), on hand-made tables."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from enclave.disclosure.differencing.compare import compare
from enclave.disclosure.differencing.store import DifferencingStore, EntryInfo
from enclave.disclosure.differencing.table import BUCKETS, buckets, build_table


@dataclass
class Cell:
    row: list
    column: list
    margin: bool = False
    suppressed: bool = False
    n: int | None = None
    verdicts: dict = field(default_factory=dict)


def grid(cells: dict[tuple[str, str], range], hidden: set[tuple[str, str]] = frozenset(), margins: bool = False):
    out, members = [], []
    for (r, c), people in cells.items():
        out.append(Cell([r], [c], suppressed=(r, c) in hidden, n=len(people)))
        members.append(np.array(sorted(people), dtype=np.uint32))
    if margins:
        for r in sorted({r for r, _ in cells}):
            out.append(Cell([r], ["All"], margin=True))
            members.append(None)
        out.append(Cell(["All"], ["All"], margin=True))
        members.append(None)
    return out, members


def record(store: DifferencingStore, name: str, cells, members, perturbed: bool = False) -> EntryInfo:
    info = EntryInfo(name, "demo", "p", 1, f"{name}.csv", "0" * 64, 1, perturbed)
    store.record(info, build_table(cells, members, perturbed))
    return info


@settings(max_examples=300, deadline=None)
@given(a=st.sets(st.integers(0, 5000), max_size=300), b=st.sets(st.integers(0, 5000), max_size=300))
def test_differencing_sketch_distance_never_exceeds_symmetric_difference(a, b):
    def sketch(s):
        return np.bincount(buckets(np.array(sorted(s), dtype=np.uint32)).astype(np.int64), minlength=BUCKETS)
    assert np.abs(sketch(a) - sketch(b)).sum() <= len(a ^ b)


def test_differencing_nested_cell_flagged_and_sizes_reported(tmp_path):
    store = DifferencingStore(tmp_path)
    earlier = record(store, "t1", *grid({("a", "F"): range(0, 100), ("a", "M"): range(100, 200)}))
    new = build_table(*grid({("a", "F"): [*range(0, 100), 900, 901, 902, 903], ("a", "M"): range(100, 200)}))
    pairs, stats = compare(new, [earlier], store, 10)
    assert [(p.cell, p.earlier_cell, p.only_new, p.only_earlier) for p in pairs] == [
        ("a / F", "a / F", 4, 0), ("a / All", "a / All", 4, 0)]  # the row total anyone can add up, too
    assert stats.sketch_candidates >= 2


def test_differencing_suppressed_cells_take_part_in_no_pair(tmp_path):
    store = DifferencingStore(tmp_path)
    earlier = record(store, "t1", *grid({("a", "F"): range(0, 100), ("a", "M"): range(100, 200)}, hidden={("a", "F")}))
    new = build_table(*grid({("a", "F"): [*range(0, 100), 900, 901, 902, 903], ("a", "M"): range(100, 200)}))
    pairs, _ = compare(new, [earlier], store, 10)
    # Neither the hidden cell nor the row total it makes unknown can be subtracted from.
    assert pairs == []


def test_differencing_shown_margin_counts_even_when_a_cell_is_hidden(tmp_path):
    store = DifferencingStore(tmp_path)
    cells, members = grid({("a", "F"): range(0, 100), ("a", "U"): range(100, 103)}, hidden={("a", "U")}, margins=True)
    earlier = record(store, "t1", cells, members)
    new = build_table(*grid({("a", "F"): range(0, 100), ("b", "F"): range(500, 600)}))
    pairs, _ = compare(new, [earlier], store, 10)
    assert [(p.cell, p.earlier_cell, p.only_earlier) for p in pairs] == [("a / F", "a / All", 3)]


def test_differencing_both_perturbed_not_flagged_one_perturbed_flagged(tmp_path):
    store = DifferencingStore(tmp_path)
    table = {("a", "F"): range(0, 100), ("a", "M"): range(100, 200)}
    nested = {("a", "F"): [*range(0, 100), 900, 901, 902], ("a", "M"): range(100, 200)}
    noisy = record(store, "t1", *grid(table), perturbed=True)
    assert compare(build_table(*grid(nested), perturbed=True), [noisy], store, 10)[0] == []
    assert compare(build_table(*grid(nested)), [noisy], store, 10)[0] != []


def test_differencing_equal_and_disjoint_cells_not_flagged(tmp_path):
    store = DifferencingStore(tmp_path)
    table = {("a", "F"): range(0, 100), ("a", "M"): range(100, 200)}
    same = record(store, "t1", *grid(table))
    other = record(store, "t2", *grid({("a", "F"): range(1000, 1100), ("a", "M"): range(2000, 2100)}))
    assert compare(build_table(*grid(table)), [same, other], store, 10)[0] == []
