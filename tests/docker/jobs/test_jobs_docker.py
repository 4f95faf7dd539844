"""Jobs on a real engine: papermill in the sandbox, provenance, reruns, limits, isolation."""

from __future__ import annotations

import ast
import json
import threading
import time
import uuid

import docker.errors
import pytest

from enclave.db.session import unit_of_work
from enclave.jobs import service
from enclave.jobs.runner import stop_container
from enclave.jobs.states import JobStatus
from enclave.users import get_user

from .conftest import JobEnv


def test_jobs_cohort_notebook_runs_with_parameters_and_rerun_reproduces(jobs: JobEnv):
    run_id = jobs.submit("alice", "cohort", "notebooks/cohort_analysis.ipynb", min_age=50, max_age=90)
    prov = jobs.run(run_id)
    assert prov.status is JobStatus.SUCCEEDED, prov.error
    assert set(prov.outputs) == {
        "cohort_analysis.ipynb",
        "cohort_by_age_band_sex.csv", "cohort_by_age_band_sex.csv.evidence.json",
        "length_of_stay_by_method.csv", "length_of_stay_by_method.csv.evidence.json",
    }
    out = jobs.outputs(run_id)
    executed = json.loads((out / "cohort_analysis.ipynb").read_text())
    text = json.dumps(executed)
    assert "aged 50-90" in text  # the injected parameters were used
    evidence = json.loads((out / "cohort_by_age_band_sex.csv.evidence.json").read_text())
    assert evidence["datasets"] == [{"name": "demo", "version": "1"}] or evidence["datasets"][0]["version"] == "1"
    assert prov.parameters == {"min_age": 50, "max_age": 90}
    assert prov.image_digest and prov.image_digest.startswith("sha256:")
    [view] = prov.views
    assert view["dataset"] == "demo" and view["version"] == 1 and "patients.parquet" in view["files"]
    assert prov.started_at and prov.finished_at and prov.exit_code == 0

    # A reviewer repeats the record: the outputs reproduce, in the reviewers' area, and the
    # researchers' outbox is as it was.
    outbox = jobs.workspace("cohort") / "outbox"
    before = {p: p.stat().st_mtime_ns for p in outbox.rglob("*")}
    again = jobs.run(jobs.rerun("rita", run_id))
    assert again.status is JobStatus.SUCCEEDED, again.error
    assert again.comparison["matches"], again.comparison
    assert again.comparison["input_changes"] == []
    assert {p: p.stat().st_mtime_ns for p in outbox.rglob("*")} == before
    area = jobs.settings.home / "jobs" / "reruns" / str(again.run_id)
    assert (area / "cohort_by_age_band_sex.csv").is_file() and set(again.outputs) == set(prov.outputs)

    # A new dataset version: the rerun says the outputs differ and why.
    jobs.set_version("cohort", 2, patients=420, seed=2)
    changed = jobs.run(jobs.rerun("rita", run_id))
    assert changed.status is JobStatus.SUCCEEDED
    assert not changed.comparison["matches"]
    assert "dataset demo changed from version 1 to 2" in changed.comparison["input_changes"]
    differing = {f["path"] for f in changed.comparison["files"] if f["match"] == "differs"}
    assert "cohort_by_age_band_sex.csv" in differing


def test_jobs_quickstart_notebook_runs_as_a_job(jobs: JobEnv):
    prov = jobs.run(jobs.submit("bob", "cohort", "notebooks/quickstart.ipynb"))
    assert prov.status is JobStatus.SUCCEEDED, prov.error
    assert "deprivation_by_sex.csv" in prov.outputs


def test_jobs_failing_notebook_ends_failed_with_its_error(jobs: JobEnv):
    nb = jobs.write_notebook("cohort", "broken.ipynb", "x = 1", "raise ValueError('cohort is empty: widen the ages')")
    prov = jobs.run(jobs.submit("alice", "cohort", nb))
    assert prov.status is JobStatus.FAILED
    assert "cell 2" in prov.error and "ValueError: cohort is empty: widen the ages" in prov.error
    assert prov.exit_code not in (0, None)
    assert "broken.ipynb" in prov.outputs  # the executed notebook, with the traceback, is kept


