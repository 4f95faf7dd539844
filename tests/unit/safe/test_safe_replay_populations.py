"""The replay names each cell's patients (container side, ``enclave.safe.replay``): the
pseudonyms of the base table's patient key carried through every step, whatever the query
selects or joins, each patient once per cell, margins left to the host."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from enclave.disclosure.policy import DisclosurePolicy
from enclave.safe import crosstab, query
from enclave.safe.query import CARRIED
from enclave.safe.replay import ReplayInput, recompute


@pytest.fixture
def view(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "data"
    (root / "demo").mkdir(parents=True)
    patients = pl.DataFrame({"patient_id": [f"p{i:03d}" for i in range(60)],
                             "sex": ["F", "M", None] * 20, "band": [i % 4 for i in range(60)]})
    admissions = pl.DataFrame({"admission_id": list(range(90)), "patient_id": [f"p{i % 30:03d}" for i in range(90)],
                               "method": ["elective", "emergency", "transfer"] * 30})
    patients.write_parquet(root / "demo" / "patients.parquet")
    admissions.write_parquet(root / "demo" / "admissions.parquet")
    monkeypatch.setenv("ENCLAVE_DATA_ROOT", str(root))
    return root


def replay(view: Path, result, tmp_path: Path):  # type: ignore[no-untyped-def]
    path = result.save(tmp_path / "t.csv")
    evidence = json.loads(Path(f"{path}.evidence.json").read_text())
    columns = {"demo/patients": "patient_id", "demo/admissions": "patient_id"}
    return recompute(ReplayInput(evidence=evidence, policy=DisclosurePolicy().model_dump(mode="json"),
                                 patient_columns=columns), view)


def test_replay_populations_follow_the_base_table_through_select_and_join(view: Path, tmp_path: Path):
    cohort = query("demo", "patients").filter(pl.col("band") < 3).select("patient_id", "sex", "band")
    stays = query("demo", "admissions").select("method", "patient_id").join(cohort, on="patient_id")
    out = replay(view, crosstab(stays.select("method", "sex"), index="method", columns="sex", margins=True), tmp_path)
    assert out.ok, out.error
    frame = pl.read_parquet(view / "demo" / "admissions.parquet").join(
        pl.read_parquet(view / "demo" / "patients.parquet").filter(pl.col("band") < 3), on="patient_id")
    for cell, people in zip(out.cells, out.populations):
        if cell.margin:
            assert people is None
            continue
        expected = frame.filter((pl.col("method") == cell.row[0]) & (pl.col("sex") == cell.column[0]))
        assert people == sorted(set(expected["patient_id"]))  # distinct patients, not admissions
        assert len(people) <= cell.n


def test_replay_without_patient_columns_names_nobody(view: Path, tmp_path: Path):
    result = crosstab(query("demo", "patients"), index="band", columns="sex")
    path = result.save(tmp_path / "t.csv")
    evidence = json.loads(Path(f"{path}.evidence.json").read_text())
    out = recompute(ReplayInput(evidence=evidence, policy=DisclosurePolicy().model_dump(mode="json")), view)
    assert out.ok and out.populations is None


def test_replay_query_naming_the_carried_column_is_refused(view: Path, tmp_path: Path):
    forged = query("demo", "patients").with_columns(**{CARRIED: pl.lit("p000")})
    out = replay(view, crosstab(forged, index="band", columns="sex"), tmp_path)
    assert not out.ok and CARRIED in out.error
