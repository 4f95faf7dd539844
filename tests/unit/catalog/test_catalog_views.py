import os
from pathlib import Path

import polars as pl
import pytest

from enclave.catalog.ingest import build_version
from enclave.catalog.pseudonym import PseudonymKeyError, project_key, pseudonym
from enclave.catalog.readers import SourceFormat
from enclave.catalog.storage import ChecksumMismatch, publish
from enclave.catalog.views import materialise_view, resolve_view, view_spec_from_grant
from enclave.errors import InvalidInput


@pytest.fixture
def version(dictionary, csv_source, tmp_path) -> tuple[Path, str]:
    stage = tmp_path / "catalog" / ".stage"
    stage.mkdir(parents=True)
    built = build_version(csv_source, dictionary, stage, fmt=SourceFormat.CSV)
    publish(stage, tmp_path / "catalog" / "v1")
    return tmp_path / "catalog" / "v1", built.sha256


def _view(tmp_path, version, dictionary, project, columns=None, where=(), optouts=()):
    spec = resolve_view(dictionary, columns, list(where))
    key = project_key(tmp_path / "keys", project)
    return materialise_view(version[0], version[1], dictionary, spec, key, list(optouts), tmp_path / "views" / project / "1" / "ds")


def test_view_holds_exactly_the_approved_columns_and_rows(tmp_path, version, dictionary):
    result = _view(
        tmp_path, version, dictionary, "proj-a",
        columns=["patients.patient_id", "patients.age", "patients.sex", "admissions.patient_id", "admissions.ward"],
        where=["patients: age >= 30 AND sex = 'F'", "admissions: ward IN ('A', 'C')"],
    )
    patients = pl.read_parquet(result.path / "patients.parquet")
    assert patients.columns == ["patient_id", "age", "sex"]
    assert sorted(patients["age"].to_list()) == [34, 52]
    admissions = pl.read_parquet(result.path / "admissions.parquet")
    assert admissions.columns == ["patient_id", "ward"]
    assert sorted(admissions["ward"].to_list()) == ["A", "A", "A", "C"]
    assert result.rows == {"patients": 2, "admissions": 4}
    assert sorted(p.name for p in result.path.iterdir()) == ["admissions.parquet", "manifest.json", "patients.parquet"]


def test_view_default_columns_drop_direct_identifiers_and_pseudonymise_keys(tmp_path, version, dictionary):
    result = _view(tmp_path, version, dictionary, "proj-a")
    patients = pl.read_parquet(result.path / "patients.parquet")
    assert "name" not in patients.columns
    assert not set(patients["patient_id"]) & {"p1", "p2", "p3", "p4"}
    admissions = pl.read_parquet(result.path / "admissions.parquet")
    assert not set(admissions["admission_id"]) & {"10", "11", "12", "13", "14"}
    # Inside one project the tables still join on the pseudonym.
    joined = admissions.join(patients, on="patient_id")
    assert joined.height == 5
    assert sorted(joined.filter(pl.col("age") == 34)["ward"].to_list()) == ["A", "B"]


def test_view_files_are_read_only(tmp_path, version, dictionary):
    result = _view(tmp_path, version, dictionary, "proj-a")
    assert os.stat(result.path).st_mode & 0o222 == 0
    assert all(p.stat().st_mode & 0o222 == 0 for p in result.path.iterdir())


def test_views_of_two_projects_share_no_identifier_values(tmp_path, version, dictionary):
    a = _view(tmp_path, version, dictionary, "proj-a")
    b = _view(tmp_path, version, dictionary, "proj-b")
    for table, keys in [("patients", ["patient_id"]), ("admissions", ["admission_id", "patient_id"])]:
        fa = pl.read_parquet(a.path / f"{table}.parquet")
        fb = pl.read_parquet(b.path / f"{table}.parquet")
        for key in keys:
            assert not set(fa[key]) & set(fb[key])
            assert fa.join(fb, on=key).height == 0
    # Same rows, same non-identifying values: only the pseudonyms differ.
    assert pl.read_parquet(a.path / "patients.parquet")["age"].to_list() == pl.read_parquet(b.path / "patients.parquet")["age"].to_list()


