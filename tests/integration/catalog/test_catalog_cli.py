"""The admin's path end to end through ``enclave`` (typer CliRunner on the real app)."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import polars as pl
from typer.testing import CliRunner

from enclave.catalog import service
from enclave.catalog.fhir import DICTIONARY_PATH
from enclave.cli.main import app
from enclave.clock import today
from enclave.db.session import unit_of_work
from enclave.projects.service import get_project

EXPIRES = (today() + dt.timedelta(days=60)).isoformat()


def run(*args: str, ok: bool = True) -> str:
    result = CliRunner().invoke(app, ["--as", "curator", *args])
    if ok:
        assert result.exit_code == 0, f"{args}: {result.output}"
    else:
        assert result.exit_code != 0, f"{args} should have failed: {result.output}"
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return result.output


def test_cli_admin_ingests_fhir_and_csv_and_grants_a_minimised_view(people, settings, demo_data):
    people.session.commit()
    out = run("dataset", "ingest", str(demo_data / "fhir"), "--name", "ehr", "--dictionary", str(DICTIONARY_PATH), "--quiet")
    assert "ingested ehr v1" in out
    out = run("dataset", "ingest", str(demo_data / "csv"), "--name", "hospital",
              "--dictionary", str(demo_data / "csv" / "dictionary.yaml"), "--quiet")
    assert "ingested hospital v1" in out
    listed = json.loads(run("dataset", "list", "--json"))
    assert [d["name"] for d in listed] == ["ehr", "hospital"]
    shown = json.loads(run("dataset", "show", "hospital", "--json"))
    assert shown["dictionary"]["tables"]["patients"]["columns"]["nhs_number"]["identifier"] == "direct"
    assert json.loads(run("dataset", "versions", "ehr", "--json"))[0]["tables"]["patient"] == 200

    out = run("grant", "add", "cardio", "ehr", "--expires", EXPIRES, "--quiet",
              "--columns", "patient.patient_id,patient.gender,patient.birth_date,condition.patient_id,condition.code",
              "--where", "condition: code LIKE 'I%'")
    assert out.startswith("grant 1: cardio may use ehr")
    grants = json.loads(run("grant", "list", "--json"))
    assert grants[0]["columns"] == ["patient.patient_id", "patient.gender", "patient.birth_date",
                                    "condition.patient_id", "condition.code"]

    # What the researcher's server mounts: exactly this view, nothing else.
    with unit_of_work(settings) as session:
        views = service.active_views(session, get_project(session, "cardio"))
    assert [name for name, _ in views] == ["ehr"]
    path = views[0][1]
    assert sorted(p.name for p in path.glob("*.parquet")) == ["condition.parquet", "patient.parquet"]
    assert pl.read_parquet_schema(path / "patient.parquet").keys() == {"patient_id", "gender", "birth_date"}
    codes = pl.read_parquet(path / "condition.parquet")["code"]
    assert codes.len() > 0 and codes.str.starts_with("I").all()

    run("grant", "revoke", "1", "--reason", "test")
    assert not path.exists()


def test_cli_refused_ingest_is_one_line_with_a_report_file(people, settings, demo_data, tmp_path):
    people.session.commit()
    bad = tmp_path / "bad"
    shutil.copytree(demo_data / "csv", bad)
    text = (bad / "patients.csv").read_text().splitlines(keepends=True)
    text[2] = text[1]  # a duplicate patient
    (bad / "patients.csv").write_text("".join(text))
    report = tmp_path / "report.json"
    out = run("dataset", "ingest", str(bad), "--name", "hospital", "--report", str(report), "--quiet", ok=False)
    assert "duplicate primary key" in out and "no version created" in out
    problems = json.loads(report.read_text())["problems"]
    assert {p["where"] for p in problems} == {"row 1", "row 2"}
    assert json.loads(run("dataset", "list", "--json")) == []


def test_cli_optouts_and_errors(people, settings, tmp_path):
    people.session.commit()
    listing = tmp_path / "optouts.txt"
    listing.write_text("patient_id\nP0000001\nP0000002\n\n")
    assert "2 new opt-out(s)" in run("optout", "import", str(listing))
    assert "1 new opt-out(s)" in run("optout", "add", "P0000002", "P0000003")
    assert run("optout", "count").strip() == "3 patient(s) opted out"
    run("grant", "add", "cardio", "nothing", "--expires", EXPIRES, ok=False)
    run("grant", "add", "cardio", "nothing", "--expires", "soon", ok=False)
    run("dataset", "ingest", str(tmp_path / "missing.csv"), "--name", "x", ok=False)
