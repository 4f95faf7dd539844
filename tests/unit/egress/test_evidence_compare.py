"""Evidence verification without Docker: the host's checks and the comparison.

The replay itself runs in a container (tests/docker/egress/test_evidence_replay.py); here
``run`` re-computes in this process so that every refusal path of the comparison is tried
against genuine and forged sidecars. Nothing here is what production runs on the host.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import polars as pl
import pytest

from enclave.catalog.storage import checksum_files, listing_digest, write_manifest
from enclave.demo.synthetic import generate
from enclave.disclosure.evidence import read_evidence, sidecar_path
from enclave.disclosure.policy import DisclosurePolicy
from enclave.egress.replay import (
    EvidenceStatus,
    ReplayFailed,
    compare,
    parse_output,
    verify,
    view_identity,
)
from enclave.safe import crosstab, query
from enclave.safe.replay import ReplayInput, ReplayOutput, recompute

POLICY = DisclosurePolicy()


def write_view(root: Path, patients: int = 300, seed: int = 3) -> Path:
    view = root / "demo"
    view.mkdir(parents=True)
    for name, frame in generate(patients, seed).tables.items():
        frame.write_parquet(view / f"{name}.parquet")
    names = sorted(p.name for p in view.iterdir())
    files = checksum_files(view, names)
    write_manifest(view, {"format": 1, "files": files, "sha256": listing_digest(files), "rows": {}})
    return view


@pytest.fixture
def views(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    root = tmp_path / "data"
    view = write_view(root)
    monkeypatch.setenv("ENCLAVE_DATA_ROOT", str(root))
    monkeypatch.setenv("ENCLAVE_DATASETS", json.dumps({"demo": "1"}))
    return {"demo": view_identity("demo", view, 1), "root": root}


def in_process(root: Path):
    """Run the replay here: the same recompute the container runs, over ``root``."""
    def run(payload: bytes, _views) -> bytes:
        return recompute(ReplayInput.model_validate_json(payload), root).model_dump_json().encode()
    return run


def never(payload: bytes, _views) -> bytes:
    raise AssertionError("the replay must not run: the host refuses this evidence first")


def saved_table(tmp_path: Path, data=None, **kwargs) -> Path:
    out = tmp_path / "outbox"
    out.mkdir(exist_ok=True)
    data = data if data is not None else query("demo", "patients")
    result = crosstab(data, index="deprivation_decile", columns="sex", **kwargs)
    return result.save(out / "table.csv")


def check(path: Path, views: dict, run=None, sidecar: bytes | None = None):
    current = {"demo": views["demo"]}
    return verify(path.read_bytes(), sidecar if sidecar is not None else sidecar_path(path).read_bytes(),
                  path.name, current, POLICY, "cardio", run or in_process(views["root"]), 1 << 24)


def test_evidence_genuine_query_table_is_reproduced(tmp_path: Path, views: dict) -> None:
    path = saved_table(tmp_path, margins=True)
    outcome = check(path, views)
    assert outcome.status is EvidenceStatus.REPRODUCED, outcome.reason
    assert outcome.evidence is not None and len(outcome.evidence.cells) == len(read_evidence(sidecar_path(path)).cells)
    assert outcome.finding()["message"].startswith("evidence reproduced")


def test_evidence_eager_frame_is_not_reproducible(tmp_path: Path, views: dict) -> None:
    frame = pl.read_parquet(views["demo"].path / "patients.parquet")
    path = saved_table(tmp_path, data=frame)
    outcome = check(path, views, run=never)
    assert outcome.status is EvidenceStatus.NOT_REPRODUCIBLE
    assert "unknown origin" in outcome.reason
    assert "checked as a plain file" in outcome.finding()["message"]


def _forged(path: Path, n: int) -> bytes:
    """The genuine sidecar with every cell claiming ``n`` records, and the file's hash."""
    data = json.loads(sidecar_path(path).read_text())
    for cell in data["cells"]:
        cell["n"] = n
    data["output"]["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    return json.dumps(data).encode()


def test_evidence_hand_written_for_microdata_is_refused(tmp_path: Path, views: dict) -> None:
    genuine = saved_table(tmp_path)
    rows = pl.read_parquet(views["demo"].path / "patients.parquet").head(60)
    micro = tmp_path / "outbox" / "people.csv"
    rows.select("date_of_birth", "sex", "postcode_district").write_csv(micro)
    sidecar = json.loads(_forged(genuine, 1000))
    sidecar["output"] = {"file": "people.csv", "sha256": hashlib.sha256(micro.read_bytes()).hexdigest(),
                         "bytes": micro.stat().st_size}
    outcome = check(micro, views, sidecar=json.dumps(sidecar).encode())
    assert outcome.status is EvidenceStatus.NOT_REPRODUCIBLE and outcome.evidence is None
    assert "reads" in outcome.reason or "column" in outcome.reason


def test_evidence_hand_written_for_small_counts_is_refused(tmp_path: Path, views: dict) -> None:
    genuine = saved_table(tmp_path)
    small = tmp_path / "outbox" / "small.csv"
    small.write_text("deprivation_decile,F,M\n1,3,2\n2,7,3\n")
    sidecar = json.loads(_forged(genuine, 1000))
    sidecar["output"] = {"file": "small.csv", "sha256": hashlib.sha256(small.read_bytes()).hexdigest(),
                         "bytes": small.stat().st_size}
    outcome = check(small, views, sidecar=json.dumps(sidecar).encode())
    assert outcome.status is EvidenceStatus.NOT_REPRODUCIBLE and outcome.evidence is None


def test_evidence_matching_hash_but_edited_cells_is_refused(tmp_path: Path, views: dict) -> None:
    path = saved_table(tmp_path)
    outcome = check(path, views, sidecar=_forged(path, 1000))
    assert outcome.status is EvidenceStatus.NOT_REPRODUCIBLE
    assert "the evidence says n 1000" in outcome.reason


def test_evidence_file_edited_after_saving_is_refused(tmp_path: Path, views: dict) -> None:
    path = saved_table(tmp_path)
    sidecar = sidecar_path(path).read_bytes()
    path.write_bytes(path.read_bytes().replace(b"\n1,", b"\n1,1"))
    outcome = check(path, views, run=never, sidecar=sidecar)
    assert outcome.status is EvidenceStatus.NOT_REPRODUCIBLE and "sha256 differs" in outcome.reason


def test_evidence_file_edited_with_hash_updated_is_refused(tmp_path: Path, views: dict) -> None:
    path = saved_table(tmp_path)
    lines = path.read_text().splitlines()
    lines[1] = lines[1].rsplit(",", 1)[0] + ",999"
    path.write_text("\n".join(lines) + "\n")
    data = json.loads(sidecar_path(path).read_text())
    data["output"]["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    outcome = check(path, views, sidecar=json.dumps(data).encode())
    assert outcome.status is EvidenceStatus.NOT_REPRODUCIBLE and "999" in outcome.reason


def test_evidence_from_another_version_is_stale(tmp_path: Path, views: dict) -> None:
    path = saved_table(tmp_path)
    newer = view_identity("demo", views["demo"].path, 2)
    outcome = verify(path.read_bytes(), sidecar_path(path).read_bytes(), path.name, {"demo": newer}, POLICY,
                     "cardio", never, 1 << 24)
    assert outcome.status is EvidenceStatus.NOT_REPRODUCIBLE and outcome.reason.startswith("stale")


def test_evidence_of_a_dataset_not_granted_is_refused(tmp_path: Path, views: dict) -> None:
    path = saved_table(tmp_path)
    data = json.loads(sidecar_path(path).read_text())
    data["query"]["dataset"] = "other"
    outcome = check(path, views, run=never, sidecar=json.dumps(data).encode())
    assert outcome.status is EvidenceStatus.NOT_REPRODUCIBLE and "not granted" in outcome.reason


@pytest.mark.parametrize("table", ["../other/patients", "/etc/passwd", "http://127.0.0.1:9/x", "patients.parquet/.."])
def test_evidence_query_paths_outside_the_view_are_refused(tmp_path: Path, views: dict, table: str) -> None:
    path = saved_table(tmp_path)
    data = json.loads(sidecar_path(path).read_text())
    data["query"]["table"] = table
    outcome = check(path, views, run=never, sidecar=json.dumps(data).encode())
    assert outcome.status is EvidenceStatus.NOT_REPRODUCIBLE and "not a valid query record" in outcome.reason


def test_evidence_query_that_brings_its_own_rows_is_refused(tmp_path: Path, views: dict) -> None:
    """A step that aggregates, repeats rows or embeds a series is refused before any run."""
    path = saved_table(tmp_path)
    data = json.loads(sidecar_path(path).read_text())
    fake = json.loads(pl.lit(pl.Series([1] * 5)).meta.serialize(format="json"))
    for bad in ({"op": "with_columns", "columns": {"sex": fake}},
                {"op": "with_columns", "columns": {"sex": json.loads(pl.col("sex").first().meta.serialize(format="json"))}},
                {"op": "explode", "columns": ["sex"]}):
        data["query"]["steps"] = [bad]
        outcome = check(path, views, run=never, sidecar=json.dumps(data).encode())
        assert outcome.status is EvidenceStatus.NOT_REPRODUCIBLE, bad


def test_evidence_one_to_many_join_is_refused_at_replay(tmp_path: Path, views: dict) -> None:
    """Joining a table with many rows per key would count a patient many times."""
    path = saved_table(tmp_path)
    data = json.loads(sidecar_path(path).read_text())
    data["query"]["steps"] = [{"op": "join", "other": {"dataset": "demo", "table": "admissions", "steps": []},
                               "on": ["patient_id"], "how": "inner"}]
    outcome = check(path, views, sidecar=json.dumps(data).encode())
    assert outcome.status is EvidenceStatus.NOT_REPRODUCIBLE and "m:1" in outcome.reason


def test_evidence_replay_failure_or_garbage_is_not_trusted(tmp_path: Path, views: dict) -> None:
    path = saved_table(tmp_path)

    def fails(payload: bytes, _views) -> bytes:
        raise ReplayFailed("the replay exceeded its time limit of 1 s")

    assert "time limit" in check(path, views, run=fails).reason
    for raw in (b"", b"not json", b'{"format": "enclave-replay/1", "ok": true, "extra": 1}', b"x" * 100):
        outcome = check(path, views, run=lambda p, v, raw=raw: raw)
        assert outcome.status is EvidenceStatus.NOT_REPRODUCIBLE


def test_compare_names_the_first_differing_cell(tmp_path: Path, views: dict) -> None:
    path = saved_table(tmp_path)
    evidence = read_evidence(sidecar_path(path))
    output = recompute(ReplayInput(evidence=evidence.model_dump(mode="json"), policy=POLICY.model_dump(mode="json")),
                       views["root"])
    assert compare(evidence, path.read_bytes(), path.name, output) is None
    changed = output.table.replace(",", ";", 1)
    assert compare(evidence, path.read_bytes(), path.name, output.model_copy(update={"table": changed})) is not None
    assert "could not be re-run" in compare(evidence, path.read_bytes(), path.name, ReplayOutput(ok=False, error="x"))
    extra = path.read_bytes() + b"\n"
    assert compare(evidence, extra, path.name, output) is not None
    assert parse_output(b"{}" * 10, 8).ok is False


def test_evidence_records_views_and_query(tmp_path: Path, views: dict) -> None:
    path = saved_table(tmp_path)
    evidence = read_evidence(sidecar_path(path))
    (ref,) = evidence.datasets
    assert (ref.name, ref.version, ref.view_sha256) == ("demo", "1", views["demo"].sha256)
    assert evidence.query == {"dataset": "demo", "table": "patients", "steps": []}
    assert dt.datetime.fromisoformat(evidence.created)
