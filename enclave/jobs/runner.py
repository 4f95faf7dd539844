"""Executing queued runs: papermill in a fresh workspace container, one per run.

The container gets exactly the isolation of an interactive server: the same image and
limits (``enclave.sandbox.host_config`` and ``create_kwargs``, with the job memory limit), the same mounts
(``enclave.hub.access.project_mounts``: the project's workspace and its live views,
read-only). Jobs get no network at all (``network_mode="none"``), stricter than the
servers' internal network, which only exists so the hub can reach them.

The stored copy of the notebook goes in on the container's standard input (papermill
reads ``-``), so nothing but the sandbox's own mounts is ever bound into it. The executed
notebook and whatever the notebook writes to ``$ENCLAVE_JOB_OUTPUT`` land in
``<workspace>/outbox/jobs/<run id>/``. A rerun (a reviewer's check) sees the workspace
read-only and writes to its own folder outside it, ``$ENCLAVE_HOME/jobs/reruns/<run id>/``
(mounted at ``/home/jovyan/rerun-output``), so a check never adds to or changes the
researchers' outbox. The log (papermill's, with every cell's output) is kept outside the
workspace in ``$ENCLAVE_HOME/jobs/runs/<run id>/log.txt``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import shutil
import socket
import stat
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from enclave.clock import utcnow
from enclave.config import Settings
from enclave.db.models import Grant, JobRun, Project
from enclave.db.session import unit_of_work
from enclave.enums import ContainerEngine, LostNodeAction
from enclave.errors import EnclaveError, NotFound
from enclave.hub.swarm import check_engine
from enclave.hub.access import NOTEBOOK_GID, NOTEBOOK_UID, default_views, prepare_workspace, project_mounts
from enclave.jobs import service
from enclave.jobs.provenance import comparison, records_json, view_record
from enclave.jobs.states import FINAL, JobStatus
from enclave.sandbox import (
    RERUN_OUTPUT_PATH,
    WORKSPACE_PATH,
    ContainerPolicy,
    Mount,
    create_kwargs,
    host_config,
    load_container_policy,
)
from enclave.workspace_fs import WorkspaceDir, open_tree, open_workspace

CONTAINER_PREFIX = "enclave-job-"
JOB_LABEL = "org.enclave.job"
# How often the worker looks at the clock and the database while a run executes.
POLL_SECONDS = 1.0


@dataclass(frozen=True)
class JobView:
    """A view a run sees: mounted at /data/<dataset>, recorded with its version."""

    dataset: str
    path: Path
    version: int | None = None
    version_sha256: str | None = None


# What a project's runs see; the default asks the catalogue, tests give their own.
JobViews = Callable[[Session, Project], list[JobView]]


def catalogue_views(session: Session, project: Project) -> list[JobView]:
    """The project's live views (what its servers mount), with the granted versions."""
    views = []
    for name, path in default_views(session, project):
        grant = session.scalars(
            select(Grant).where(Grant.project_id == project.id, Grant.view_path == str(path))
        ).first()
        version = grant.dataset_version if grant is not None else None
        views.append(JobView(name, Path(path), version.version if version else None,
                             version.sha256 if version else None))
    return views


