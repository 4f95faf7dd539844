"""Done when (issue 15), on a real engine through the CLI: the demo cohort table is
released, then the same table with max_age one year higher is submitted; the replay, in a
fresh offline container, names each cell's patients, and the second table gets a
``differencing`` finding naming the first, on ``enclave egress check --project``, on
``enclave egress show --json`` and on the reviewer's page.

Three replays in all (each costs a container start); the many other cases run the
container's code in-process in ``tests/integration/differencing``.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
from pathlib import Path

import polars as pl
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from enclave.catalog import service as catalog
from enclave.cli.main import app
from enclave.db.session import unit_of_work
from enclave.egress.quarantine import outbox_dir
from enclave.enums import Role
from enclave.projects.service import get_project
from enclave.safe import crosstab, query
from enclave.web.app import create_app
from enclave.web.auth import HUB_ROLE_REVIEW
from enclave.web.testing import StaticTokenAuthenticator

from .submitting import grant_synthetic_dataset

SLUG = "cardio"
REPO = Path(__file__).resolve().parents[3]
REF = dt.date(2024, 12, 31)


def cli(*args: str, ok: bool = True) -> str:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert (result.exit_code == 0) == ok, f"{args}: {result.output} {result.stderr if result.stderr_bytes else ''}"
    return result.output


def cohort(max_age: int):
    """The demo cohort notebook's query (notebooks/cohort_analysis.ipynb), 40 to max_age."""
    age = ((pl.lit(REF) - pl.col("date_of_birth")).dt.total_days() // 365.25).cast(pl.Int64)
    band = ((pl.col("age") // 20) * 20).cast(pl.Int64)
    return (query("demo", "patients").with_columns(age=age).filter(pl.col("age").is_between(40, max_age))
            .with_columns(age_band_start=band)
            .with_columns(age_band=pl.format("{}-{}", pl.col("age_band_start"), pl.col("age_band_start") + 19))
            .select("patient_id", "sex", "age", "age_band"))


@pytest.fixture
def enclave(settings, factory, session, client, image, tmp_path, monkeypatch):
    for name in ("rita", "rex"):
        factory.user(name, Role.REVIEWER)
    grant_synthetic_dataset(settings, factory, session, SLUG, tmp_path / "source", patients=2000, seed=5)
    with unit_of_work(settings) as s:
        [(name, path)] = catalog.active_views(s, get_project(s, SLUG))
    data = tmp_path / "data"
    data.mkdir()
    (data / name).symlink_to(path)
    monkeypatch.setenv("ENCLAVE_DATA_ROOT", str(data))
    monkeypatch.setenv("ENCLAVE_DATASETS", json.dumps({"demo": "1"}))
    outbox = outbox_dir(settings, SLUG)
    outbox.mkdir(parents=True, exist_ok=True)
    yield settings, outbox
    for container in client.containers.list(all=True, filters={"label": "org.enclave.replay"}):
        if container.name.startswith("enclave-replay-") and container.status == "exited":
            container.remove(force=True)


def request_of(output: str) -> int:
    return int(re.search(r"created egress request (\d+)", output).group(1))


def demo_pair(outbox, margins: bool = False) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """The cohort table to max_age A-1 and to A, A the youngest age from 60 on that 1-9 people have."""
    ages = query("demo", "patients").with_columns(
        age=((pl.lit(REF) - pl.col("date_of_birth")).dt.total_days() // 365.25).cast(pl.Int64)).collect()
    counts = ages.group_by("age").len().filter((pl.col("age") >= 60) & pl.col("len").is_between(1, 9)).sort("age")
    top = int(counts["age"][0])  # people of exactly this age are the difference
    for folder in ("first", "second"):
        (outbox / folder).mkdir()
    for folder, max_age in (("first", top - 1), ("second", top)):
        crosstab(cohort(max_age), index="age_band", columns="sex", margins=margins).save(
            outbox / folder / "cohort_by_age_band_sex.csv")
    return "first/cohort_by_age_band_sex.csv", "second/cohort_by_age_band_sex.csv"


def release_through_cli(relpath: str) -> int:
    rid = request_of(cli("--as", "alice", "egress", "create", SLUG, "--title", "cohort"))
    cli("--as", "alice", "egress", "add", str(rid), relpath, "--group", "cohort", "--context", "cohort by band",
        "--controls", "enclave.safe suppression")
    cli("--as", "alice", "egress", "submit", str(rid))
    for reviewer in ("rita", "rex"):
        cli("--as", reviewer, "egress", "review", str(rid), relpath, "--decision", "approve", "--comment", "safe")
    cli("--as", "rita", "egress", "release", str(rid))
    return rid


def test_differencing_demo_pair_released_then_submitted_through_cli(enclave):
    settings, outbox = enclave
    first, second = demo_pair(outbox)
    rid = release_through_cli(first)

    # Before submitting, the researcher's check already names the released table.
    checked = json.loads(cli("--as", "alice", "egress", "check", "--project", SLUG, "--json",
                             str(outbox / second), ok=False))
    [report] = checked["files"]
    assert report["evidence"]["status"] == "reproduced"
    assert any(f["rule"] == "differencing" and f["status"] == "fail" for f in report["findings"])

    rid2 = request_of(cli("--as", "alice", "egress", "create", SLUG, "--title", "cohort again"))
    cli("--as", "alice", "egress", "add", str(rid2), second, "--group", "cohort", "--context", "cohort by band",
        "--controls", "enclave.safe suppression")
    cli("--as", "alice", "egress", "submit", str(rid2), "--exception", "a different cohort definition")
    shown = json.loads(cli("--as", "alice", "egress", "show", str(rid2), "--json"))
    [file] = shown["file_list"]
    [finding] = [f for f in file["findings"] if f["rule"] == "differencing"]
    assert finding["status"] == "fail" and f"outbox/{first} of project {SLUG} (request {rid})" in finding["message"]
    assert file["check_status"] == "fail"

    web = TestClient(create_app(settings, StaticTokenAuthenticator({"t-rex": ("rex", {HUB_ROLE_REVIEW})}, running=0)),
                     raise_server_exceptions=False)
    page = web.get(f"/services/enclave/review/{rid2}/file", params={"path": second},
                   headers={"Authorization": "token t-rex"})
    assert page.status_code == 200, page.text[:300]
    assert "differencing" in page.text and f"outbox/{first} of project {SLUG}" in page.text


def test_cellkey_demo_pair_releases_only_noise_through_cli(enclave, tmp_path, monkeypatch):
    settings, outbox = enclave
    policies = tmp_path / "policies"
    shutil.copytree(REPO / "policies", policies)
    rule = policies / "differencing.yaml"
    rule.write_text(rule.read_text().replace("cell_key:\n  default: false", "cell_key:\n  default: true"))
    monkeypatch.setenv("ENCLAVE_POLICIES", str(policies))
    # A fixed enclave-wide key makes the record keys, and so the noise, the same every run.
    settings.keys_dir.mkdir(parents=True, exist_ok=True)
    (settings.keys_dir / "differencing.key").write_bytes(bytes(range(32)))
    (settings.keys_dir / "differencing.key").chmod(0o600)
    first, second = demo_pair(outbox, margins=True)
    rid = release_through_cli(first)
    released = (settings.export_dir / SLUG / f"request-{rid}" / "files" / first).read_bytes()
    [file] = json.loads(cli("--as", "alice", "egress", "show", str(rid), "--json"))["file_list"]
    [note] = [f for f in file["findings"] if f["rule"] == "cell_key"]
    assert released.decode().splitlines() == note["locations"]  # the release carries the perturbed table

    rid2 = request_of(cli("--as", "alice", "egress", "create", SLUG, "--title", "cohort again"))
    cli("--as", "alice", "egress", "add", str(rid2), second, "--group", "cohort", "--context", "cohort by band",
        "--controls", "enclave.safe suppression")
    cli("--as", "alice", "egress", "submit", str(rid2))  # no hard fail: the pair differs only by noise
    [file] = json.loads(cli("--as", "alice", "egress", "show", str(rid2), "--json"))["file_list"]
    rules = {f["rule"]: f["status"] for f in file["findings"]}
    assert "differencing" not in rules and rules["cell_key"] == "pass"
    [note2] = [f for f in file["findings"] if f["rule"] == "cell_key"]
    true = (outbox / first).read_text().splitlines() + (outbox / second).read_text().splitlines()
    assert note["locations"] + note2["locations"] != true  # noise, not the true counts
    web = TestClient(create_app(settings, StaticTokenAuthenticator({"t-rex": ("rex", {HUB_ROLE_REVIEW})}, running=0)),
                     raise_server_exceptions=False)
    page = web.get(f"/services/enclave/review/{rid2}/file", params={"path": second},
                   headers={"Authorization": "token t-rex"}).text
    assert "data-cell-key-table" in page and note2["locations"][-1] in page  # the reviewer sees the noisy table
