"""Evidence replay on a real engine: a table's evidence is trusted only once its query,
re-run in a fresh job container over the project's real views, gives the same table.

The project's data come from the real catalogue (ingest, grant, materialised view with its
manifest); the researcher's tables are made with enclave.safe as a notebook would, reading
the view where a server mounts it (``ENCLAVE_DATA_ROOT`` points at a folder holding the
view as ``demo``). Each forged, edited or stale sidecar must leave its file checked as a
plain file; the genuine one must pass.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import re
import shutil
import uuid
from pathlib import Path

import polars as pl
import pytest

from enclave.catalog import service as catalog
from enclave.clock import today
from enclave.db.models import EgressFile
from enclave.db.session import unit_of_work
from enclave.demo.synthetic import generate, write_csv
from enclave.disclosure.evidence import sidecar_path
from enclave.egress.policy import EgressEnv
from enclave.egress.quarantine import outbox_dir
from enclave.egress.replay import ReplayFailed, view_identity
from enclave.safe import crosstab, query
from enclave.safe.replay import ReplayInput
from enclave.users import get_user

from ..conftest import PREFIX, probe_command, start_host_server
from .submitting import grant_synthetic_dataset, replaying_env, submit_tables

SLUG = "cardio"


@dataclasses.dataclass
class Enclave:
    settings: object
    client: object
    image: str
    data_root: Path
    prefix: str

    def env(self, **evidence) -> EgressEnv:
        return replaying_env(self.settings, self.client, self.image, self.prefix, **evidence)

    @property
    def outbox(self) -> Path:
        return outbox_dir(self.settings, SLUG)

    def point_data_at_view(self) -> Path:
        """Where the researcher's server would mount the project's live view (/data/demo)."""
        with unit_of_work(self.settings) as s:
            [(name, path)] = catalog.active_views(s, _project(s))
        link = self.data_root / name
        if link.is_symlink():
            link.unlink()
        link.symlink_to(path)
        return path

    def submit(self, *relpaths: str, env: EgressEnv | None = None) -> dict[str, EgressFile]:
        return {f.relpath: f for f in submit_tables(self.settings, env or self.env(), SLUG, list(relpaths))}

    def leftovers(self) -> list:
        return self.client.containers.list(all=True, filters={"name": self.prefix})


def _project(session):
    from enclave.projects.service import get_project

    return get_project(session, SLUG)


@pytest.fixture
def enclave(settings, factory, session, client, image, tmp_path, monkeypatch) -> Enclave:
    """Project cardio (alice) granted a materialised view of a synthetic dataset."""
    grant_synthetic_dataset(settings, factory, session, SLUG, tmp_path / "source")
    data_root = tmp_path / "data"
    data_root.mkdir()
    monkeypatch.setenv("ENCLAVE_DATA_ROOT", str(data_root))
    monkeypatch.setenv("ENCLAVE_DATASETS", json.dumps({"demo": "1"}))
    world = Enclave(settings, client, image, data_root, f"{PREFIX}replay-{uuid.uuid4().hex[:6]}-")
    world.point_data_at_view()
    world.outbox.mkdir(parents=True, exist_ok=True)
    yield world
    for container in world.leftovers():
        container.remove(force=True)


def save(enclave: Enclave, name: str, data=None, **kwargs) -> Path:
    data = data if data is not None else query("demo", "patients")
    result = crosstab(data, index="deprivation_decile", columns="sex", **kwargs)
    return result.save(enclave.outbox / name)


def evidence_of(file: EgressFile) -> dict:
    return file.check_json["evidence"]


def test_replay_genuine_suppressed_crosstab_is_reproduced_and_passes(enclave: Enclave):
    # Small cells: a narrow cohort, with margins, so primary and secondary suppression both apply.
    young = query("demo", "patients").filter(pl.col("date_of_birth") > pl.lit(dt.date(1990, 1, 1)))
    path = save(enclave, "young.csv", young, margins=True)
    assert b",," in path.read_bytes() or b",\n" in path.read_bytes()  # some cells are suppressed
    files = enclave.submit("young.csv")
    file = files["young.csv"]
    assert evidence_of(file)["status"] == "reproduced", evidence_of(file)
    assert file.check_status == "pass", file.check_json["findings"]
    [note] = [f for f in file.check_json["findings"] if f["rule"] == "evidence"]
    assert note["message"].startswith("evidence reproduced")
    assert enclave.leftovers() == []  # the replay container was removed


def _forge(path: Path, target: Path, n: int = 1000) -> None:
    """A sidecar for ``target`` copied from ``path``'s genuine one, claiming ``n`` per cell."""
    data = json.loads(sidecar_path(path).read_text())
    for cell in data["cells"]:
        cell["n"] = n
    data["output"] = {"file": target.name, "sha256": hashlib.sha256(target.read_bytes()).hexdigest(),
                      "bytes": target.stat().st_size}
    sidecar_path(target).write_text(json.dumps(data))


