import datetime as dt
import json
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from enclave.catalog.fhir import builtin_dictionary
from enclave.catalog.ingest import IngestLimits, build_version
from enclave.catalog.readers import SourceFormat, detect_format
from enclave.catalog.report import IngestRefused
from enclave.catalog.storage import ChecksumMismatch, publish, verify_dir


def _tables(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob("*.parquet"))


def test_ingest_csv_round_trip_keeps_values_and_types(dictionary, csv_source, out_dir):
    built = build_version(csv_source, dictionary, out_dir, fmt=detect_format(csv_source))
    patients = pl.read_parquet(out_dir / "patients.parquet")
    assert patients.schema["age"] == pl.Int64
    assert patients.schema["registered"] == pl.Date
    assert patients.schema["smoker"] == pl.Boolean
    assert patients["name"].to_list() == ["Ann Smith", "Bob Jones", "Cat Brown", "Dan Green"]
    assert patients["weight"].null_count() == 1
    admissions = pl.read_parquet(out_dir / "admissions.parquet")
    assert admissions.schema["admitted_at"] == pl.Datetime("us")
    assert str(admissions["admitted_at"][3]) == "2022-05-05 23:59:59"
    assert built.row_count == 9
    assert built.stats["tables"]["patients"]["columns"]["age"] == {"nulls": 0, "min": 19, "max": 71, "mean": 44.0, "std": pytest.approx(22.4944, abs=1e-3)}
    assert built.stats["tables"]["patients"]["columns"]["sex"]["counts"] == {"F": 2, "M": 2}
    # Direct identifiers' values never appear in statistics.
    assert "Ann" not in json.dumps(built.stats)
    assert verify_dir(out_dir, built.sha256) == built.sha256


def test_ingest_parquet_round_trip(dictionary, csv_source, tmp_path, out_dir):
    src = tmp_path / "pq"
    src.mkdir()
    for name, spec in dictionary.tables.items():
        pl.read_csv(csv_source / f"{name}.csv", schema=spec.schema).write_parquet(src / f"{name}.parquet")
    assert detect_format(src) is SourceFormat.PARQUET
    built = build_version(src, dictionary, out_dir, fmt=SourceFormat.PARQUET)
    assert built.row_count == 9
    assert pl.read_parquet(out_dir / "patients.parquet").equals(pl.read_parquet(src / "patients.parquet"))


def test_ingest_single_csv_file_for_one_table_dictionary(tmp_path, out_dir):
    from enclave.catalog.dictionary import parse_dictionary

    d = parse_dictionary({"description": "d", "tables": {"t": {"description": "t", "columns": {
        "x": {"type": "integer", "identifier": "none", "description": "x"}}}}})
    f = tmp_path / "anything.csv"
    f.write_text("x\n1\n2\n")
    assert build_version(f, d, out_dir, fmt=SourceFormat.CSV).tables["t"].rows == 2


def test_ingest_fhir_round_trip_flattens_five_resource_types(fhir_export, out_dir):
    export = fhir_export
    assert detect_format(export) is SourceFormat.FHIR
    built = build_version(export, builtin_dictionary(), out_dir, fmt=SourceFormat.FHIR)
    assert _tables(out_dir) == sorted(f"{t}.parquet" for t in ["patient", "encounter", "condition", "observation", "medication_request"])
    patient = pl.read_parquet(out_dir / "patient.parquet").sort("patient_id")
    assert patient["nhs_number"].to_list() == ["9434567810", "9434567820"]
    assert patient["postcode_district"].to_list() == ["LS1", "LS2"]
    assert str(patient["birth_date"][1]) == "1955-12-30"
    enc = pl.read_parquet(out_dir / "encounter.parquet").sort("encounter_id")
    # +01:00 normalised to UTC.
    assert str(enc["period_start"][0]) == "2023-01-01 09:00:00"
    assert enc["patient_id"].to_list() == ["pat-1", "pat-2"]
    obs = pl.read_parquet(out_dir / "observation.parquet").sort("observation_id")
    assert obs["value"].to_list() == [6.5, 7.5]
    cond = pl.read_parquet(out_dir / "condition.parquet")
    assert set(cond["code"]) == {"I21.9"}
    assert built.row_count == 10


