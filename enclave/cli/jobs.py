"""``enclave job``: run workspace notebooks as papermill jobs, follow them, check reruns."""

from __future__ import annotations

import time
from typing import Optional

import typer

from enclave.cli.common import JSON_OPTION, acting, ok, print_json, print_table, settings
from enclave.db.models import JobRun
from enclave.db.session import unit_of_work
from enclave.errors import EnclaveError
from enclave.jobs import service
from enclave.jobs.states import FINAL, JobStatus

app = typer.Typer(help="Run notebooks as batch jobs in the project's sandbox; logs, cancel, rerun.",
                  no_args_is_help=True)


def _runner():  # imported late: the Docker SDK is needed only by commands that run jobs
    from enclave.jobs.runner import runner_for

    return runner_for(settings())


def _wait_for(run_id: int) -> service.RunProvenance:
    """Execute ``run_id`` in this process as soon as the concurrency limit lets it start,
    or wait while another worker runs it; return its final record."""
    runner = _runner()
    while True:
        runner.run_next(run_id)
        with unit_of_work(runner.settings) as session:
            run = session.get(JobRun, run_id)
            if run.status in FINAL:
                return service.provenance_of(run)
        time.sleep(2)


def _report(prov: service.RunProvenance) -> None:
    """Say how a finished run ended; a failed or cancelled run exits non-zero."""
    if prov.status is JobStatus.SUCCEEDED:
        ok(f"run {prov.run_id} succeeded: {len(prov.outputs)} output(s) in {prov.output_dir}/")
        if prov.comparison is not None:
            _print_comparison(prov)
            if not prov.comparison.get("matches"):
                raise EnclaveError(f"run {prov.run_id} did not reproduce run {prov.rerun_of}: see the differences above")
        return
    raise EnclaveError(f"run {prov.run_id} {prov.status.value}: {prov.error or 'no reason recorded'}")


def _print_comparison(prov: service.RunProvenance) -> None:
    from enclave.jobs.provenance import Comparison, FileComparison, OutputMatch

    data = prov.comparison or {}
    comparison = Comparison(
        [FileComparison(f["path"], OutputMatch(f["match"]), f.get("detail", "")) for f in data.get("files", [])],
        list(data.get("input_changes", [])),
    )
    ok(f"rerun of run {prov.rerun_of}: {comparison.summary()}")
    for f in comparison.files:
        ok(f"  {f.match.value:15} {f.path}" + (f"  ({f.detail})" if f.detail else ""))


@app.command("submit")
def submit(
    ctx: typer.Context,
    slug: str = typer.Argument(..., help="The project."),
    notebook: str = typer.Argument(..., help="Path of the notebook inside the project workspace."),
    param: list[str] = typer.Option([], "-p", "--param", help="A papermill parameter NAME=VALUE (repeatable)."),
    wait: bool = typer.Option(False, "--wait", help="Run it now in this process and wait for the result."),
) -> None:
    """Queue a run of a workspace notebook with parameters."""
    params = service.parse_parameters(param)
    with acting(ctx) as (session, actor):
        run = service.submit_job(session, actor, settings(), slug, notebook, params)
        run_id = run.id
    ok(f"queued run {run_id} of {notebook} in {slug}")
    if wait:
        _report(_wait_for(run_id))


@app.command("rerun")
def rerun(
    ctx: typer.Context,
    run_id: int = typer.Argument(..., help="The run to repeat."),
    wait: bool = typer.Option(False, "--wait", help="Run it now and report whether the outputs match."),
) -> None:
    """Repeat a succeeded run from its record (same notebook, parameters and, if still
    present, image) and compare the outputs."""
    with acting(ctx) as (session, actor):
        run = service.rerun_job(session, actor, settings(), run_id)
        new_id = run.id
    ok(f"queued run {new_id}, a rerun of run {run_id}")
    if wait:
        _report(_wait_for(new_id))


@app.command("list")
def list_(
    ctx: typer.Context,
    project: Optional[str] = typer.Option(None, "--project", help="Only this project's runs."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Runs you may see, newest first."""
    with acting(ctx) as (session, actor):
        runs = [service.provenance_of(r) for r in service.list_jobs(session, actor, project)]
    if as_json:
        print_json([r.as_json() for r in runs])
        return
    print_table("Job runs", ["run", "project", "notebook", "status", "by", "created", "rerun of", "reproduced"], [
        (r.run_id, r.project, r.notebook, r.status.value, r.submitted_by, r.created_at[:19], r.rerun_of or "",
         "" if r.comparison is None else ("yes" if r.comparison.get("matches") else "NO"))
        for r in runs
    ])


@app.command("show")
def show(ctx: typer.Context, run_id: int, as_json: bool = JSON_OPTION) -> None:
    """A run's provenance: inputs, image, views, times, status and output checksums."""
    with acting(ctx) as (session, actor):
        prov = service.get_run_provenance(session, actor, run_id)
    if as_json:
        print_json(prov.as_json())
        return
    ok(f"run {prov.run_id} of {prov.notebook} in {prov.project}: {prov.status.value}"
       + (f" ({prov.error})" if prov.error else ""))
    ok(f"  submitted by {prov.submitted_by} at {prov.created_at}; ran {prov.started_at or '-'} .. {prov.finished_at or '-'}"
       f"; exit code {prov.exit_code if prov.exit_code is not None else '-'}")
    ok(f"  notebook sha256 {prov.notebook_sha256}")
    ok(f"  parameters {prov.parameters}")
    ok(f"  image {prov.image or '-'} ({prov.image_digest or 'not started'})")
    for view in prov.views:
        ok(f"  dataset {view['dataset']} version {view.get('version')} view sha256 {view['sha256']}")
    ok(f"  outputs in {prov.output_dir}/:")
    for path, digest in prov.outputs.items():
        ok(f"    {digest}  {path}")
    if prov.comparison is not None:
        _print_comparison(prov)


@app.command("logs")
def logs(
    ctx: typer.Context,
    run_id: int,
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing until the run ends."),
) -> None:
    """The run's log: papermill's progress and every cell's output."""
    from enclave.jobs.runner import follow_log

    with acting(ctx) as (session, actor):
        service.get_job(session, actor, run_id)
    follow_log(settings(), run_id, lambda text: typer.echo(text, nl=False), follow=follow)


@app.command("cancel")
def cancel(ctx: typer.Context, run_id: int) -> None:
    """Cancel a queued or running run; a running container is stopped at once."""
    with acting(ctx) as (session, actor):
        run = service.cancel_job(session, actor, run_id)
        name = run.container_name
    if name:
        import docker

        from enclave.jobs.runner import stop_container

        try:
            stop_container(docker.from_env(), name)
        except docker.errors.DockerException:
            pass  # the worker also stops it when it sees the cancellation
    ok(f"cancelled run {run_id}")


@app.command("worker")
def worker(once: bool = typer.Option(False, "--once", help="Stop when the queue is empty.")) -> None:
    """Execute queued runs, up to the policy's job_max_concurrent at a time."""
    runner = _runner()
    ok(f"job worker: up to {runner.policy.job_max_concurrent} run(s) at a time, image {runner.policy.image}")
    done = runner.work(once=once)
    if once:
        ok(f"job worker: ran {len(done)} run(s); the queue is empty")
