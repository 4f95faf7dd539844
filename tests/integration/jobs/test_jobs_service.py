"""The jobs service on a real database: who may submit, cancel and rerun, and what is recorded."""

import json

import pytest

from enclave.audit import list_events, verify_chain
from enclave.enums import Role
from enclave.errors import InvalidInput, InvalidTransition, NotFound, PermissionDenied
from enclave.jobs import service
from enclave.jobs.states import JobStatus

NOTEBOOK = {"cells": [{"cell_type": "code", "source": "min_age = 18  # youngest\nlabel = 'all'",
                       "metadata": {"tags": ["parameters"]}, "outputs": [], "execution_count": None},
                      {"cell_type": "code", "source": "x = 1", "metadata": {}, "outputs": [],
                       "execution_count": None}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


@pytest.fixture
def project(factory, settings):
    project = factory.project("cohort", "alice", "active", members=("bob",))
    factory.project("other", "carol", "active")
    factory.user("rita", Role.REVIEWER)
    ws = settings.workspaces_dir / "cohort"
    (ws / "notebooks").mkdir(parents=True)
    (ws / "notebooks" / "a.ipynb").write_text(json.dumps(NOTEBOOK))
    return project


def test_jobs_submit_records_notebook_copy_and_audit(session, factory, settings, project):
    run = service.submit_job(session, factory.get("alice"), settings, "cohort", "notebooks/a.ipynb", {"min_age": 40})
    assert run.status is JobStatus.QUEUED
    stored = service.stored_notebook(settings, run.notebook_sha256)
    assert stored.read_text() == json.dumps(NOTEBOOK)
    # Editing the workspace afterwards does not change what runs.
    (settings.workspaces_dir / "cohort" / "notebooks" / "a.ipynb").write_text("{}")
    assert stored.read_text() == json.dumps(NOTEBOOK)
    [event] = [e for e in list_events(session, action="job.submit")]
    assert event.details["parameters"] == {"min_age": 40} and event.target == f"job:{run.id}"


@pytest.mark.parametrize("path", ["../other/x.ipynb", "/etc/passwd.ipynb", "notebooks/a.py", "outbox/jobs/1/a.ipynb"])
def test_jobs_submit_refuses_paths_outside_the_workspace(session, factory, settings, project, path):
    with pytest.raises(InvalidInput):
        service.submit_job(session, factory.get("alice"), settings, "cohort", path)


def test_jobs_submit_refuses_symlink_out_of_workspace(session, factory, settings, project):
    other = settings.workspaces_dir / "other"
    other.mkdir(parents=True)
    (other / "secret.ipynb").write_text(json.dumps(NOTEBOOK))
    (settings.workspaces_dir / "cohort" / "link.ipynb").symlink_to(other / "secret.ipynb")
    with pytest.raises(InvalidInput, match="outside the project workspace"):
        service.submit_job(session, factory.get("alice"), settings, "cohort", "link.ipynb")


def test_jobs_submit_needs_membership_and_active_project(session, factory, settings, project):
    with pytest.raises(PermissionDenied):
        service.submit_job(session, factory.get("carol"), settings, "cohort", "notebooks/a.ipynb")
    with pytest.raises(NotFound):
        service.submit_job(session, factory.get("alice"), settings, "cohort", "notebooks/none.ipynb")
    from enclave.projects.lifecycle import ProjectAction
    from enclave.projects.service import transition_project

    transition_project(session, factory.admin, "cohort", ProjectAction.SUSPEND, reason="audit")
    with pytest.raises(InvalidTransition, match="suspended"):
        service.submit_job(session, factory.get("alice"), settings, "cohort", "notebooks/a.ipynb")


def test_jobs_parse_parameters_types_and_errors():
    assert service.parse_parameters(["a=1", "b=2.5", "c=true", "d=hello", "e=[1,2]", "f="]) == {
        "a": 1, "b": 2.5, "c": True, "d": "hello", "e": [1, 2], "f": ""}
    for bad in (["novalue"], ["1x=2"], ["class=1"], ["a=1", "a=2"]):
        with pytest.raises(InvalidInput):
            service.parse_parameters(bad)


def test_jobs_cancel_queued_and_only_by_members_or_admins(session, factory, settings, project):
    run = service.submit_job(session, factory.get("alice"), settings, "cohort", "notebooks/a.ipynb")
    with pytest.raises(PermissionDenied):
        service.cancel_job(session, factory.get("carol"), run.id)
    service.cancel_job(session, factory.get("bob"), run.id)
    assert run.status is JobStatus.CANCELLED and run.finished_at is not None
    with pytest.raises(InvalidTransition):
        service.cancel_job(session, factory.get("bob"), run.id)
    assert verify_chain(session).ok


def test_jobs_claim_respects_concurrency_and_project_status(session, factory, settings, project):
    alice = factory.get("alice")
    first = service.submit_job(session, alice, settings, "cohort", "notebooks/a.ipynb")
    second = service.submit_job(session, alice, settings, "cohort", "notebooks/a.ipynb")
    claimed = service.claim_next(session, concurrency=1)
    assert claimed is first
    service.start_run(session, claimed, image="img", image_digest="sha256:1", container_name="c",
                      views=[], limits={})
    assert service.claim_next(session, concurrency=1) is None  # the one slot is taken
    from enclave.projects.lifecycle import ProjectAction
    from enclave.projects.service import transition_project

    transition_project(session, factory.admin, "cohort", ProjectAction.SUSPEND, reason="audit")
    assert service.claim_next(session, concurrency=2) is None
    assert second.status is JobStatus.FAILED and "suspended" in second.error


def test_jobs_rerun_only_of_succeeded_runs_by_members_or_reviewers(session, factory, settings, project):
    run = service.submit_job(session, factory.get("alice"), settings, "cohort", "notebooks/a.ipynb", {"min_age": 1})
    with pytest.raises(InvalidTransition, match="only a succeeded run"):
        service.rerun_job(session, factory.get("rita"), settings, run.id)
    service.claim_next(session, concurrency=1)
    service.start_run(session, run, image="img", image_digest="sha256:1", container_name="c", views=[], limits={})
    service.finish_run(session, run, succeeded=True, exit_code=0, outputs={"t.csv": "ab"})
    with pytest.raises(PermissionDenied):
        service.get_job(session, factory.get("carol"), run.id)
    again = service.rerun_job(session, factory.get("rita"), settings, run.id)
    assert again.rerun_of_id == run.id and again.parameters_json == {"min_age": 1}
    assert again.notebook_sha256 == run.notebook_sha256
    prov = service.get_run_provenance(session, factory.get("rita"), run.id)
    assert prov.outputs == {"t.csv": "ab"} and prov.status is JobStatus.SUCCEEDED
    assert prov.output_dir == f"outbox/jobs/{run.id}"
    assert json.dumps(prov.as_json())


def test_jobs_list_shows_researchers_only_their_projects(session, factory, settings, project):
    service.submit_job(session, factory.get("alice"), settings, "cohort", "notebooks/a.ipynb")
    assert service.list_jobs(session, factory.get("carol")) == []
    assert len(service.list_jobs(session, factory.get("bob"))) == 1
    assert len(service.list_jobs(session, factory.get("rita"), "cohort")) == 1


def _succeeded_run(session, factory, settings, slug="cohort", outputs=None):
    user = factory.get("alice") if slug == "cohort" else factory.get("carol")
    if slug != "cohort":
        (settings.workspaces_dir / slug / "notebooks").mkdir(parents=True, exist_ok=True)
        (settings.workspaces_dir / slug / "notebooks" / "a.ipynb").write_text(json.dumps(NOTEBOOK))
    run = service.submit_job(session, user, settings, slug, "notebooks/a.ipynb")
    service.claim_next(session, concurrency=5, run_id=run.id)
    service.start_run(session, run, image="img", image_digest="sha256:1", container_name="c", views=[], limits={})
    service.finish_run(session, run, succeeded=True, exit_code=0, outputs=outputs or {"t.csv": "aa"})
    return run


def test_jobs_citable_runs_are_succeeded_runs_of_the_same_project(session, factory, settings, project):
    ours = _succeeded_run(session, factory, settings)
    theirs = _succeeded_run(session, factory, settings, slug="other")
    queued = service.submit_job(session, factory.get("alice"), settings, "cohort", "notebooks/a.ipynb")
    assert service.check_citable_runs(session, factory.get("alice"), "cohort", [ours.id, ours.id]) == [ours]
    with pytest.raises(PermissionDenied):  # alice may not even see the other project's run
        service.check_citable_runs(session, factory.get("alice"), "cohort", [theirs.id])
    with pytest.raises(InvalidInput, match="belongs to project other"):
        service.check_citable_runs(session, factory.admin, "cohort", [theirs.id])
    with pytest.raises(InvalidInput, match="queued"):
        service.check_citable_runs(session, factory.get("alice"), "cohort", [queued.id])


def test_jobs_output_origin_says_whether_the_file_is_the_runs_output(session, factory, settings, project):
    run = _succeeded_run(session, factory, settings, outputs={"tables/t.csv": "aa"})
    rita = factory.get("rita")
    same = service.output_origin(session, rita, "cohort", f"jobs/{run.id}/tables/t.csv", "aa")
    assert same.run_id == run.id and same.unchanged
    assert not service.output_origin(session, rita, "cohort", f"outbox/jobs/{run.id}/tables/t.csv", "bb").unchanged
    assert service.output_origin(session, rita, "cohort", "tables/t.csv", "aa") is None
    assert service.output_origin(session, rita, "other", f"jobs/{run.id}/tables/t.csv", "aa") is None
    assert service.output_origin(session, rita, "cohort", f"jobs/{run.id}/nope.csv", "aa") is None


def test_jobs_follow_log_prints_until_the_run_ends(session, factory, settings, project):
    import threading
    import time

    from enclave.db.session import unit_of_work
    from enclave.jobs.runner import follow_log

    run = service.submit_job(session, factory.get("alice"), settings, "cohort", "notebooks/a.ipynb")
    service.claim_next(session, concurrency=1)
    service.start_run(session, run, image="img", image_digest="sha256:1", container_name="c", views=[], limits={})
    session.commit()
    log = service.log_path(settings, run.id)
    log.parent.mkdir(parents=True)
    log.write_text("Executing Cell 1\n")
    run_id = run.id

    def finish_later():
        time.sleep(1.5)
        with open(log, "a") as fh:
            fh.write("Ending Cell 1\n")
        with unit_of_work(settings) as other:
            from enclave.db.models import JobRun

            service.finish_run(other, other.get(JobRun, run_id), succeeded=True, exit_code=0, outputs={})

    threading.Thread(target=finish_later).start()
    seen: list[str] = []
    follow_log(settings, run_id, seen.append, follow=True, poll=0.2)
    assert "".join(seen) == "Executing Cell 1\nEnding Cell 1\n"


def test_jobs_container_gets_the_servers_isolation_and_no_network(session, factory, settings, project):
    from enclave.hub.access import project_mounts
    from enclave.jobs.runner import JobView, Runner
    from enclave.sandbox import ContainerPolicy, Mount, create_kwargs, host_config

    view = settings.views_dir / "cohort" / "demo"
    view.mkdir(parents=True)
    policy = ContainerPolicy(mem_limit="2g", job_mem_limit="6g")
    runner = Runner(settings, policy, client=None)
    run = service.submit_job(session, factory.get("alice"), settings, "cohort", "notebooks/a.ipynb", {"min_age": 1})
    mounts = [Mount(source=str(m.source), target=m.target, read_only=m.read_only)
              for m in project_mounts(settings, session, run.project, views=lambda *_: [("demo", view)])]
    job = runner._create_kwargs(run, mounts, "img", "name", [JobView("demo", view, 3, "v3")])
    server = host_config(policy, mounts)
    # Exactly the server's isolation, but no network at all and the job memory limit.
    assert job["host_config"] == server | {"network_mode": "none", "mem_limit": "6g", "memswap_limit": "6g"}
    assert {m["Target"]: m["ReadOnly"] for m in job["host_config"]["mounts"]} == {
        "/home/jovyan/project": False, "/data/demo": True, "/etc/enclave/policies": True}
    for key, value in create_kwargs(policy).items():
        if key != "labels":
            assert job[key] == value
    assert job["environment"]["ENCLAVE_DATASETS"] == '{"demo": "3"}'
    assert job["command"][:2] == ["papermill", "-"] and '{"min_age": 1}' in job["command"]
    out = service.output_dir(settings, run)
    assert out.is_dir() and not out.is_symlink()


def test_jobs_submit_checks_parameters_against_the_notebooks_parameters_cell(session, factory, settings, project):
    alice = factory.get("alice")
    with pytest.raises(InvalidInput, match="has no parameter 'min_agee': its parameters are min_age, label"):
        service.submit_job(session, alice, settings, "cohort", "notebooks/a.ipynb", {"min_agee": 40})
    with pytest.raises(InvalidInput, match="parameter min_age takes a whole number, e.g. 40, not 'forty'"):
        service.submit_job(session, alice, settings, "cohort", "notebooks/a.ipynb", {"min_age": "forty"})
    with pytest.raises(InvalidInput, match="parameter label takes text"):
        service.submit_job(session, alice, settings, "cohort", "notebooks/a.ipynb", {"label": 5})
    plain = settings.workspaces_dir / "cohort" / "notebooks" / "plain.ipynb"
    plain.write_text(json.dumps({**NOTEBOOK, "cells": NOTEBOOK["cells"][1:]}))
    with pytest.raises(InvalidInput, match="has no cell tagged 'parameters'"):
        service.submit_job(session, alice, settings, "cohort", "notebooks/plain.ipynb", {"x": 2})
    assert service.list_jobs(session, alice, "cohort") == []  # nothing was queued
    run = service.submit_job(session, alice, settings, "cohort", "notebooks/plain.ipynb")
    assert run.parameters_json == {}
    declared = service.notebook_parameters(session, alice, settings, "cohort", "notebooks/a.ipynb")
    assert [(p.name, p.kind.value, p.default, p.comment) for p in declared] == [
        ("min_age", "integer", 18, "youngest"), ("label", "text", "all", "")]
    with pytest.raises(PermissionDenied):
        service.notebook_parameters(session, factory.get("carol"), settings, "cohort", "notebooks/a.ipynb")


def test_jobs_rerun_sees_the_workspace_read_only_and_writes_to_the_reviewers_area(session, factory, settings, project):
    from enclave.db.session import unit_of_work
    from enclave.users import get_user
    from enclave.jobs.runner import Runner
    from enclave.sandbox import ContainerPolicy

    class NoEngine(Runner):  # the container engine is exercised in tests/docker/jobs
        def _image(self, session, run):
            return "img", "sha256:1"

    run = service.submit_job(session, factory.get("alice"), settings, "cohort", "notebooks/a.ipynb")
    service.claim_next(session, concurrency=1)
    service.start_run(session, run, image="img", image_digest="sha256:1", container_name="c", views=[], limits={})
    service.finish_run(session, run, succeeded=True, exit_code=0, outputs={"t.csv": "ab"})
    rerun_id = service.rerun_job(session, factory.get("rita"), settings, run.id).id
    session.commit()
    session.close()  # the runner works in its own units of work
    outbox = settings.workspaces_dir / "cohort" / "outbox"
    before = sorted(p.relative_to(outbox) for p in outbox.rglob("*")) if outbox.exists() else []
    runner = NoEngine(settings, ContainerPolicy(), client=None, views=lambda *_: [])
    claimed, _name, kwargs = runner._claim_and_start(rerun_id)
    assert claimed == rerun_id
    mounts = {m["Target"]: (m["Source"], m["ReadOnly"]) for m in kwargs["host_config"]["mounts"]}
    area = settings.home / "jobs" / "reruns" / str(rerun_id)
    assert mounts == {"/home/jovyan/project": (str(settings.workspaces_dir / "cohort"), True),
                      "/etc/enclave/policies": (str(settings.container_policies_dir / "current"), True),
                      "/home/jovyan/rerun-output": (str(area), False)}
    assert kwargs["environment"]["ENCLAVE_JOB_OUTPUT"] == "/home/jovyan/rerun-output"
    assert area.is_dir() and (area.stat().st_uid, area.stat().st_gid) == (1000, 100)
    after = sorted(p.relative_to(outbox) for p in outbox.rglob("*")) if outbox.exists() else []
    assert after == before  # nothing made in the researchers' outbox
    with unit_of_work(settings) as s:
        prov = service.get_run_provenance(s, get_user(s, "rita"), rerun_id)
        assert prov.output_dir == f"$ENCLAVE_HOME/jobs/reruns/{rerun_id}"
        assert service.output_dir(settings, s.get(service.JobRun, rerun_id)) == area