def _refused(src, dictionary, out_dir, fmt=SourceFormat.CSV, **kw) -> IngestRefused:
    with pytest.raises(IngestRefused) as err:
        build_version(src, dictionary, out_dir, fmt=fmt, **kw)
    assert _tables(out_dir) == []
    assert "\n" not in str(err.value)
    return err.value


def test_ingest_refuses_wrong_types_naming_rows_and_columns(dictionary, csv_source, out_dir):
    (csv_source / "patients.csv").write_text(
        "patient_id,name,age,sex,weight,smoker,registered\n"
        "p1,A,34,F,61.5,false,2019-03-01\n"
        "p2,B,seventy,M,80.0,maybe,2018-13-45\n"
    )
    err = _refused(csv_source, dictionary, out_dir)
    where = {(p.where, p.column, p.message.split(" (")[0]) for p in err.report.problems}
    assert ("row 2", "age", "not a valid integer") in where
    assert ("row 2", "smoker", "not a valid boolean") in where
    assert ("row 2", "registered", "not a valid date") in where
    assert err.report.counts["patients.age"] == 1


def test_ingest_refuses_missing_and_undeclared_columns(dictionary, csv_source, out_dir):
    (csv_source / "patients.csv").write_text("patient_id,name,age,sex,weight,smoker,nhs_number\np1,A,3,F,1,true,123\n")
    err = _refused(csv_source, dictionary, out_dir)
    found = {(p.column, p.message) for p in err.report.problems}
    assert ("registered", "declared column is missing from the input") in found
    assert any(c == "nhs_number" and "not declared" in m for c, m in found)


def test_ingest_refuses_bad_encoding_with_line(dictionary, csv_source, out_dir):
    (csv_source / "patients.csv").write_bytes(
        b"patient_id,name,age,sex,weight,smoker,registered\np1,A,34,F,61.5,false,2019-03-01\np2,\xff\xfeB,3,M,1,true,2019-03-01\n"
    )
    err = _refused(csv_source, dictionary, out_dir)
    assert any(p.where == "line 3" and "UTF-8" in p.message for p in err.report.problems)


def test_ingest_refuses_duplicate_ids(dictionary, csv_source, out_dir):
    (csv_source / "admissions.csv").write_text(
        "admission_id,patient_id,admitted_at,ward\n10,p1,2022-01-01 10:00:00,A\n10,p2,2022-01-02 10:00:00,B\n"
    )
    err = _refused(csv_source, dictionary, out_dir)
    assert {p.where for p in err.report.problems if p.message.startswith("duplicate primary key")} == {"row 1", "row 2"}


def test_ingest_refuses_missing_required_value_and_unknown_code(dictionary, csv_source, out_dir):
    (csv_source / "patients.csv").write_text(
        "patient_id,name,age,sex,weight,smoker,registered\np1,A,,F,1,true,2019-03-01\np2,B,3,Q,1,true,2019-03-01\n"
    )
    err = _refused(csv_source, dictionary, out_dir)
    assert {(p.where, p.column) for p in err.report.problems} == {("row 1", "age"), ("row 2", "sex")}


def test_ingest_refuses_truncated_csv(dictionary, csv_source, out_dir):
    text = (csv_source / "admissions.csv").read_text()
    (csv_source / "admissions.csv").write_text(text[:-15])
    err = _refused(csv_source, dictionary, out_dir)
    assert "truncated" in str(err)