def test_jobs_time_limit_stops_the_container(jobs: JobEnv):
    jobs.runner.policy = jobs.runner.policy.model_copy(update={"job_timeout_seconds": 4})
    nb = jobs.write_notebook("cohort", "slow.ipynb", "import time\ntime.sleep(600)")
    started = time.monotonic()
    prov = jobs.run(jobs.submit("alice", "cohort", nb))
    assert time.monotonic() - started < 120
    assert prov.status is JobStatus.FAILED and "time limit of 4 s exceeded" in prov.error
    with pytest.raises(docker.errors.NotFound):
        jobs.runner.client.containers.get(jobs.container_name(prov.run_id))


def test_jobs_cancel_stops_the_running_container(jobs: JobEnv):
    nb = jobs.write_notebook("cohort", "slow.ipynb", "import time\nprint('working', flush=True)\ntime.sleep(600)")
    run_id = jobs.submit("alice", "cohort", nb)
    worker = threading.Thread(target=jobs.runner.run_next, args=(run_id,))
    worker.start()
    log = service.log_path(jobs.settings, run_id)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # until the notebook is really executing
        if log.exists() and "working" in log.read_text(errors="replace"):
            break
        time.sleep(0.5)
    name = jobs.container_name(run_id)
    assert name.startswith(jobs.runner.container_prefix)
    assert jobs.runner.client.containers.get(name).status == "running"
    # Cancelling is a database change only (what the web page does): the worker watching
    # the run sees it and kills the container.
    with unit_of_work(jobs.settings) as session:
        run = service.cancel_job(session, get_user(session, "bob"), run_id)
        assert run.container_name == name
    cancelled_at = time.monotonic()
    worker.join(timeout=60)
    assert not worker.is_alive() and time.monotonic() - cancelled_at < 30
    prov = jobs.provenance(run_id)
    assert prov.status is JobStatus.CANCELLED and prov.error == "cancelled by bob"
    with pytest.raises(docker.errors.NotFound):
        jobs.runner.client.containers.get(name)
    assert not stop_container(jobs.runner.client, name)  # nothing left to stop


PROBE = r'''
import json, os, socket, pathlib
results = {}
def attempt(name, fn):
    try:
        fn()
        results[name] = "reached"
    except Exception as exc:
        results[name] = type(exc).__name__
def connect(host, port):
    def go():
        s = socket.create_connection((host, port), timeout=3)
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        s.recv(100)
    return go
for i, (host, port) in enumerate(TARGETS):
    attempt(f"net{i}", connect(host, port))
for i, path in enumerate(PATHS):
    attempt(f"path{i}", lambda p=path: pathlib.Path(p).read_bytes())
attempt("write_view", lambda: pathlib.Path("/data/demo/new.txt").write_text("x"))
results["data"] = sorted(os.listdir("/data"))
results["interfaces"] = sorted(n for _, n in socket.if_nameindex())
pathlib.Path(os.environ["ENCLAVE_JOB_OUTPUT"], "probe.json").write_text(json.dumps(results))
'''


