"""Done-when scenario through the CLI: a researcher exports a safe table and a notebook
through two independent reviewers, receives exactly the approved bytes with a verifiable
release record, and every attack fails with one clear line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from egress_world import NOTEBOOK, NOTEBOOK_RELEASED, SAFE_TABLE
from enclave.cli.main import app

SMALL_CELLS = b"region,count\nnorth,3\nsouth,85\n"
DATASET = b"patient_id,nhs_number\n1,9434765919\n"


class Cli:
    def __init__(self) -> None:
        self.runner = CliRunner()

    def __call__(self, *args: str, ok: bool = True) -> str:
        result = self.runner.invoke(app, list(args), catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, f"{args}: {result.output}"
        else:
            assert result.exit_code != 0, f"{args} should have failed: {result.output}"
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: "), f"not one clear line: {result.stderr!r}"
        return result.output if ok else result.stderr


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    monkeypatch.setenv("ENCLAVE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ENCLAVE_POLICIES", str(Path(__file__).resolve().parents[3] / "policies"))
    for name in ("ENCLAVE_DB_URL", "ENCLAVE_USER", "ENCLAVE_CRASH_AT"):
        monkeypatch.delenv(name, raising=False)
    c = Cli()
    c("db", "upgrade")
    c("user", "add", "admin", "--role", "admin")
    for name, role in (("rita", "researcher"), ("max", "researcher"), ("ria", "reviewer"), ("rob", "reviewer")):
        c("--as", "admin", "user", "add", name, "--role", role, "--training-expires", "2099-12-31")
    c("--as", "admin", "project", "create", "heart", "--title", "Heart study", "--pi", "rita",
      "--lay-summary", "Outcomes after heart attacks.", "--end-date", "2099-01-01")
    c("--as", "admin", "project", "approve", "heart")
    c("--as", "admin", "project", "activate", "heart")
    c("--as", "admin", "project", "add-member", "heart", "max")
    return c


def test_cli_scenario_safe_table_and_notebook_through_two_reviewers(cli: Cli, tmp_path: Path) -> None:
    home = Path(os.environ["ENCLAVE_HOME"])
    outbox = home / "workspaces" / "heart" / "outbox"
    (outbox / "tables").mkdir(parents=True)
    (outbox / "tables" / "by_region.csv").write_bytes(SAFE_TABLE)
    (outbox / "analysis.ipynb").write_bytes(NOTEBOOK)
    dataset = home / "catalog" / "cohort.csv"
    dataset.parent.mkdir(parents=True)
    dataset.write_bytes(DATASET)
    (outbox / "cohort.csv").symlink_to(dataset)

    out = cli("--as", "rita", "egress", "create", "heart", "--title", "Regional counts")
    rid = out.split()[3]
    # Attacks and mistakes: each one clear line, nothing changed.
    assert "symbolic link" in cli("--as", "rita", "egress", "add", rid, "cohort.csv", "--group", "g", ok=False)
    assert "needs the researcher role" in cli("--as", "ria", "egress", "create", "heart", ok=False)
    cli("--as", "rita", "egress", "add", rid, "tables/by_region.csv", "analysis.ipynb", "--group", "regional")
    assert "no context and no controls" in cli("--as", "rita", "egress", "submit", rid, ok=False)
    cli("--as", "rita", "egress", "add", rid, "--group", "regional",
        "--context", "Patients by region, all adults admitted 2020-2024; notebook that made it",
        "--controls", "all cells at least 10, no zeros")
    assert "may not submit" in cli("--as", "max", "egress", "submit", rid, ok=False)
    cli("--as", "rita", "egress", "submit", rid)
    # After submit, the outbox changes: what is released must not.
    (outbox / "tables" / "by_region.csv").write_bytes(SMALL_CELLS)

    assert "needs the reviewer role" in cli("--as", "max", "egress", "review", rid, "analysis.ipynb",
                                            "--decision", "approve", ok=False)
    listed = json.loads(cli("--as", "ria", "egress", "list", "--json"))
    assert [(r["id"], r["status"], r["owner"]) for r in listed] == [(int(rid), "in_review", "reviewer")]
    for reviewer in ("ria", "rob"):
        for path in ("tables/by_region.csv", "analysis.ipynb"):
            cli("--as", reviewer, "egress", "review", rid, path, "--decision", "approve", "--comment", "safe")
        if reviewer == "ria":
            shown = json.loads(cli("--as", "ria", "egress", "show", rid, "--json"))
            assert all({v["reviewer"] for v in f["votes"]} == {"ria"} for f in shown["file_list"])
    shown = json.loads(cli("--as", "rita", "egress", "show", rid, "--json"))
    assert shown["status"] == "approved" and all(f["check_status"] == "pass" for f in shown["file_list"])
    assert "may not release" in cli("--as", "rita", "egress", "release", rid, ok=False)
    cli("--as", "ria", "egress", "release", rid)

    assert "only its author and members" in cli("--as", "ria", "egress", "download", rid, "--to",
                                                str(tmp_path / "x"), ok=False)
    got = tmp_path / "received"
    cli("--as", "rita", "egress", "download", rid, "--to", str(got))
    assert (got / "files" / "tables" / "by_region.csv").read_bytes() == SAFE_TABLE
    assert (got / "files" / "analysis.ipynb").read_bytes() == NOTEBOOK_RELEASED  # its canonical form
    assert sorted(p.name for p in (got / "files").rglob("*") if p.is_file()) == ["analysis.ipynb", "by_region.csv"]

    # The custodian verifies with the public key only.
    pub = home / "keys" / "egress-signing.pub"
    assert "release record verified" in cli("egress", "verify", str(got / "release.json"), "--public-key", str(pub))
    envelope = json.loads((got / "release.json").read_text())
    envelope["record"]["files"][0]["sha256"] = "0" * 64
    (tmp_path / "tampered").mkdir()
    (tmp_path / "tampered" / "release.json").write_text(json.dumps(envelope))
    assert "NOT verified" in cli("egress", "verify", str(tmp_path / "tampered" / "release.json"),
                                 "--public-key", str(pub), ok=False)
    assert DATASET not in b"".join(p.read_bytes() for p in (home / "export").rglob("*") if p.is_file())
    assert DATASET not in b"".join(p.read_bytes() for p in (home / "quarantine").rglob("*") if p.is_file())
    assert "audit chain intact" in cli("--as", "admin", "audit", "verify")


def test_cli_hard_fail_goes_back_to_the_researcher_until_an_exception_is_asked(cli: Cli) -> None:
    outbox = Path(os.environ["ENCLAVE_HOME"]) / "workspaces" / "heart" / "outbox"
    outbox.mkdir(parents=True)
    (outbox / "small.csv").write_bytes(SMALL_CELLS)
    rid = cli("--as", "rita", "egress", "create", "heart").split()[3]
    cli("--as", "rita", "egress", "add", rid, "small.csv", "--group", "g", "--context", "by region",
        "--controls", "none")
    assert "failed the automated checks" in cli("--as", "rita", "egress", "submit", rid, ok=False)
    shown = json.loads(cli("--as", "rita", "egress", "show", rid, "--json"))
    assert shown["status"] == "changes_requested"
    assert shown["file_list"][0]["check_status"] == "fail" and shown["file_list"][0]["findings"]
    cli("--as", "rita", "egress", "submit", rid, "--exception", "north is a count of hospitals, not people")
    seen = json.loads(cli("--as", "ria", "egress", "show", rid, "--json"))
    assert seen["status"] == "in_review"
    assert seen["exception_justification"] == "north is a count of hospitals, not people"
    assert "say why it is safe" in cli("--as", "ria", "egress", "review", rid, "small.csv", "--decision", "approve",
                                       ok=False)