@dataclass
class Runner:
    """Everything a worker needs: where the state is, the container policy, the engine."""

    settings: Settings
    policy: ContainerPolicy
    client: Any  # docker.DockerClient
    views: JobViews = catalogue_views
    # Container names are <prefix><run id>-<random>: unique even when several enclaves
    # (a demo, a test run) share one engine. Tests use their own prefix.
    container_prefix: str = CONTAINER_PREFIX
    # A running run without a container is taken as lost only after this long (recover).
    recover_grace_seconds: float = 120.0
    threads: list[threading.Thread] = field(default_factory=list)

    # The engine this runner's containers run on; policies/containers.yaml must name it.
    engine: ClassVar[ContainerEngine] = ContainerEngine.DOCKER

    @classmethod
    def from_settings(cls, settings: Settings) -> Runner:
        """A runner under the policy of ``settings``, connected to the engine; refuses a
        policy naming another engine (and Swarm on SQLite) with one line saying why."""
        import docker

        policy = load_container_policy(settings.policies_dir / "containers.yaml")
        check_engine(settings, policy, cls.engine)
        try:
            client = docker.from_env()
            client.ping()
        except docker.errors.DockerException:
            raise EnclaveError("cannot reach the Docker engine: start it (scripts/ensure-docker.sh) and retry") from None
        return cls(settings, policy, client)

    # --- the queue -------------------------------------------------------------------

    def run_next(self, run_id: int | None = None) -> int | None:
        """Claim one queued run (or ``run_id``) and execute it to the end; its id, or None
        when nothing could start (queue empty or the concurrency limit reached)."""
        started = self._claim_and_start(run_id)
        if started is None:
            return None
        self._execute(*started)
        return started[0]

    def recover(self) -> list[int]:
        """Fail the runs marked running whose container is gone or has stopped: their worker
        died (or the host restarted) before recording the outcome. Without this they would
        hold a place of the concurrency limit for ever. Returns their ids."""
        import docker.errors

        # Another live worker creates its container a moment after claiming: a run that
        # started within the grace period and has no container yet is not lost.
        grace = dt.timedelta(seconds=self.recover_grace_seconds)
        with unit_of_work(self.settings) as session:
            running = [(r.id, r.container_name, r.started_at) for r in
                       session.scalars(select(JobRun).where(JobRun.status == JobStatus.RUNNING))]
        lost = []
        for run_id, name, started in running:
            try:
                alive = bool(name) and self._alive(name)
            except docker.errors.NotFound:
                alive = started is not None and utcnow() - started < grace
            if not alive:
                self._fail(run_id, "the worker stopped while the run was executing: submit it again")
                lost.append(run_id)
        return lost

    def _alive(self, name: str) -> bool:
        """Whether the run's container still runs; docker.errors.NotFound if it is gone."""
        return self.client.containers.get(name).status in ("created", "running")

    def work(self, *, once: bool = False, idle_sleep: float = 2.0) -> list[int]:
        """Run queued runs, up to the policy's concurrency at a time, in threads. With
        ``once``, stop when the queue is empty and every started run has finished. Starts
        by failing runs a dead worker left behind (:meth:`recover`)."""
        self.recover()
        done: list[int] = []
        while True:
            self.threads = [t for t in self.threads if t.is_alive()]
            started = None
            if len(self.threads) < self.policy.job_max_concurrent:
                started = self._claim_and_start(None)
            if started is not None:
                done.append(started[0])
                thread = threading.Thread(target=self._execute, args=started, name=f"job-{started[0]}", daemon=True)
                thread.start()
                self.threads.append(thread)
                continue
            if once and not self.threads and not self._queued():
                return done
            time.sleep(idle_sleep if not once else POLL_SECONDS)

    def _queued(self) -> bool:
        with unit_of_work(self.settings) as session:
            return session.scalars(select(JobRun.id).where(JobRun.status == JobStatus.QUEUED).limit(1)).first() is not None

    # --- one run ---------------------------------------------------------------------

    def _claim_and_start(self, run_id: int | None) -> tuple[int, str, dict[str, Any]] | None:
        """Claim a run and record its start (image, views, limits) in one transaction;
        return (run id, container name, docker create kwargs). A run that cannot start
        (a view refused, the image missing) is failed with the reason, never retried."""
        claimed: int | None = None
        try:
            with unit_of_work(self.settings) as session:
                run = service.claim_next(session, self.policy.job_max_concurrent, run_id)
                if run is None:
                    return None
                claimed = run.id
                views = self.views(session, run.project)
                rerun = run.rerun_of_id is not None
                # A rerun is a check: it sees the workspace read-only and writes only to its
                # own folder in the reviewers' area, never into the researchers' outbox.
                mounts = [
                    Mount(source=str(m.source), target=m.target, read_only=m.read_only or rerun)
                    for m in project_mounts(self.settings, session, run.project,
                                            views=lambda *_: [(v.dataset, v.path) for v in views])
                ]
                if rerun:
                    mounts.append(Mount(source=str(self._prepare_output(run)), target=RERUN_OUTPUT_PATH, read_only=False))
                image_name, digest = self._image(session, run)
                name = f"{self.container_prefix}{run.id}-{secrets.token_hex(3)}"
                # Created from the digest: exactly the image recorded, even if the name is re-tagged.
                kwargs = self._create_kwargs(run, mounts, digest, name, views)
                records = [view_record(v.dataset, v.path, v.version, v.version_sha256) for v in views]
                service.start_run(session, run, image=image_name, image_digest=digest, container_name=name,
                                  views=records_json(records), limits=self._limits())
        except EnclaveError as exc:
            if claimed is None:
                raise
            self._fail(claimed, f"could not start: {exc}")
            return None
        return claimed, name, kwargs

    def _image(self, session: Session, run: JobRun) -> tuple[str, str]:
        """The image's name and digest (its id): a
        rerun uses its original's exact image while the engine still has it; a new run uses
        the policy's image as it is now."""
        import docker.errors

        if run.rerun_of_id is not None:
            original = session.get(JobRun, run.rerun_of_id)
            if original is not None and original.image_digest:
                try:
                    found = self.client.images.get(original.image_digest)
                    return original.image or self.policy.image, found.id
                except docker.errors.ImageNotFound:
                    pass
        try:
            found = self.client.images.get(self.policy.image)
            return self.policy.image, found.id
        except docker.errors.ImageNotFound:
            raise EnclaveError(f"the notebook image {self.policy.image} is missing: build it with scripts/build-images.sh") from None

    def _limits(self) -> dict[str, Any]:
        return {"timeout_seconds": self.policy.job_timeout_seconds, "mem_limit": self.policy.job_mem_limit,
                "cpu_limit": self.policy.cpu_limit, "pids_limit": self.policy.pids_limit, "network": "none"}

    def _create_kwargs(self, run: JobRun, mounts: list[Mount], image: str, name: str,
                       views: list[JobView]) -> dict[str, Any]:
        if run.rerun_of_id is None:
            self._prepare_output(run)
            container_out = f"{WORKSPACE_PATH}/{service.OUTPUTS_RELDIR}/{run.id}"
        else:
            container_out = RERUN_OUTPUT_PATH
        cwd = PurePosixPath(WORKSPACE_PATH) / PurePosixPath(run.notebook).parent
        # The sandbox's own two halves, as DockerSpawner receives them; then only what a
        # batch run needs besides: no network at all, and stdin to receive the notebook.
        host = host_config(self.policy, mounts, job=True) | {"network_mode": "none"}
        create = create_kwargs(self.policy)
        create.update(
            image=image,
            name=name,
            command=[
                "papermill", "-", f"{container_out}/{service.executed_name(run)}",
                "--cwd", str(cwd), "-y", json.dumps(run.parameters_json),
                "--log-output", "--no-progress-bar", "--kernel", "python3", "--language", "python",
            ],
            environment={
                "ENCLAVE_JOB_RUN": str(run.id),
                "ENCLAVE_JOB_OUTPUT": container_out,
                # What enclave.safe records in each output's evidence: the versions read.
                "ENCLAVE_DATASETS": json.dumps({v.dataset: str(v.version) for v in views if v.version is not None}),
            },
            stdin_open=True,  # with detach False, docker-py sets StdinOnce: EOF ends the input
            labels={**create.get("labels", {}), JOB_LABEL: str(run.id)},
        )
        create["host_config"] = host
        return create

    def _prepare_output(self, run: JobRun) -> Path:
        """Create the run's output folder afresh for the notebook user, never through a link:
        ``outbox/jobs/<run>/`` of the workspace, or for a rerun its folder of the reviewers'
        area (``$ENCLAVE_HOME/jobs/reruns/<run>/``, which no container but the rerun's sees).

        Researchers can change anything inside their workspace, including replacing
        ``outbox`` or ``outbox/jobs`` with a symbolic link to a host path; the worker (root)
        must then neither create nor chown anything there. Every step is taken relative to
        an open folder with no link followed (``enclave.workspace_fs``), so a link swapped
        in meanwhile is refused too.
        """
        owner = (NOTEBOOK_UID, NOTEBOOK_GID)
        if run.rerun_of_id is not None:
            reruns = service.rerun_output_dir(self.settings, run.id).parent
            reruns.mkdir(parents=True, exist_ok=True)
            with open_tree(reruns) as folder:
                folder.mkdir_fresh(str(run.id), owner=owner).close()
            return service.output_dir(self.settings, run)
        prepare_workspace(self.settings, run.project.slug)
        with open_workspace(self.settings.workspaces_dir, run.project.slug) as workspace, \
                workspace.opendir(service.OUTPUTS_RELDIR, create=True, owner=owner) as jobs:
            jobs.mkdir_fresh(str(run.id), owner=owner).close()
        return service.output_dir(self.settings, run)

    def _execute(self, run_id: int, name: str, kwargs: dict[str, Any]) -> None:
        """Create, feed, watch and clean up the run's container; record the outcome."""
        import docker.errors

        log = service.log_path(self.settings, run_id)
        log.parent.mkdir(parents=True, exist_ok=True)
        container = None
        try:
            with unit_of_work(self.settings) as session:
                run = session.get(JobRun, run_id)
                notebook = service.stored_notebook(self.settings, run.notebook_sha256).read_bytes()
                if run.status is not JobStatus.RUNNING:  # cancelled between claim and now
                    return
            create = dict(kwargs)
            create["host_config"] = self.client.api.create_host_config(**create["host_config"])
            container = self.client.containers.get(self.client.api.create_container(**create)["Id"])
            sock = container.attach_socket(params={"stdin": 1, "stream": 1})
            container.start()
            # docker-py wraps the attached socket; closing our sending side is the EOF
            # papermill waits for, so reach the socket itself.
            raw = getattr(sock, "_sock", sock)
            raw.sendall(notebook)
            raw.shutdown(socket.SHUT_WR)
            sock.close()
            logger = threading.Thread(target=_copy_logs, args=(container, log), daemon=True)
            logger.start()
            outcome = self._watch(run_id, container)
            logger.join(timeout=10)
            self._record(run_id, container, outcome)
        except docker.errors.DockerException as exc:
            self._fail(run_id, f"the container failed: {str(exc).splitlines()[0]}")
        except Exception as exc:  # noqa: BLE001 - a run must never stay "running" forever
            self._fail(run_id, f"the worker failed: {type(exc).__name__}: {exc}")
        finally:
            if container is not None:
                try:
                    container.remove(force=True)
                except docker.errors.DockerException:
                    pass

    def _watch(self, run_id: int, container: Any) -> str | None:
        """Wait for the container to exit; stop it on time-out or cancellation. Returns why
        it was stopped, or None if it ended by itself."""
        import requests.exceptions

        deadline = time.monotonic() + self.policy.job_timeout_seconds
        while True:
            try:
                container.wait(timeout=POLL_SECONDS)
                return None
            except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
                pass
            if time.monotonic() > deadline:
                container.kill()
                return f"time limit of {self.policy.job_timeout_seconds} s exceeded: the job was stopped"
            with unit_of_work(self.settings) as session:
                status = session.scalar(select(JobRun.status).where(JobRun.id == run_id))
            if status is JobStatus.CANCELLED:
                container.kill()
                return "cancelled"

    def _record(self, run_id: int, container: Any, stopped: str | None) -> None:
        container.reload()
        state = container.attrs.get("State", {})
        exit_code = state.get("ExitCode")
        with unit_of_work(self.settings) as session, ExitStack() as stack:
            run = session.get(JobRun, run_id)
            # The job could have replaced its output directory (or outbox/) with a link to a
            # host path: then nothing there is read, and the run fails. Everything is read
            # through the open folder, never by name (enclave.workspace_fs).
            out = _open_outputs(self.settings, run, stack)
            outputs = {} if out is None else out.manifest()
            error = stopped
            if error is None and out is None:
                error = "the output directory was replaced by a link: outputs not recorded"
            if error is None and state.get("OOMKilled"):
                error = f"memory limit of {self.policy.job_mem_limit} exceeded: the job was stopped"
            if error is None and exit_code != 0:
                error = (notebook_error(out, service.executed_name(run)) if out is not None else None) \
                    or _log_tail(service.log_path(self.settings, run_id))
            succeeded = error is None and exit_code == 0
            compared = None
            original = session.get(JobRun, run.rerun_of_id) if run.rerun_of_id is not None else None
            original_out = _open_outputs(self.settings, original, stack) if original is not None else None
            if succeeded and original is not None and original_out is None:
                error, succeeded = f"the outputs of run {original.id} are no longer a plain directory: cannot compare", False
            if succeeded and original is not None and original_out is not None and out is not None:
                compared = comparison(
                    service.provenance_of(original).inputs(), {
                        "notebook_sha256": run.notebook_sha256, "parameters": run.parameters_json,
                        "image_digest": run.image_digest, "views": run.views_json},
                    original.outputs_json, original_out,
                    outputs, out,
                ).as_json()
            service.finish_run(session, run, succeeded=succeeded, exit_code=exit_code, outputs=outputs,
                               error=error, comparison=compared)

    def _lost(self, run_id: int, reason: str) -> None:
        """The run's node was lost while it executed (``reason`` says how): per the policy's
        ``job_lost_node``, fail it with the reason, or delete its partial outputs and put it
        back in the queue, at most ``job_lost_node_retries`` times (then it fails). Outputs
        that cannot be deleted fail the run (fail closed: nothing half-written stays)."""
        log = service.log_path(self.settings, run_id)
        with unit_of_work(self.settings) as session:
            run = session.get(JobRun, run_id)
            if run is None or run.status is not JobStatus.RUNNING:
                return  # cancelled meanwhile
            retries = service.requeue_count(session, run)
            if self.policy.job_lost_node is LostNodeAction.FAIL:
                error = f"{reason}: submit it again"
            elif retries >= self.policy.job_lost_node_retries:
                error = f"{reason}, after {retries} retries (job_lost_node_retries): submit it again"
            else:
                try:
                    discarded = _discard_outputs(self.settings, run)
                except (EnclaveError, OSError) as exc:
                    error = f"{reason}, and its partial outputs could not be deleted ({exc}): ask an admin"
                else:
                    error = ""
                    service.requeue_run(session, run, reason, attempt=retries + 1, discarded=discarded)
            if error:
                service.fail_run(session, run, error)
        if not error:
            log.parent.mkdir(parents=True, exist_ok=True)
            with open(log, "a") as fh:
                fh.write(f"[enclave] attempt {retries + 1} lost: {reason}; {discarded} partial output"
                         f" file(s) deleted, queued again\n")

    def _fail(self, run_id: int | None, error: str) -> None:
        if run_id is None:
            return
        with unit_of_work(self.settings) as session:
            run = session.get(JobRun, run_id)
            if run is not None and run.status not in FINAL:
                service.fail_run(session, run, error)