def test_jobs_cannot_reach_network_or_other_projects(jobs: JobEnv, client, outside, image):
    from tests.docker.conftest import start_host_server

    # Sentinels: a server in a container on an ordinary Docker network, and one on the host.
    sentinel = client.containers.run(
        image, ["python", "-m", "http.server", "8000"], name=f"enclave-test-sentinel-{uuid.uuid4().hex[:6]}",
        network=outside.name, detach=True, user="1000:100")
    host_server = start_host_server(outside.gateway, b"host-sentinel")
    try:
        sentinel.reload()
        sentinel_ip = sentinel.attrs["NetworkSettings"]["Networks"][outside.name]["IPAddress"]
        # Positive control: both sentinels answer from outside the sandbox.
        control = client.containers.run(
            image, ["python", "-c", f"import urllib.request as u; u.urlopen('http://{sentinel_ip}:8000', timeout=20); "
                                    f"print(u.urlopen('http://{outside.gateway}:{host_server.port}', timeout=20).read())"],
            network=outside.name, remove=True, user="1000:100")
        assert b"host-sentinel" in control

        other_ws = jobs.workspace("other") / "secret.txt"
        other_ws.write_text("other project's work")
        other_view = jobs.versions["other"][1] / "patients.parquet"
        nb = jobs.write_notebook(
            "cohort", "probe.ipynb",
            f"TARGETS = {[(sentinel_ip, 8000), (outside.gateway, host_server.port)]!r}\n"
            f"PATHS = {[str(other_ws), str(other_view), '/data/other/patients.parquet', '/home/jovyan/project/../../other/secret.txt']!r}",
            PROBE,
        )
        prov = jobs.run(jobs.submit("alice", "cohort", nb))
        assert prov.status is JobStatus.SUCCEEDED, prov.error
        results = json.loads((jobs.outputs(prov.run_id) / "probe.json").read_text())
        assert results["net0"] != "reached" and results["net1"] != "reached", results
        assert all(results[f"path{i}"] != "reached" for i in range(4)), results
        assert results["write_view"] != "reached"
        assert results["data"] == ["demo"]
        assert results["interfaces"] == ["lo"]  # no network interface but loopback
        assert sentinel.logs().count(b"GET /") == 1  # only the positive control
    finally:
        host_server.close()
        sentinel.remove(force=True)


def test_jobs_memory_limit_fails_the_run(jobs: JobEnv):
    jobs.runner.policy = jobs.runner.policy.model_copy(update={"job_mem_limit": "300m"})
    nb = jobs.write_notebook("cohort", "greedy.ipynb", "block = bytearray(2 * 1024**3)\nblock[::4096] = b'x' * len(block[::4096])")
    prov = jobs.run(jobs.submit("alice", "cohort", nb))
    assert prov.status is JobStatus.FAILED
    assert "memory limit of 300m exceeded" in prov.error, prov.error
    assert prov.limits["mem_limit"] == "300m"


def test_jobs_worker_runs_the_queue_within_the_concurrency_limit(jobs: JobEnv):
    jobs.runner.policy = jobs.runner.policy.model_copy(update={"job_max_concurrent": 2})
    nb = jobs.write_notebook("cohort", "nap.ipynb", "import time\ntime.sleep(3)")
    ids = [jobs.submit("alice", "cohort", nb) for _ in range(3)]
    done = jobs.runner.work(once=True)
    assert sorted(done) == ids
    runs = [jobs.provenance(i) for i in ids]
    assert all(r.status is JobStatus.SUCCEEDED for r in runs), [r.error for r in runs]
    # Never more than two at once: the third started only after one of the first two ended.
    first_end = min(runs[0].finished_at, runs[1].finished_at)
    assert runs[2].started_at >= first_end


def test_jobs_worker_fails_runs_whose_container_is_gone(jobs: JobEnv):
    nb = jobs.write_notebook("cohort", "x.ipynb", "x = 1")
    run_id = jobs.submit("alice", "cohort", nb)
    with unit_of_work(jobs.settings) as session:  # a worker claimed it, then died
        run = service.claim_next(session, concurrency=2, run_id=run_id)
        service.start_run(session, run, image="img", image_digest="sha256:0",
                          container_name=f"{jobs.runner.container_prefix}gone", views=[], limits={})
    assert jobs.runner.recover() == []  # just claimed: its worker may be creating the container
    jobs.runner.recover_grace_seconds = 0
    assert jobs.runner.recover() == [run_id]
    prov = jobs.provenance(run_id)
    assert prov.status is JobStatus.FAILED and "worker stopped" in prov.error
    assert jobs.runner.recover() == []