def test_view_excludes_optouts_and_counts_them(tmp_path, version, dictionary):
    result = _view(tmp_path, version, dictionary, "proj-a", optouts=["p1"])
    key = project_key(tmp_path / "keys", "proj-a")
    p1 = pseudonym(key, "patient", "p1")
    assert p1 not in pl.read_parquet(result.path / "patients.parquet")["patient_id"].to_list()
    assert p1 not in pl.read_parquet(result.path / "admissions.parquet")["patient_id"].to_list()
    assert result.excluded_rows == 3
    assert result.rows == {"patients": 3, "admissions": 3}


def test_view_refuses_direct_identifiers_and_bad_filters(dictionary):
    with pytest.raises(InvalidInput, match="direct identifier"):
        resolve_view(dictionary, ["patients.name"], [])
    with pytest.raises(InvalidInput, match="no column 'nhs'"):
        resolve_view(dictionary, ["patients.nhs"], [])
    with pytest.raises(InvalidInput, match="unknown column"):
        resolve_view(dictionary, ["patients.age"], ["patients: height > 3"])
    with pytest.raises(InvalidInput, match="types"):
        resolve_view(dictionary, ["patients.age"], ["patients: age > 'old'"])
    with pytest.raises(InvalidInput, match="not a SQL expression"):
        resolve_view(dictionary, ["patients.age"], ["patients: age >"])
    with pytest.raises(InvalidInput, match="names no table"):
        resolve_view(dictionary, ["age"], [])
    with pytest.raises(InvalidInput, match="direct identifier"):
        resolve_view(dictionary, ["patients.age"], ["patients: name = 'Ann Smith'"])


def test_view_spec_round_trips_through_grant_fields(dictionary):
    spec = resolve_view(dictionary, ["patients.age", "admissions.*"], ["admissions: ward = 'A'"])
    assert view_spec_from_grant(spec.column_list, spec.filter_text) == spec
    assert spec.columns["admissions"] == ["admission_id", "patient_id", "admitted_at", "ward"]


def test_view_refuses_a_changed_version(tmp_path, version, dictionary):
    path, _ = version
    with pytest.raises(ChecksumMismatch):
        materialise_view(path, "f" * 64, dictionary, resolve_view(dictionary, None, []), b"k" * 32, [], tmp_path / "views" / "x")
    assert not (tmp_path / "views" / "x").exists()


def test_pseudonym_key_is_private_stable_and_per_project(tmp_path):
    keys = tmp_path / "keys"
    k1 = project_key(keys, "proj-a")
    assert project_key(keys, "proj-a") == k1
    assert project_key(keys, "proj-b") != k1
    path = keys / "pseudonym" / "proj-a.key"
    assert path.stat().st_mode & 0o777 == 0o600
    assert keys.stat().st_mode & 0o777 == 0o700
    path.chmod(0o644)
    with pytest.raises(PseudonymKeyError, match="chmod 600"):
        project_key(keys, "proj-a")
    with pytest.raises(InvalidInput):
        project_key(keys, "../etc")


def test_pseudonymise_matches_the_keyed_hash_of_each_value():
    from enclave.catalog.pseudonym import pseudonymise

    key = bytes(range(32))
    frame = pl.LazyFrame({"id": [5, 7, None, 5], "x": [1, 2, 3, 4]})
    out = pseudonymise(frame, "id", key, "patient").collect()
    assert out.columns == ["id", "x"] and out["x"].to_list() == [1, 2, 3, 4]
    assert out["id"].to_list() == [pseudonym(key, "patient", "5"), pseudonym(key, "patient", "7"), None, pseudonym(key, "patient", "5")]
    assert pseudonym(key, "patient", "5") != pseudonym(key, "admission", "5")
    assert pseudonym(key, "patient", "5") != pseudonym(bytes(32), "patient", "5")