def runner_for(settings: Settings) -> Runner:
    """The job runner the policy's engine calls for: :class:`Runner` on one host's engine,
    ``SwarmRunner`` (enclave.jobs.swarm_runner) on Docker Swarm."""
    policy = load_container_policy(settings.policies_dir / "containers.yaml")
    if policy.engine is ContainerEngine.SWARM:
        from enclave.jobs.swarm_runner import SwarmRunner

        return SwarmRunner.from_settings(settings)
    return Runner.from_settings(settings)


def _open_outputs(settings: Settings, run: JobRun, stack: ExitStack) -> WorkspaceDir | None:
    """The run's output folder, opened without following a link; None if any part of the
    way is a link or not a folder (the job or a member replaced it)."""
    try:
        if run.rerun_of_id is not None:
            return stack.enter_context(open_tree(service.rerun_output_dir(settings, run.id)))
        workspace = stack.enter_context(open_workspace(settings.workspaces_dir, run.project.slug))
        return stack.enter_context(workspace.opendir(service.OUTPUTS_RELDIR / str(run.id)))
    except EnclaveError:
        return None


def _discard_outputs(settings: Settings, run: JobRun) -> int:
    """Delete the run's output folder (what a lost attempt wrote), never through a link;
    returns how many files it held. A link in its place is removed, not followed."""
    with ExitStack() as stack:
        if run.rerun_of_id is not None:
            parent = stack.enter_context(open_tree(service.rerun_output_dir(settings, run.id).parent))
        else:
            workspace = stack.enter_context(open_workspace(settings.workspaces_dir, run.project.slug))
            try:
                parent = stack.enter_context(workspace.opendir(service.OUTPUTS_RELDIR))
            except NotFound:
                return 0
        name = str(run.id)
        try:
            info = os.stat(name, dir_fd=parent.fd, follow_symlinks=False)
        except FileNotFoundError:
            return 0
        if not stat.S_ISDIR(info.st_mode):
            os.unlink(name, dir_fd=parent.fd)
            return 1
        with parent.opendir(name) as folder:
            count = sum(1 for _ in folder.walk())
        # rmtree by descriptor: it never follows a link planted below (avoids_symlink_attacks).
        shutil.rmtree(name, dir_fd=parent.fd)
        return count