def test_ingest_refuses_truncated_parquet(dictionary, csv_source, tmp_path, out_dir):
    src = tmp_path / "pq"
    src.mkdir()
    for name, spec in dictionary.tables.items():
        pl.read_csv(csv_source / f"{name}.csv", schema=spec.schema).write_parquet(src / f"{name}.parquet")
    data = (src / "patients.parquet").read_bytes()
    (src / "patients.parquet").write_bytes(data[: len(data) // 2])
    err = _refused(src, dictionary, out_dir, fmt=SourceFormat.PARQUET)
    assert err.report.problems[0].table == "patients"


def test_ingest_refuses_huge_value(dictionary, csv_source, out_dir):
    (csv_source / "admissions.csv").write_text(
        "admission_id,patient_id,admitted_at,ward\n10,p1,2022-01-01 10:00:00," + "W" * 5000 + "\n"
    )
    err = _refused(csv_source, dictionary, out_dir, limits=IngestLimits(max_field_bytes=1000))
    assert any(p.column == "ward" and "longer than 1000 bytes" in p.message for p in err.report.problems)


def test_ingest_refuses_bad_fhir_lines_and_types(fhir_export, out_dir):
    export = fhir_export
    with open(export / "Observation.ndjson", "a") as fh:
        fh.write('{"resourceType": "Observation", "id": "obs-9", "subject": {"reference": "Patient/pat-1"}, "valueQuantity": {"value": "high"}}\n')
        fh.write("x" * 3000 + "\n")
        fh.write('{"resourceType": "Practitioner", "id": "doc"}\n')
        fh.write('{"resourceType": "Observation", "id": "obs-1')  # truncated, and obs-1 exists
    err = _refused(export, builtin_dictionary(), out_dir, fmt=SourceFormat.FHIR, limits=IngestLimits(max_line_bytes=2000))
    messages = {(p.where, p.message) for p in err.report.problems}
    assert ("Observation.ndjson line 4", "longer than 2000 bytes") in {(w, m.replace("line longer", "longer")) for w, m in messages}
    assert any(w == "Observation.ndjson line 3" and "not a valid float" in m for w, m in messages)
    assert any(w == "Observation.ndjson line 5" and "Practitioner" in m for w, m in messages)
    assert any(w == "Observation.ndjson line 6" and "truncated" in m for w, m in messages)


def test_ingest_excludes_optouts_and_counts_them(dictionary, csv_source, out_dir):
    built = build_version(csv_source, dictionary, out_dir, fmt=SourceFormat.CSV, optouts=["p1", "p9"])
    assert pl.read_parquet(out_dir / "patients.parquet")["patient_id"].to_list() == ["p2", "p3", "p4"]
    assert "p1" not in pl.read_parquet(out_dir / "admissions.parquet")["patient_id"].to_list()
    assert (built.excluded_rows, built.excluded_patients) == (3, 1)
    manifest = json.loads((out_dir / "manifest.json").read_text())
    assert manifest["excluded"] == {"rows": 3, "patients": 1}
    assert "p1" not in (out_dir / "manifest.json").read_text()


def test_version_checksum_detects_changed_added_and_removed_files(dictionary, csv_source, tmp_path):
    stage = tmp_path / "catalog" / ".stage"
    stage.mkdir(parents=True)
    built = build_version(csv_source, dictionary, stage, fmt=SourceFormat.CSV)
    final = tmp_path / "catalog" / "v1"
    publish(stage, final)
    assert (final / "patients.parquet").stat().st_mode & 0o222 == 0
    verify_dir(final, built.sha256)
    with pytest.raises(ChecksumMismatch):
        verify_dir(final, "0" * 64)
    target = final / "patients.parquet"
    final.chmod(0o755)
    target.chmod(0o644)
    data = bytearray(target.read_bytes())
    data[100] ^= 1
    target.write_bytes(bytes(data))
    with pytest.raises(ChecksumMismatch, match="patients.parquet changed"):
        verify_dir(final, built.sha256)
    target.unlink()
    with pytest.raises(ChecksumMismatch, match="removed: patients.parquet"):
        verify_dir(final, built.sha256)


def test_ingest_streaming_path_matches_single_pass(dictionary, csv_source, tmp_path):
    one, two = tmp_path / "c" / "one", tmp_path / "c" / "two"
    one.mkdir(parents=True)
    two.mkdir()
    a = build_version(csv_source, dictionary, one, fmt=SourceFormat.CSV, optouts=["p2"])
    b = build_version(csv_source, dictionary, two, fmt=SourceFormat.CSV, optouts=["p2"], limits=IngestLimits(single_pass_bytes=0))
    assert a.sha256 == b.sha256
    assert a.stats == b.stats
    assert (a.excluded_rows, a.excluded_patients) == (b.excluded_rows, b.excluded_patients) == (2, 1)
    (csv_source / "admissions.csv").write_text("admission_id,patient_id,admitted_at,ward\n1,p1,2022-01-01 10:00:00,A\n1,p3,2022-01-01T10:00:00,A\n")
    for path in two.iterdir():
        path.unlink()
    err = _refused(csv_source, dictionary, two, limits=IngestLimits(single_pass_bytes=0))
    assert any(p.message.startswith("duplicate primary key") for p in err.report.problems)


def test_ingest_accepts_mixed_datetime_forms_after_the_sampled_rows(dictionary, csv_source, out_dir):
    rows = "".join(f"{100 + i},p1,2022-01-01 10:00:{i % 60:02d},A\n" for i in range(1500))
    (csv_source / "admissions.csv").write_text(
        "admission_id,patient_id,admitted_at,ward\n" + rows + "99,p2,2022-02-02T12:00:00.5,B\n"
    )
    build_version(csv_source, dictionary, out_dir, fmt=SourceFormat.CSV)
    admissions = pl.read_parquet(out_dir / "admissions.parquet")
    assert admissions.height == 1501
    assert str(admissions.filter(pl.col("admission_id") == 99)["admitted_at"][0]) == "2022-02-02 12:00:00.500000"


def test_ingest_accepts_unordered_unique_keys_and_refuses_unordered_duplicates(dictionary, csv_source, out_dir):
    header = "admission_id,patient_id,admitted_at,ward\n"
    (csv_source / "admissions.csv").write_text(header + "12,p1,2022-01-01 10:00:00,A\n10,p1,2022-01-01 10:00:00,A\n11,p2,2022-01-01 10:00:00,A\n")
    assert build_version(csv_source, dictionary, out_dir, fmt=SourceFormat.CSV).tables["admissions"].rows == 3
    for path in out_dir.iterdir():
        path.unlink()
    (csv_source / "admissions.csv").write_text(header + "12,p1,2022-01-01 10:00:00,A\n10,p1,2022-01-01 10:00:00,A\n12,p2,2022-01-01 10:00:00,A\n")
    err = _refused(csv_source, dictionary, out_dir)
    assert {p.where for p in err.report.problems if p.message.startswith("duplicate")} == {"row 1", "row 3"}


def test_ingest_refuses_wrongly_typed_parquet_column_naming_rows(dictionary, csv_source, tmp_path, out_dir):
    src = tmp_path / "pq"
    src.mkdir()
    for name, spec in dictionary.tables.items():
        frame = pl.read_csv(csv_source / f"{name}.csv", schema=spec.schema)
        if name == "patients":
            frame = frame.with_columns(pl.Series("age", ["34", "old", "52", "19"]))
        frame.write_parquet(src / f"{name}.parquet")
    err = _refused(src, dictionary, out_dir, fmt=SourceFormat.PARQUET)
    assert [(p.where, p.column) for p in err.report.problems] == [("row 2", "age")]


def test_ingest_refuses_non_utf8_fhir_line(fhir_export, out_dir):
    with open(fhir_export / "Patient.ndjson", "ab") as fh:
        fh.write(b'{"resourceType": "Patient", "id": "pat-9", "name": [{"family": "\\xff\\xfe"}]}\n'.replace(b"\\xff\\xfe", b"\xff\xfe"))
    err = _refused(fhir_export, builtin_dictionary(), out_dir, fmt=SourceFormat.FHIR)
    assert [(p.where, p.message) for p in err.report.problems] == [("Patient.ndjson line 3", "not valid UTF-8")]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(
        st.tuples(
            st.integers(-(2**62), 2**62),
            st.floats(allow_nan=False, allow_infinity=False, width=64),
            st.dates(min_value=dt.date(1800, 1, 1), max_value=dt.date(2200, 12, 31)),
            st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2100, 1, 1)),
            st.text(alphabet=st.characters(blacklist_categories=["Cs", "Cc"]), max_size=30),
            st.booleans(),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_ingest_round_trips_any_typed_values(tmp_path_factory, rows):
    from enclave.catalog.dictionary import parse_dictionary

    col = lambda t: {"type": t, "identifier": "none", "description": t}  # noqa: E731
    d = parse_dictionary({"description": "d", "tables": {"t": {"description": "t", "columns": {
        "i": col("integer"), "f": col("float"), "d": col("date"), "ts": col("datetime"), "s": col("string"), "b": col("boolean")}}}})
    frame = pl.DataFrame(rows, schema=d.tables["t"].schema, orient="row")
    work = tmp_path_factory.mktemp("rt")
    frame.write_csv(work / "t.csv", datetime_format="%Y-%m-%d %H:%M:%S%.6f")
    out = work / "cat" / "v1"
    out.mkdir(parents=True)
    build_version(work / "t.csv", d, out, fmt=SourceFormat.CSV)
    stored = pl.read_parquet(out / "t.parquet")
    assert stored.equals(frame)