def test_replay_forged_and_edited_sidecars_are_refused(enclave: Enclave, tmp_path: Path):
    genuine = save(enclave, "genuine.csv")
    # 60 rows of microdata, with a hand-written sidecar claiming n=1000 per cell.
    view = Path(enclave.data_root / "demo")
    micro = enclave.outbox / "people.csv"
    pl.read_parquet(view / "patients.parquet").head(60).select("date_of_birth", "sex", "postcode_district").write_csv(micro)
    _forge(genuine, micro)
    # Counts 3/2/7 with the same forged claim.
    small = enclave.outbox / "small.csv"
    small.write_text("deprivation_decile,F,M\n1,3,2\n2,7,3\n")
    _forge(genuine, small)
    # The genuine table's own sidecar, its sha256 still right, every cell's n edited.
    edited = save(enclave, "edited.csv")
    _forge(edited, edited, n=1000)
    files = enclave.submit("people.csv", "small.csv", "edited.csv")
    for name in ("people.csv", "small.csv", "edited.csv"):
        file = files[name]
        assert evidence_of(file)["status"] == "not_reproducible", (name, evidence_of(file))
        assert file.check_status in ("review", "fail"), (name, file.check_json["findings"])
        [note] = [f for f in file.check_json["findings"] if f["rule"] == "evidence"]
        assert "checked as a plain file" in note["message"]
    assert "n 1000" in evidence_of(files["edited.csv"])["reason"]
    assert enclave.leftovers() == []


def test_replay_evidence_from_an_older_version_is_stale(enclave: Enclave, tmp_path: Path):
    save(enclave, "table.csv")
    source = tmp_path / "source2"
    write_csv(generate(650, seed=12), source)
    with unit_of_work(enclave.settings) as s:
        admin = get_user(s, "root-admin")
        catalog.ingest_dataset(s, admin, enclave.settings, source, "demo", description="synthetic v2")
        [grant] = catalog.live_grants(s, _project(s))
        catalog.revoke_grant(s, admin, grant.id, "new version")
    with unit_of_work(enclave.settings) as s:
        catalog.add_grant(s, get_user(s, "root-admin"), enclave.settings, SLUG, "demo", version=2,
                          expires=today() + dt.timedelta(days=30))
    file = enclave.submit("table.csv")["table.csv"]
    assert evidence_of(file)["status"] == "not_reproducible"
    assert evidence_of(file)["reason"].startswith("stale: made from demo version 1")


def test_replay_container_reads_only_the_views_it_is_given(enclave: Enclave, tmp_path: Path):
    """Past the host's checks, a query of a dataset that is not mounted finds nothing."""
    path = save(enclave, "table.csv")
    record = json.loads(sidecar_path(path).read_text())
    record["query"]["dataset"] = "secret"
    replayer = enclave.env().replayer
    payload = ReplayInput(evidence=record, policy={}).model_dump_json().encode()
    with unit_of_work(enclave.settings) as s:
        [(name, view)] = catalog.active_views(s, _project(s))
    out = json.loads(replayer.run(payload, [view_identity(name, view, 1)]))
    assert out["ok"] is False and "secret" in out["error"]


def test_replay_container_has_no_network(enclave: Enclave, outside, host_sentinel):
    """The replay's own container spec, with a probe instead of the replay: no route anywhere."""
    sentinel = start_host_server("0.0.0.0", b"outside-sentinel")
    try:
        replayer = enclave.env().replayer
        with unit_of_work(enclave.settings) as s:
            [(name, view)] = catalog.active_views(s, _project(s))
        spec = replayer.container_spec([view_identity(name, view, 1)])
        assert spec["network_mode"] == "none"
        spec.update(command=probe_command(f"{outside.gateway}:{sentinel.port}", f"{outside.gateway}:{host_sentinel.port}",
                                          f"127.0.0.1:{host_sentinel.port}"), stdin_open=False)
        container = enclave.client.containers.create(**spec)
        try:
            container.start()
            container.wait(timeout=60)
            lines = container.logs().decode().splitlines()
        finally:
            container.remove(force=True)
        assert len(lines) == 3 and all("CLOSED" in line for line in lines), lines
    finally:
        sentinel.close()


