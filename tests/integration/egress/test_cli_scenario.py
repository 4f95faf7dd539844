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
from tests.register_support import REGISTER_OPTIONS

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
      "--lay-summary", "Outcomes after heart attacks.", "--end-date", "2099-01-01", *REGISTER_OPTIONS)
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
    outbox.mkdir(parents=True, exist_ok=True)  # activation made the workspace
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


# --- data hidden where no viewer shows it --------------------------------------------------

def _patient_rows() -> list[str]:
    return [f"{9434765000 + i},19{40 + i % 50}-0{1 + i % 9}-1{i % 10},{'MF'[i % 2]},LS{10 + i % 30}" for i in range(60)]


def _png_chunks(data: bytes) -> list[bytes]:
    """Chunk types, read without Pillow; nothing may follow IEND."""
    import struct

    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, kinds = 8, []
    while True:
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kinds.append(data[pos + 4:pos + 8])
        pos += 12 + length
        if kinds[-1] == b"IEND":
            assert pos == len(data), f"{len(data) - pos} bytes after IEND"
            return kinds


def test_cli_hidden_rows_in_notebook_metadata_and_after_png_end_never_leave(cli: Cli, tmp_path: Path) -> None:
    import base64
    import hashlib
    import io

    from PIL import Image

    rows = _patient_rows()
    payload = ("nhs_number,date_of_birth,sex,postcode_district\n" + "\n".join(rows) + "\n").encode()
    picture = Image.new("RGB", (24, 16), "white")
    for x in range(24):
        picture.putpixel((x, x % 16), (10 * x, 90, 200 - 5 * x))
    png = io.BytesIO()
    picture.save(png, format="PNG")
    smuggling_png = png.getvalue() + payload
    notebook = {
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                     "cohort": rows},
        "cells": [
            {"cell_type": "markdown", "id": "a", "metadata": {"extract": rows[:30]}, "source": "# Admissions by region"},
            {"cell_type": "code", "id": "b", "execution_count": 1, "metadata": {"rows": rows[30:]},
             "source": "table", "outputs": [{"output_type": "execute_result", "execution_count": 1, "metadata": {},
                                             "data": {"text/plain": "region  count\nnorth   120\nsouth    85"}}]},
        ],
    }
    submitted = {"analysis.ipynb": json.dumps(notebook).encode(), "figures/admissions.png": smuggling_png}
    outbox = Path(os.environ["ENCLAVE_HOME"]) / "workspaces" / "heart" / "outbox"
    (outbox / "figures").mkdir(parents=True)
    for relpath, data in submitted.items():
        (outbox / relpath).write_bytes(data)
    rid = cli("--as", "rita", "egress", "create", "heart", "--title", "Admissions figure").split()[3]
    cli("--as", "rita", "egress", "add", rid, *submitted, "--group", "fig", "--context", "Admissions by region, adults 2020-24",
        "--controls", "counts at least 10")
    # Whatever the checker says, the request reaches the reviewers (an exception if it fails).
    cli("--as", "rita", "egress", "submit", rid, "--exception", "the figure and notebook show counts of at least 10 only")
    shown = json.loads(cli("--as", "ria", "egress", "show", rid, "--json"))
    assert shown["status"] == "in_review"
    for reviewer in ("ria", "rob"):
        for relpath in submitted:
            cli("--as", reviewer, "egress", "review", rid, relpath, "--decision", "approve",
                "--comment", "the figure and the table look like aggregates")
    assert json.loads(cli("--as", "ria", "egress", "show", rid, "--json"))["status"] == "approved"

    result = cli.runner.invoke(app, ["--as", "ria", "egress", "release", rid], catch_exceptions=False)
    home = Path(os.environ["ENCLAVE_HOME"])
    exported = [p for p in (home / "export").rglob("*") if p.is_file()] if (home / "export").exists() else []
    if result.exit_code != 0:  # refusing is the other safe outcome: one clear line, nothing exported
        assert len(result.stderr.strip().splitlines()) == 1 and "cannot be released" in result.stderr
        assert exported == []
        return
    got = tmp_path / "received"
    cli("--as", "rita", "egress", "download", rid, "--to", str(got))
    released = {relpath: (got / "files" / relpath).read_bytes() for relpath in submitted}
    everything = b"".join(p.read_bytes() for p in exported) + b"".join(released.values())
    for row in rows:  # no row, nor any of its identifying values, left
        assert row.encode() not in everything
        assert row.split(",")[0].encode() not in everything
    figure = released["figures/admissions.png"]
    assert _png_chunks(figure) == [b"IHDR", b"IDAT", b"IEND"]
    again = Image.open(io.BytesIO(figure)).convert("RGB")
    assert again.size == picture.size
    assert [again.getpixel((x, y)) for y in range(16) for x in range(24)] == \
           [picture.getpixel((x, y)) for y in range(16) for x in range(24)]
    out_nb = json.loads(released["analysis.ipynb"])
    assert out_nb["metadata"] == {"kernelspec": notebook["metadata"]["kernelspec"]}  # "cohort" is on no allowlist
    assert [c["metadata"] for c in out_nb["cells"]] == [{}, {}]
    assert [c["source"] for c in out_nb["cells"]] == ["# Admissions by region", "table"]
    assert out_nb["cells"][1]["outputs"][0]["data"]["text/plain"] == "region  count\nnorth   120\nsouth    85"
    # The record names both digests; the custodian's check is against the released ones.
    pub = home / "keys" / "egress-signing.pub"
    assert "release record verified" in cli("egress", "verify", str(got / "release.json"), "--public-key", str(pub))
    record = json.loads((got / "release.json").read_text())["record"]
    sha = lambda data: hashlib.sha256(data).hexdigest()  # noqa: E731
    assert record["format"] == "enclave-release/2"
    assert {f["path"]: (f["sha256"], f["size"]) for f in record["files"]} == {
        p: (sha(b), len(b)) for p, b in released.items()}
    assert {f["path"]: f["submitted"] for f in record["files"]} == {
        p: {"sha256": sha(b), "size": len(b)} for p, b in submitted.items()}
    # Putting the submitted bytes in place of the released ones is caught.
    (got / "files" / "figures" / "admissions.png").chmod(0o644)
    (got / "files" / "figures" / "admissions.png").write_bytes(smuggling_png)
    assert "NOT verified" in cli("egress", "verify", str(got / "release.json"), "--public-key", str(pub), ok=False)
    assert base64.b64encode(payload[:60]) not in everything
