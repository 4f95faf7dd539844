"""Batch jobs on Docker Swarm: each run a service that is never restarted.

``SwarmRunner`` is the job ``Runner`` with one thing changed, how a run's container is
made: a Swarm service built by ``enclave.hub.swarm.service_spec`` from the same sandbox
settings, mounts and job memory limit, placed by the engine on any node that sees the
shared store. What differs from the plain engine, and why:

- the notebook goes in as a Swarm config (a read-only file), not on standard input,
  which services do not have;
- the run gets an internal overlay network of its own with nothing else on it, standing
  for ``network_mode=none`` (a service without a network would be on the node's default
  bridge, with a route out);
- the log is fetched from the engine when the run ends.

Claims, the concurrency limit, time-outs, cancellation, outputs and provenance are the
Runner's own code; with PostgreSQL several workers on several nodes share the queue. A run
whose node is lost while it executes is failed with the reason or, with
``job_lost_node: retry``, queued again with its partial outputs deleted (``Runner._lost``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from enclave.db.models import JobRun
from enclave.db.session import unit_of_work
from enclave.enums import ContainerEngine
from enclave.errors import EnclaveError
from enclave.hub import swarm
from enclave.jobs import service
from enclave.jobs.runner import Runner
from enclave.jobs.states import JobStatus
from enclave.sandbox import Mount

# Where the run's notebook appears inside its container (a Swarm config, read-only).
NOTEBOOK_TARGET = "/run/enclave/notebook.ipynb"
# The engine's limit on the size of one config.
MAX_CONFIG_BYTES = 500 * 1024
_FINAL_TASK_STATES = {"complete", "failed", "shutdown", "rejected", "orphaned", "remove"}


class ServiceRun:
    """One run's service seen through the calls the Runner makes of a container: wait,
    kill, reload and the exit state in ``attrs``."""

    def __init__(self, service: Any) -> None:
        self.service = service
        self.killed = False
        self.lost = False  # its node went away: the engine cannot give its logs
        self.task: dict[str, Any] = {}
        self.attrs: dict[str, Any] = {"State": {}}

    def _final_task(self) -> dict[str, Any] | None:
        tasks = self.service.tasks()
        final = [t for t in tasks if t["Status"]["State"] in _FINAL_TASK_STATES]
        if final and len(final) == len(tasks):
            return final[0]
        for task in tasks:
            lost = self._lost_node(task)
            if lost:
                # The engine keeps reporting a task of a lost node as running: it has ended.
                self.lost = True
                return {**task, "Status": {"State": "orphaned", "Err": lost}}
        return None

    def _lost_node(self, task: dict[str, Any]) -> str:
        import docker.errors

        node_id = task.get("NodeID")
        if not node_id or task["Status"]["State"] in _FINAL_TASK_STATES:
            return ""
        try:
            node = self.service.client.nodes.get(node_id)
        except docker.errors.NotFound:
            return "the node of the run left the swarm while it was executing"
        state = node.attrs["Status"]["State"]
        if state == "ready":
            return ""
        return f"the node {node.attrs['Description']['Hostname']} went {state} while the run was executing"

    def wait(self, timeout: float) -> None:
        import requests.exceptions

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._final_task() is not None:
                return
            time.sleep(0.25)
        raise requests.exceptions.ReadTimeout("still running")

    def kill(self) -> None:
        self.killed = True
        self.service.scale(0)

    def reload(self) -> None:
        task = self._final_task() or {}
        self.task = task
        status = task.get("Status", {})
        code = status.get("ContainerStatus", {}).get("ExitCode")
        if code is None and not self.killed:
            code = -1  # never ran (rejected: image missing, a mount the node lacks)
        # The engine kills a task at its memory limit with SIGKILL (exit 137); a task the
        # worker did not kill and that exits so was stopped by its limit.
        self.attrs = {"State": {"ExitCode": code, "OOMKilled": code == 137 and not self.killed}}

    def node(self) -> str:
        """The host name of the node the task ran on ('' if it was never placed)."""
        import docker.errors

        node_id = self.task.get("NodeID")
        if not node_id:
            return ""
        try:
            return self.service.client.nodes.get(node_id).attrs["Description"]["Hostname"]
        except docker.errors.NotFound:
            return node_id

    def error(self) -> str:
        return str(self.task.get("Status", {}).get("Err") or "")

    def write_logs(self, log: Path) -> None:
        with open(log, "ab") as fh:
            for chunk in self.service.logs(stdout=True, stderr=True, follow=False):
                fh.write(chunk)


class SwarmRunner(Runner):
    """The job runner for policies/containers.yaml engine: swarm."""

    engine = ContainerEngine.SWARM

    def _image(self, session: Any, run: JobRun) -> tuple[str, str]:
        """The Runner's image as every node gets it (``swarm.check_image``): with a registry
        its pinned reference <registry>/<name>@sha256:<digest>, which the run records."""
        name, image_id = super()._image(session, run)
        return name, swarm.check_image(self.client, image_id, self.settings.swarm_registry)

    def _alive(self, name: str) -> bool:
        """A run's service still runs: a task not yet final, on a node that is up (the
        engine keeps reporting a task of a lost node as running)."""
        import docker.errors

        for task in self.client.services.get(name).tasks():
            if task["Status"]["State"] in _FINAL_TASK_STATES:
                continue
            if not task.get("NodeID"):
                return True  # not placed yet
            try:
                node = self.client.nodes.get(task["NodeID"])
            except docker.errors.NotFound:
                continue  # the node left the swarm
            if node.attrs["Status"]["State"] == "ready":
                return True
        return False

    def _create_kwargs(self, run: JobRun, mounts: list[Mount], image: str, name: str,
                       views: list[Any]) -> dict[str, Any]:
        create = super()._create_kwargs(run, mounts, image, name, views)
        args = list(create["command"])
        if args[:2] != ["papermill", "-"]:
            raise EnclaveError("the job command changed: extend enclave.jobs.swarm_runner")
        args[1] = NOTEBOOK_TARGET
        return {"mounts": mounts, "image": image, "args": args, "env": create["environment"],
                "labels": create["labels"]}

    def _execute(self, run_id: int, name: str, kwargs: dict[str, Any]) -> None:
        import docker.errors

        log = service.log_path(self.settings, run_id)
        log.parent.mkdir(parents=True, exist_ok=True)
        made: dict[str, Any] = {}
        try:
            with unit_of_work(self.settings) as session:
                run = session.get(JobRun, run_id)
                notebook = service.stored_notebook(self.settings, run.notebook_sha256).read_bytes()
                if run.status is not JobStatus.RUNNING:  # cancelled between claim and now
                    return
            if len(notebook) > MAX_CONFIG_BYTES:
                self._fail(run_id, f"the notebook is larger than {MAX_CONFIG_BYTES // 1024} KiB, what a Swarm"
                                   " job takes: clear its outputs and submit it again")
                return
            made["config"] = self.client.configs.create(name=name, data=notebook, labels=kwargs["labels"])
            made["network"] = swarm.ensure_overlay(self.client, name, attachable=False, labels=kwargs["labels"])
            marker = swarm.ensure_marker(self.settings.home)
            spec = swarm.service_spec(
                self.policy, kwargs["mounts"], name=name, image=kwargs["image"], args=kwargs["args"],
                env=kwargs["env"], labels=kwargs["labels"], network=name,
                constraints=swarm.placement_constraints(marker), job=True,
                configs=[{"ConfigID": made["config"].id, "ConfigName": name,
                          "File": {"Name": NOTEBOOK_TARGET, "UID": "0", "GID": "0", "Mode": 0o444}}])
            made["service"] = self.client.services.get(self.client.api.create_service(**spec)["ID"])
            handle = ServiceRun(made["service"])
            outcome = self._watch(run_id, handle)
            handle.reload()
            with open(log, "a") as fh:
                fh.write(f"[enclave] run {run_id} ran on node {handle.node() or '(none)'}\n")
            if handle.lost and outcome is None:
                # Failed or queued again per policy (job_lost_node); the engine has no log of it.
                self._lost(run_id, handle.error())
                return
            if not handle.lost:
                handle.write_logs(log)
            if handle.error() and handle.attrs["State"]["ExitCode"] in (-1, None):
                with open(log, "a") as fh:
                    fh.write(f"the engine could not run the job: {handle.error()}\n")
            self._record(run_id, handle, outcome)
        except docker.errors.DockerException as exc:
            self._fail(run_id, f"the service failed: {str(exc).splitlines()[0]}")
        except Exception as exc:  # noqa: BLE001 - a run must never stay "running" forever
            self._fail(run_id, f"the worker failed: {type(exc).__name__}: {exc}")
        finally:
            _remove(self.client, made)


def _remove(client: Any, made: dict[str, Any]) -> None:
    """Remove the run's service, then its network and config once no task holds them."""
    import docker.errors

    if "service" in made:
        try:
            made["service"].remove()
        except docker.errors.DockerException:
            pass
    for _ in range(60):
        pending = False
        for key in ("network", "config"):
            if key not in made:
                continue
            try:
                obj = made[key]
                if key == "network":
                    client.networks.get(obj).remove()
                else:
                    obj.remove()
                made.pop(key)
            except docker.errors.NotFound:
                made.pop(key)
            except docker.errors.APIError:
                pending = True  # still in use by the task being shut down
        if not pending:
            return
        time.sleep(0.5)
