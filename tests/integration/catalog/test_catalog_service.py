"""The catalogue through its service layer, in a migrated enclave in tmp_path."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import polars as pl
import pytest
from sqlalchemy import select

from enclave.audit import verify_chain
from enclave.catalog import service
from enclave.catalog.report import IngestRefused
from enclave.catalog.storage import ChecksumMismatch
from enclave.clock import today
from enclave.db.models import AuditEvent, DatasetVersion, Grant
from enclave.enums import Role
from enclave.errors import Conflict, InvalidInput, PermissionDenied
from enclave.projects import service as projects
from enclave.projects.lifecycle import ProjectAction

FUTURE = today() + dt.timedelta(days=90)


def _ingest(people, settings, demo_data, name="hospital", kind="csv"):  # type: ignore[no-untyped-def]
    return service.ingest_dataset(people.session, people.get("curator"), settings, demo_data / kind, name)


def _events(session, action):  # type: ignore[no-untyped-def]
    return session.scalars(select(AuditEvent).where(AuditEvent.action == action)).all()


def test_service_ingests_csv_and_fhir_as_versions(people, settings, demo_data):
    csv = _ingest(people, settings, demo_data)
    fhir = _ingest(people, settings, demo_data, "hospital_fhir", "fhir")
    again = _ingest(people, settings, demo_data)
    assert (csv.version, fhir.version, again.version) == (1, 1, 2)
    assert csv.row_count == fhir.row_count > 200
    assert set(fhir.stats_json["tables"]) == {"patient", "encounter", "condition", "observation", "medication_request"}
    for v in (csv, fhir, again):
        path = Path(v.storage_path)
        assert path.parent == settings.catalog_dir / v.dataset.name
        assert path.stat().st_mode & 0o222 == 0
    assert csv.sha256 == again.sha256  # same input, same content
    assert [e.target for e in _events(people.session, "dataset.ingest")] == ["hospital v1", "hospital_fhir v1", "hospital v2"]
    assert verify_chain(people.session).ok
    assert [v.version for v in service.list_versions(people.session, people.get("alice"), "hospital")] == [1, 2]


def _wrong_type(lines: list[bytes]) -> None:
    fields = lines[5].split(b",")
    fields[4] = b"high"  # lab_results.value is a float
    lines[5] = b",".join(fields)


def _missing_column(lines: list[bytes]) -> None:
    for i, line in enumerate(lines):
        lines[i] = line.rsplit(b",", 1)[0] + b"\n"  # drop abnormal_flag


def _bad_encoding(lines: list[bytes]) -> None:
    lines[7] = lines[7].replace(b"mmol", b"\xffmol", 1).replace(b"g/L", b"\xff/L", 1)


def _duplicate_id(lines: list[bytes]) -> None:
    lines[3] = lines[2]


def _truncated(lines: list[bytes]) -> None:
    lines[-1] = lines[-1][: len(lines[-1]) // 2]


def _huge_line(lines: list[bytes]) -> None:
    fields = lines[4].split(b",")
    fields[3] = b"x" * 200_000  # test_name
    lines[4] = b",".join(fields)


@pytest.mark.parametrize("damage", [_wrong_type, _missing_column, _bad_encoding, _duplicate_id, _truncated, _huge_line])
def test_service_refused_ingest_leaves_no_version_rows_or_files(people, settings, demo_data, tmp_path, damage):
    bad = tmp_path / "bad"
    shutil.copytree(demo_data / "csv", bad)
    lines = (bad / "lab_results.csv").read_bytes().splitlines(keepends=True)
    damage(lines)
    (bad / "lab_results.csv").write_bytes(b"".join(lines))
    with pytest.raises(IngestRefused, match="lab_results"):
        service.ingest_dataset(people.session, people.get("curator"), settings, bad, "hospital")
    # The version row is only added once the files are complete (the unit of work then
    # rolls back the rest); the CLI test checks the committed state.
    assert people.session.scalars(select(DatasetVersion)).all() == []
    catalog = settings.catalog_dir
    assert not catalog.exists() or [p for p in catalog.rglob("*") if p.is_file()] == []


def test_service_ingest_needs_admin_and_a_dictionary(people, settings, demo_data, tmp_path):
    with pytest.raises(PermissionDenied):
        service.ingest_dataset(people.session, people.get("alice"), settings, demo_data / "csv", "hospital")
    lone = tmp_path / "lone.csv"
    shutil.copyfile(demo_data / "csv" / "patients.csv", lone)
    with pytest.raises(InvalidInput, match="--dictionary"):
        service.ingest_dataset(people.session, people.get("curator"), settings, lone, "lone")
    with pytest.raises(InvalidInput, match="dataset name"):
        service.ingest_dataset(people.session, people.get("curator"), settings, demo_data / "csv", "Bad Name")


def test_service_optouts_are_excluded_and_only_counted(people, settings, demo_data):
    curator = people.get("curator")
    assert service.add_optouts(people.session, curator, ["P0000003", " P0000004 "]) == 2
    assert service.add_optouts(people.session, curator, ["P0000003"]) == 0
    assert service.count_optouts(people.session, curator) == 2
    v = _ingest(people, settings, demo_data)
    stored = pl.read_parquet(Path(v.storage_path) / "patients.parquet")
    assert not {"P0000003", "P0000004"} & set(stored["patient_id"])
    assert v.stats_json["excluded"]["patients"] == 2
    assert v.stats_json["excluded"]["rows"] > 2
    # Never who: no audit event names an opted-out patient.
    for event in people.session.scalars(select(AuditEvent)):
        assert "P0000003" not in json.dumps(event.details)
    with pytest.raises(PermissionDenied):
        service.count_optouts(people.session, people.get("alice"))


def test_service_grant_materialises_exact_minimised_view(people, settings, demo_data):
    _ingest(people, settings, demo_data)
    grant = service.add_grant(
        people.session, people.get("curator"), settings, "cardio", "hospital", expires=FUTURE,
        columns=["patients.patient_id", "patients.sex", "diagnoses.patient_id", "diagnoses.icd10_code"],
        where=["patients: sex = 'F'", "diagnoses: icd10_code LIKE 'I%'"],
    )
    views = service.active_views(people.session, grant.project)
    assert views == [("hospital", settings.views_dir / "cardio" / str(grant.id) / "hospital")]
    path = views[0][1]
    assert sorted(p.name for p in path.iterdir()) == ["diagnoses.parquet", "manifest.json", "patients.parquet"]
    patients = pl.read_parquet(path / "patients.parquet")
    assert patients.columns == ["patient_id", "sex"] and set(patients["sex"]) == {"F"}
    diagnoses = pl.read_parquet(path / "diagnoses.parquet")
    assert diagnoses.columns == ["patient_id", "icd10_code"]
    assert diagnoses["icd10_code"].str.starts_with("I").all()
    source = pl.read_parquet(Path(grant.dataset_version.storage_path) / "patients.parquet")
    assert patients.height == source.filter(pl.col("sex") == "F").height
    assert not set(patients["patient_id"]) & set(source["patient_id"])
    event = _events(people.session, "grant.add")[0]
    assert event.project == "cardio" and event.details["columns"] == grant.columns_json
    projects.transition_project(people.session, people.admin, "cardio", ProjectAction.SUSPEND, reason="audit")
    assert service.active_views(people.session, grant.project) == []


def test_service_two_projects_views_cannot_be_joined(people, settings, demo_data):
    _ingest(people, settings, demo_data)
    curator = people.get("curator")
    a = service.add_grant(people.session, curator, settings, "cardio", "hospital", expires=FUTURE)
    b = service.add_grant(people.session, curator, settings, "diabetes", "hospital", expires=FUTURE)
    for table, keys in [("patients", ["patient_id"]), ("admissions", ["admission_id", "patient_id"]), ("lab_results", ["result_id", "patient_id"])]:
        fa = pl.read_parquet(Path(a.view_path) / f"{table}.parquet")
        fb = pl.read_parquet(Path(b.view_path) / f"{table}.parquet")
        assert fa.height == fb.height > 0
        for key in keys:
            assert not set(fa[key]) & set(fb[key])
            assert fa.join(fb, on=key).height == 0
    # No direct identifier made it into either view.
    cols = pl.read_parquet_schema(Path(a.view_path) / "patients.parquet")
    assert not {"nhs_number", "family_name", "given_name", "postcode"} & set(cols)


def test_service_grant_rules(people, settings, demo_data, factory):
    _ingest(people, settings, demo_data)
    curator = people.get("curator")
    factory.project("proposal", "carol")
    with pytest.raises(InvalidInput, match="proposed"):
        service.add_grant(people.session, curator, settings, "proposal", "hospital", expires=FUTURE)
    with pytest.raises(InvalidInput, match="not in the future"):
        service.add_grant(people.session, curator, settings, "cardio", "hospital", expires=today())
    with pytest.raises(InvalidInput, match="end date"):
        service.add_grant(people.session, curator, settings, "cardio", "hospital", expires=today() + dt.timedelta(days=4000))
    with pytest.raises(PermissionDenied):
        service.add_grant(people.session, people.get("alice"), settings, "cardio", "hospital", expires=FUTURE)
    factory.user("doc", Role.ADMIN, Role.RESEARCHER)
    projects.add_member(people.session, people.admin, "cardio", "doc")
    with pytest.raises(PermissionDenied, match="separation of duties"):
        service.add_grant(people.session, people.get("doc"), settings, "cardio", "hospital", expires=FUTURE)
    with pytest.raises(InvalidInput, match="direct identifier"):
        service.add_grant(people.session, curator, settings, "cardio", "hospital", expires=FUTURE, columns=["patients.nhs_number"])
    service.add_grant(people.session, curator, settings, "cardio", "hospital", expires=FUTURE)
    with pytest.raises(Conflict, match="revoke it first"):
        service.add_grant(people.session, curator, settings, "cardio", "hospital", expires=FUTURE)
    assert len(people.session.scalars(select(Grant)).all()) == 1


def test_service_revoke_removes_view_and_mount(people, settings, demo_data):
    _ingest(people, settings, demo_data)
    curator = people.get("curator")
    grant = service.add_grant(people.session, curator, settings, "cardio", "hospital", expires=FUTURE)
    path = Path(grant.view_path)
    assert path.is_dir()
    service.revoke_grant(people.session, curator, grant.id, "study ended")
    assert not path.exists()
    assert service.active_views(people.session, grant.project) == []
    with pytest.raises(Conflict):
        service.revoke_grant(people.session, curator, grant.id)
    # A new grant can follow a revoked one.
    again = service.add_grant(people.session, curator, settings, "cardio", "hospital", expires=FUTURE)
    assert service.active_views(people.session, again.project)[0][1] == Path(again.view_path)


def test_service_expired_grants_are_not_mounted_and_get_deleted(people, settings, demo_data, monkeypatch):
    _ingest(people, settings, demo_data)
    curator = people.get("curator")
    grant = service.add_grant(people.session, curator, settings, "cardio", "hospital", expires=FUTURE)
    later = dt.datetime.combine(FUTURE + dt.timedelta(days=2), dt.time(), tzinfo=dt.UTC)
    monkeypatch.setattr(service, "utcnow", lambda: later)
    assert service.active_views(people.session, grant.project) == []
    assert [g.id for g in service.expire_grants(people.session, curator)] == [grant.id]
    assert grant.view_path is None and not (settings.views_dir / "cardio" / str(grant.id)).exists()


def test_service_refresh_applies_new_optouts(people, settings, demo_data):
    _ingest(people, settings, demo_data)
    curator = people.get("curator")
    grant = service.add_grant(people.session, curator, settings, "cardio", "hospital", expires=FUTURE)
    before = pl.read_parquet(Path(grant.view_path) / "patients.parquet").height
    service.add_optouts(people.session, curator, ["P0000010"])
    service.rematerialise_view(people.session, curator, settings, grant.id)
    assert pl.read_parquet(Path(grant.view_path) / "patients.parquet").height == before - 1
    assert service.describe_grant(people.session, curator, grant.id).excluded_rows > 0


def test_service_grant_refuses_a_tampered_version(people, settings, demo_data):
    v = _ingest(people, settings, demo_data)
    target = Path(v.storage_path) / "patients.parquet"
    Path(v.storage_path).chmod(0o755)
    target.chmod(0o644)
    target.write_bytes(target.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ChecksumMismatch):
        service.verify_version(people.session, people.get("curator"), "hospital")
    with pytest.raises(ChecksumMismatch):
        service.add_grant(people.session, people.get("curator"), settings, "cardio", "hospital", expires=FUTURE)
    assert not (settings.views_dir / "cardio").exists() or not any((settings.views_dir / "cardio").rglob("*.parquet"))


def test_demo_load_ingests_both_formats_once(people, settings):
    from enclave.demo.load import load_demo_datasets

    curator = people.get("curator")
    first = load_demo_datasets(people.session, curator, settings, patients=100, seed=4)
    assert sorted(v.dataset.name for v in first) == ["demo_fhir", "demo_hospital"]
    assert first[0].row_count == first[1].row_count
    assert load_demo_datasets(people.session, curator, settings, patients=100, seed=4) == []
    with pytest.raises(PermissionDenied):
        load_demo_datasets(people.session, people.get("alice"), settings)


def test_researcher_server_mounts_exactly_the_granted_views(people, settings, demo_data):
    from enclave.hub.access import project_mounts

    curator = people.get("curator")
    _ingest(people, settings, demo_data)
    _ingest(people, settings, demo_data, "ehr", "fhir")
    kept = service.add_grant(people.session, curator, settings, "cardio", "ehr", expires=FUTURE,
                             columns=["patient.patient_id", "patient.gender"])
    gone = service.add_grant(people.session, curator, settings, "cardio", "hospital", expires=FUTURE)
    service.add_grant(people.session, curator, settings, "diabetes", "hospital", expires=FUTURE)
    service.revoke_grant(people.session, curator, gone.id)
    mounts = project_mounts(settings, people.session, kept.project)
    data = [(m.source, m.target, m.read_only) for m in mounts if m.target.startswith("/data")]
    assert data == [(Path(kept.view_path).resolve(), "/data/ehr", True)]
    assert not any(m.source.resolve().is_relative_to(settings.catalog_dir.resolve()) for m in mounts)


def test_service_optout_by_nhs_number_excludes_the_patient_everywhere(people, settings, demo_data):
    curator = people.get("curator")
    patients = pl.read_csv(demo_data / "csv" / "patients.csv", infer_schema=False)
    nhs = patients.filter(pl.col("patient_id") == "P0000005")["nhs_number"][0]
    service.add_optouts(people.session, curator, [nhs])
    for name, kind, table in [("hospital", "csv", "lab_results"), ("ehr", "fhir", "observation")]:
        v = _ingest(people, settings, demo_data, name, kind)
        for t in v.stats_json["tables"]:
            stored = pl.read_parquet(Path(v.storage_path) / f"{t}.parquet")
            assert "P0000005" not in stored["patient_id"].to_list(), (name, t)
        assert v.stats_json["excluded"]["patients"] == 1
        assert v.stats_json["excluded"]["rows"] > 1
    # Recorded after the ingest, an opt-out by NHS number still reaches new views.
    other = patients.filter(pl.col("patient_id") == "P0000006")["nhs_number"][0]
    service.add_optouts(people.session, curator, [other])
    grant = service.add_grant(people.session, curator, settings, "cardio", "hospital", expires=FUTURE)
    rows = service.describe_grant(people.session, curator, grant.id)
    source = pl.read_parquet(Path(grant.dataset_version.storage_path) / "patients.parquet")
    assert rows.rows["patients"] == source.height - 1
    assert rows.excluded_rows > 0
