"""Reproducible queries: what they may express, what they refuse, and that a table built
from one equals the table built from the frame it yields."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from enclave.demo.synthetic import generate
from enclave.disclosure.policy import DisclosurePolicy
from enclave.errors import InvalidInput
from enclave.safe import crosstab, query
from enclave.safe.query import parse_query
from enclave.safe.tables import tabulate

POLICY = DisclosurePolicy()


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("data")
    (base / "demo").mkdir()
    for name, frame in generate(200, 5).tables.items():
        frame.write_parquet(base / "demo" / f"{name}.parquet")
    return base


def cohort():
    age = ((pl.lit(dt.date(2024, 12, 31)) - pl.col("date_of_birth")).dt.total_days() // 365.25).cast(pl.Int64)
    return (query("demo", "patients").with_columns(age=age).filter(pl.col("age").is_between(40, 120))
            .with_columns(band=pl.format("{}-{}", (pl.col("age") // 20) * 20, (pl.col("age") // 20) * 20 + 19))
            .select("patient_id", "sex", "age", "band"))


def test_query_record_round_trips_as_plain_json(root: Path) -> None:
    q = query("demo", "admissions").join(cohort(), on="patient_id")
    record = json.loads(json.dumps(q.record()))
    again = parse_query(record)
    assert again == q and again.datasets() == {"demo"}
    assert again.collect(root).equals(q.collect(root))


def test_query_table_equals_the_table_of_its_frame(root: Path) -> None:
    q = cohort()
    from_query = crosstab(q, index="band", columns="sex", policy=POLICY, margins=True)
    from_frame = crosstab(q.collect(root), index="band", columns="sex", policy=POLICY, margins=True)
    assert from_frame.render() == from_query.render()
    assert from_query.query == q.record() and from_frame.query is None
    again = tabulate(from_query.analysis, q.collect(root), POLICY)
    assert again.render() == from_query.render() and again.evidence_cells() == from_query.evidence_cells()


@pytest.fixture(autouse=True)
def _data_root(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENCLAVE_DATA_ROOT", str(root))


def test_query_eager_frame_records_no_query(root: Path) -> None:
    frame = pl.read_parquet(root / "demo" / "patients.parquet")
    assert crosstab(frame, index="deprivation_decile", columns="sex", policy=POLICY).query is None


@pytest.mark.parametrize("expr", [
    pl.col("age").sum(), pl.col("age").mean(), pl.col("age").first(), pl.len(), pl.col("age").shift(1),
    pl.col("age").sum().over("sex"), pl.col("age").cum_sum(), pl.col("age").rank(), pl.col("age").sort(),
    pl.col("age").unique(), pl.col("sex").str.join(","), pl.lit(pl.Series([1, 2, 3])), pl.col("age").explode(),
    pl.col("age").reverse(), pl.col("age").head(3), pl.col("age").filter(pl.col("age") > 3), pl.all(),
    pl.col("age").gather([0, 1]), pl.col("age").implode(), pl.col("age").repeat_by(3),
])
def test_query_refuses_steps_that_are_not_row_by_row(expr: pl.Expr) -> None:
    with pytest.raises(InvalidInput):
        query("demo", "patients").with_columns(x=expr)
    with pytest.raises(InvalidInput):
        query("demo", "patients").filter(expr == 1)


def test_query_refuses_python_functions_and_frames() -> None:
    with pytest.raises(InvalidInput):
        query("demo", "patients").with_columns(x=pl.col("age").map_elements(lambda v: v, return_dtype=pl.Int64))
    with pytest.raises(InvalidInput):
        query("demo", "patients").join(pl.DataFrame({"patient_id": ["x"]}), on="patient_id")  # type: ignore[arg-type]


def test_query_allows_value_lists_only_where_they_are_values(root: Path) -> None:
    everyone = pl.read_parquet(root / "demo" / "patients.parquet")
    q = query("demo", "patients").filter(pl.col("sex").is_in(["F", "M"]))
    assert q.collect(root).height == everyone.filter(pl.col("sex").is_in(["F", "M"])).height > 0
    q = query("demo", "patients").with_columns(s=pl.col("sex").replace({"F": "female"}))
    assert "female" in q.collect(root)["s"].to_list()


def test_query_one_to_many_join_is_refused_when_run(root: Path) -> None:
    q = query("demo", "patients").join(query("demo", "admissions"), on="patient_id")
    with pytest.raises(InvalidInput, match="m:1"):
        q.collect(root)


@pytest.mark.parametrize("record", [
    {"dataset": "../x", "table": "patients"}, {"dataset": "demo", "table": "a/b"},
    {"dataset": "demo", "table": "patients", "steps": [{"op": "sql", "text": "SELECT 1"}]},
    {"dataset": "demo", "table": "patients", "extra": 1},
    {"dataset": "demo", "table": "patients", "steps": [{"op": "filter", "predicate": {"Agg": {"Sum": {"Column": "x"}}}}]},
    {"dataset": "demo", "table": "patients", "steps": [{"op": "with_columns", "columns": {"x": {"Column": 3}}}]},
])
def test_query_records_that_are_not_valid_are_refused(record: dict) -> None:
    with pytest.raises(InvalidInput):
        parse_query(record)


@settings(max_examples=60, deadline=None)
@given(st.recursive(st.one_of(st.none(), st.integers(), st.text(max_size=5), st.booleans()),
                    lambda inner: st.one_of(st.lists(inner, max_size=3),
                                            st.dictionaries(st.sampled_from(
                                                ["Column", "Literal", "Agg", "Function", "BinaryExpr", "Series",
                                                 "Scalar", "Dyn", "input", "function", "left", "right", "Over"]),
                                                inner, max_size=2)), max_leaves=12))
def test_query_arbitrary_expression_json_never_crashes_the_check(node) -> None:
    """Any JSON is either accepted as an allowed expression or refused with InvalidInput."""
    try:
        parse_query({"dataset": "demo", "table": "patients", "steps": [{"op": "filter", "predicate": node}]})
    except InvalidInput:
        pass