def test_replay_a_query_that_runs_away_is_stopped_and_not_trusted(enclave: Enclave):
    """A query that doubles a string column forty times: stopped by the time or memory
    limit, the container removed, the file checked as a plain file."""
    grow = query("demo", "patients").with_columns(blob=pl.col("sex"))
    for _ in range(40):
        grow = grow.with_columns(blob=pl.concat_str([pl.col("blob"), pl.col("blob")]))
    genuine = save(enclave, "grow.csv")
    record = json.loads(sidecar_path(genuine).read_text())
    record["query"] = grow.record()
    sidecar_path(genuine).write_text(json.dumps(record))
    file = enclave.submit("grow.csv", env=enclave.env(timeout_seconds=5, mem_limit="256m"))["grow.csv"]
    assert evidence_of(file)["status"] == "not_reproducible"
    assert "limit" in evidence_of(file)["reason"], evidence_of(file)
    assert enclave.leftovers() == []


def test_replay_without_an_engine_trusts_nothing(enclave: Enclave):
    save(enclave, "table.csv")
    env = enclave.env()
    env = dataclasses.replace(env, replayer=dataclasses.replace(env.replayer, client=None))
    file = enclave.submit("table.csv", env=env)["table.csv"]
    assert evidence_of(file) == {"status": "not_reproducible", "reason": "the container engine is unavailable"}
    with pytest.raises(ReplayFailed):
        env.replayer.run(b"{}", [])


REPO = Path(__file__).resolve().parents[3]


def _run_notebook_cells(name: str, outbox: Path, monkeypatch, keep=lambda source: True) -> None:
    """Execute the code cells of a repository notebook here, as its kernel would."""
    monkeypatch.setenv("ENCLAVE_JOB_OUTPUT", str(outbox))
    notebook = json.loads((REPO / "notebooks" / name).read_text())
    namespace: dict = {}
    for cell in notebook["cells"]:
        source = "".join(cell["source"])
        if cell["cell_type"] == "code" and (keep(source) or "parameters" in cell["metadata"].get("tags", [])):
            exec(compile(source, name, "exec"), namespace)  # noqa: S102 - the repository's own notebook


def test_replay_repository_notebooks_tables_are_reproduced(enclave: Enclave, monkeypatch):
    """The quickstart's and the cohort analysis's tables reproduce (as CI and the journey run them)."""
    _run_notebook_cells("cohort_analysis.ipynb", enclave.outbox, monkeypatch)
    # The quickstart's exploring cell scans /data itself (absent here); the rest runs as written.
    _run_notebook_cells("quickstart.ipynb", enclave.outbox, monkeypatch, keep=lambda s: "scan_parquet" not in s)
    names = ("cohort_by_age_band_sex.csv", "length_of_stay_by_method.csv", "deprivation_by_sex.csv")
    files = enclave.submit(*names)
    for name in names:
        assert evidence_of(files[name])["status"] == "reproduced", (name, evidence_of(files[name]))


def test_replay_cli_check_with_project_and_show(enclave: Enclave, monkeypatch):
    """`enclave egress check --project` re-runs evidence as a submit does; `egress show` says so."""
    from typer.testing import CliRunner

    from enclave.cli.main import app

    # The CLI builds its replayer from the policy directory: point containers.yaml at the test image.
    policies = enclave.data_root.parent / "policies"
    shutil.copytree(REPO / "policies", policies)
    containers = policies / "containers.yaml"
    containers.write_text(re.sub(r"(?m)^image: .*$", f"image: {enclave.image}", containers.read_text()))
    monkeypatch.setenv("ENCLAVE_POLICIES", str(policies))
    genuine = save(enclave, "table.csv")
    forged = save(enclave, "forged.csv")
    _forge(forged, forged)
    runner = CliRunner()
    done = runner.invoke(app, ["--as", "alice", "egress", "check", "--project", SLUG, "--json", str(genuine), str(forged)])
    report = json.loads(done.output)
    evidence = {Path(f["path"]).name: f["evidence"]["status"] for f in report["files"]}
    assert evidence == {"table.csv": "reproduced", "forged.csv": "not_reproducible"}, done.output
    done = runner.invoke(app, ["--as", "alice", "egress", "check", "--project", SLUG, str(forged)])
    assert "not reproducible" in done.output and "checked as a plain file" in done.output
    refused = runner.invoke(app, ["--as", "nobody", "egress", "check", "--project", SLUG, str(genuine)])
    assert refused.exit_code != 0 and "Traceback" not in refused.output

    files = enclave.submit("table.csv")
    request = runner.invoke(app, ["--as", "alice", "egress", "list", "--json"])
    request_id = json.loads(request.output)[-1]["id"]
    shown = runner.invoke(app, ["--as", "alice", "egress", "show", str(request_id), "--json"])
    [file] = json.loads(shown.output)["file_list"]
    assert file["evidence"] == files["table.csv"].check_json["evidence"] and file["evidence"]["status"] == "reproduced"
    text = runner.invoke(app, ["--as", "alice", "egress", "show", str(request_id)], env={"COLUMNS": "400"})
    assert "evidence reproduced" in text.output, text.output