def _copy_logs(container: Any, log: Path) -> None:
    with open(log, "ab") as fh:
        for chunk in container.logs(stream=True, follow=True, stdout=True, stderr=True):
            fh.write(chunk)
            fh.flush()


def _log_tail(log: Path, lines: int = 3) -> str:
    try:
        tail = [line for line in log.read_text(errors="replace").splitlines() if line.strip()][-lines:]
    except OSError:
        tail = []
    return "the notebook failed: " + (" | ".join(tail) if tail else "no output (see 'enclave job logs')")


# Cells papermill adds to the executed notebook (the error banner, injected parameters).
PAPERMILL_TAGS = frozenset({"papermill-error-cell-tag", "injected-parameters"})


def notebook_error(outputs: WorkspaceDir, name: str) -> str | None:
    """The first error the executed notebook ``name`` of a run's output folder holds, as
    'cell N: Name: message', counting the researcher's own cells only."""
    try:
        nb = json.loads(outputs.read_bytes(name, max_bytes=service.MAX_NOTEBOOK_BYTES * 4))
    except (EnclaveError, ValueError):
        return None
    if not isinstance(nb, dict):
        return None
    cells = [c for c in nb.get("cells", []) if not PAPERMILL_TAGS & set(c.get("metadata", {}).get("tags", []))]
    for index, cell in enumerate(cells, start=1):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                return f"the notebook failed in cell {index}: {out.get('ename')}: {out.get('evalue')}"
    return None


def stop_container(client: Any, name: str | None) -> bool:
    """Kill a run's container now (cancel); False if it was not running."""
    import docker.errors

    if not name:
        return False
    try:
        client.containers.get(name).kill()
    except docker.errors.DockerException:
        return False
    return True


def follow_log(settings: Settings, run_id: int, write: Callable[[str], None], *, follow: bool,
               poll: float = 0.5) -> None:
    """Write the run's log so far; with ``follow``, keep writing until the run is final."""
    path = service.log_path(settings, run_id)
    offset = 0
    while True:
        if path.exists():
            with open(path, "rb") as fh:
                fh.seek(offset)
                data = fh.read()
                offset += len(data)
            if data:
                write(data.decode("utf-8", errors="replace"))
        if not follow:
            return
        with unit_of_work(settings) as session:
            status = session.scalar(select(JobRun.status).where(JobRun.id == run_id))
        if status in FINAL:
            follow = False  # one more read picks up the last lines
            time.sleep(poll)
            continue
        time.sleep(poll)