def test_jobs_worker_never_writes_through_a_link_in_the_outbox(jobs: JobEnv):
    other = jobs.workspace("other")
    before = {p: (p.stat().st_uid, p.stat().st_mode) for p in [other, *other.rglob("*")]}
    jobs_dir = jobs.workspace("cohort") / "outbox" / "jobs"
    jobs_dir.symlink_to(other)  # a researcher swaps outbox/jobs for a link to a host path
    nb = jobs.write_notebook("cohort", "x.ipynb", "x = 1")
    run_id = jobs.submit("alice", "cohort", nb)
    assert jobs.runner.run_next(run_id) is None
    prov = jobs.provenance(run_id)
    assert prov.status is JobStatus.FAILED and "outbox/jobs is a symbolic link or not a folder" in prov.error
    after = {p: (p.stat().st_uid, p.stat().st_mode) for p in [other, *other.rglob("*")]}
    assert after == before  # nothing created, chowned or chmodded there


def test_jobs_output_directory_replaced_by_a_link_is_not_read(jobs: JobEnv):
    secret = jobs.workspace("other") / "secret.csv"
    secret.write_text("secret\n1\n")
    nb = jobs.write_notebook(
        "cohort", "swap.ipynb",
        "import os, shutil\nout = os.environ['ENCLAVE_JOB_OUTPUT']\nshutil.rmtree(out)\n"
        f"os.symlink({str(secret.parent)!r}, out)",
    )
    prov = jobs.run(jobs.submit("alice", "cohort", nb))
    assert prov.status is JobStatus.FAILED and "replaced by a link" in prov.error
    assert prov.outputs == {}


def test_jobs_rerun_cannot_write_into_the_researchers_workspace(jobs: JobEnv):
    """A rerun executes the researcher's code for a reviewer: whatever that code tries, the
    workspace (outbox included) is read-only to it, and its outputs go to the reviewers' area."""
    nb = jobs.write_notebook("cohort", "sneaky.ipynb", (
        "import os, pathlib\n"
        "out = pathlib.Path(os.environ['ENCLAVE_JOB_OUTPUT'])\n"
        "(out / 't.csv').write_text('a\\n1\\n')\n"
        "tried = {}\n"
        "for target in ('/home/jovyan/project/outbox/sneak.csv', '/home/jovyan/project/notebooks/sneaky.ipynb',\n"
        "               '/home/jovyan/project/outbox/jobs/planted.csv'):\n"
        "    try:\n"
        "        open(target, 'a').write('x')\n"
        "        tried[target] = 'written'\n"
        "    except OSError as exc:\n"
        "        tried[target] = type(exc).__name__\n"
        "(out / 'tried.txt').write_text(repr(sorted(tried.items())))"))
    prov = jobs.run(jobs.submit("alice", "cohort", nb))
    assert prov.status is JobStatus.SUCCEEDED, prov.error
    outbox = jobs.workspace("cohort") / "outbox"
    for planted in (outbox / "sneak.csv", outbox / "jobs" / "planted.csv"):
        planted.unlink()  # the researcher's own run may write there: it is their workspace
    notebook_bytes = (jobs.workspace("cohort") / nb).read_bytes()
    before = sorted(p.relative_to(outbox) for p in outbox.rglob("*"))
    again = jobs.run(jobs.rerun("rita", prov.run_id))
    assert again.status is JobStatus.SUCCEEDED, again.error
    assert sorted(p.relative_to(outbox) for p in outbox.rglob("*")) == before
    assert (jobs.workspace("cohort") / nb).read_bytes() == notebook_bytes
    area = jobs.settings.home / "jobs" / "reruns" / str(again.run_id)
    tried = dict(ast.literal_eval((area / "tried.txt").read_text()))
    assert len(tried) == 3 and "written" not in tried.values(), tried
    original = dict(ast.literal_eval((jobs.outputs(prov.run_id) / "tried.txt").read_text()))
    assert original["/home/jovyan/project/outbox/sneak.csv"] == "written"  # the control: the run itself could
    assert (area / "t.csv").read_text() == "a\n1\n"
