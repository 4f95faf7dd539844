"""Verifying a table's evidence by re-running its query, never trusting what the sidecar says.

A researcher writes both the table and its ``.evidence.json``, so the sidecar proves
nothing by itself. On submit (and in ``enclave egress check --project``) the enclave:

1. reads the sidecar as plain data (it is never evaluated on the host) and refuses it when
   the file's sha256 differs, when it records no query, or when the query reads a dataset
   the project is not granted now, or a different version or view of it (stale evidence);
2. re-runs the query in a fresh job container (:class:`Replayer`): the notebook image
   under ``enclave.sandbox`` with the job limits, only the project's views mounted
   (read-only), no network at all, a time and memory bound, removed afterwards. The
   sidecar goes in on standard input and the result comes back on standard output, so no
   host directory is bound into the container and nothing is read through a link;
3. trusts the evidence only when the recomputed table equals the submitted file (parsed
   as a table, and byte for byte) and the recomputed cells equal the sidecar's
   (:func:`compare`). The checker then gets the *recomputed* cells.

The replay computes under the site's disclosure policy (``policies/disclosure.yaml``, passed
in on standard input), never under the policy the sidecar names; a sidecar naming other
rules is refused before anything runs (:func:`policy_mismatch`). Workspace containers read
the same file, mounted read-only (``enclave.hub.access.publish_container_policies``), so a
table made in the enclave is made under the rules it is replayed under.

Anything else (including any failure of the engine or the container) means
"not reproducible": the file is checked as a plain file, with no trust at all.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import secrets
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import Any

import polars as pl
from pydantic import ValidationError

from enclave.config import Settings
from enclave.disclosure.evidence import Evidence, EvidenceCell
from enclave.disclosure.policy import DisclosurePolicy
from enclave.disclosure.verdict import Verdict
from enclave.egress.policy import EvidencePolicy
from enclave.errors import InvalidInput
from enclave.safe.query import Query, parse_query
from enclave.safe.replay import OUTPUT_FORMAT, SEPARATORS, ReplayInput, ReplayOutput
from enclave.sandbox import ContainerPolicy, Mount, container_kwargs, load_container_policy

EVIDENCE_RULE = "evidence"
CONTAINER_PREFIX = "enclave-replay-"
REPLAY_LABEL = "org.enclave.replay"
REPLAY_COMMAND = ["python", "-m", "enclave.safe.replay"]
# Figures computed twice in the same image may differ in the last bits of a float sum.
FLOAT_TOLERANCE = 1e-9
FLOAT_FIELDS = ("total", "top1", "top2", "topn", "nk_share", "p_ratio")
EXACT_FIELDS = ("row", "column", "margin", "n", "negatives", "missing", "verdicts", "status", "suppressed")


class EvidenceStatus(StrEnum):
    """What the enclave made of a file's evidence."""

    REPRODUCED = "reproduced"
    NOT_REPRODUCIBLE = "not_reproducible"
    ABSENT = "absent"


@dataclass(frozen=True)
class EvidenceOutcome:
    """The verdict on one file's evidence; ``evidence`` is set only when reproduced."""

    status: EvidenceStatus
    reason: str
    evidence: Evidence | None = None
    # Per cell of the evidence, the contributing patients as the project's pseudonyms (None
    # for margins), when the replay could name them; for the differencing store only.
    populations: list[list[str] | None] | None = None

    def as_json(self) -> dict[str, str]:
        """What ``check_json["evidence"]`` stores."""
        return {"status": str(self.status), "reason": self.reason}

    def finding(self) -> dict[str, Any] | None:
        """The ``evidence`` finding researchers and reviewers read (none when absent)."""
        if self.status is EvidenceStatus.ABSENT:
            return None
        if self.status is EvidenceStatus.REPRODUCED:
            return {"rule": EVIDENCE_RULE, "status": str(Verdict.PASS), "locations": [],
                    "message": f"evidence reproduced: {self.reason}"}
        return {"rule": EVIDENCE_RULE, "status": str(Verdict.REVIEW), "locations": [],
                "message": f"evidence not reproducible ({self.reason}), checked as a plain file"}


def refused(reason: str) -> EvidenceOutcome:
    return EvidenceOutcome(EvidenceStatus.NOT_REPRODUCIBLE, reason)


ABSENT = EvidenceOutcome(EvidenceStatus.ABSENT, "no evidence: checked as a plain file")


@dataclass(frozen=True)
class ViewIdentity:
    """A view the project reads now: where it is, its dataset version and checksum."""

    dataset: str
    path: Path
    version: str | None
    sha256: str | None


def view_identity(dataset: str, path: Path, version: int | str | None) -> ViewIdentity:
    """The view at ``path`` with the checksum its manifest records (None if unreadable)."""
    try:
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
        digest = manifest.get("sha256") if isinstance(manifest, dict) else None
    except (OSError, ValueError):
        digest = None
    return ViewIdentity(dataset, path, None if version is None else str(version),
                        digest if isinstance(digest, str) else None)


# --- the checks on the host (data only) ----------------------------------------------------

def read_sidecar(data: bytes) -> Evidence | EvidenceOutcome:
    """The sidecar as an Evidence model, or a refusal saying why it cannot be read."""
    try:
        return Evidence.model_validate(json.loads(data.decode("utf-8")))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return refused("the evidence file is not JSON")
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"]) or "evidence"
        return refused(f"the evidence file is not valid ({key}: {first['msg'][:120]})")


def precheck(evidence: Evidence, submitted: bytes, name: str, views: Mapping[str, ViewIdentity],
             project: str) -> Query | EvidenceOutcome:
    """Everything decidable without running the query: the query, or a refusal."""
    if hashlib.sha256(submitted).hexdigest() != evidence.output.sha256:
        return refused("the file is not the one its evidence describes (sha256 differs): save it again with enclave.safe")
    if evidence.query is None:
        return refused("the table was built from a data frame of unknown origin; "
                       "build it from enclave.safe.query(...) to make it reproducible")
    if PurePosixPath(name).suffix.lower() not in SEPARATORS:
        return refused("only .csv and .tsv tables are re-run")
    if evidence.analysis.get("kind") not in ("crosstab", "pivot_table"):
        return refused(f"only crosstab and pivot_table tables are re-run, not {evidence.analysis.get('kind')!r}")
    try:
        query = parse_query(evidence.query)
    except InvalidInput as exc:
        return refused(str(exc))
    recorded = {d.name: d for d in evidence.datasets}
    for dataset in sorted(query.datasets()):
        view = views.get(dataset)
        if view is None:
            return refused(f"the query reads dataset {dataset!r}, which project {project} is not granted now")
        ref = recorded.get(dataset)
        if ref is None or ref.version is None or ref.view_sha256 is None:
            return refused(f"the evidence does not record which version of {dataset} it was made from")
        if ref.version != view.version or ref.view_sha256 != view.sha256:
            return refused(f"stale: made from {dataset} version {ref.version} (view {ref.view_sha256[:12]}); "
                           f"the project now reads version {view.version} (view {(view.sha256 or '?')[:12]}): "
                           "run it again and save it")
    return query


def policy_mismatch(evidence: Evidence, site: DisclosurePolicy) -> str | None:
    """Why the evidence was not made under the site's disclosure policy; None if it was.

    The replay applies the site's policy whatever the sidecar says, so a table made under
    other rules (a policy passed to enclave.safe, a changed library, an older site policy)
    would come out different anyway; this says so plainly, before any container runs."""
    try:
        claimed = DisclosurePolicy.model_validate(evidence.policy)
    except ValidationError:
        return "the evidence records no valid disclosure policy: save the table again with enclave.safe"
    if claimed == site:
        return None
    if claimed.version != site.version:
        return (f"made under disclosure policy version {claimed.version!r}, not the site's {site.version!r}: "
                "run it again in the enclave (enclave.safe applies the site's policy) and save it")
    return (f"made under other rules than the site's disclosure policy (both say version {site.version!r}): "
            "run it again in the enclave without a policy of your own and save it")


def _grid(data: bytes, separator: str) -> pl.DataFrame:
    return pl.read_csv(data, separator=separator, has_header=True, infer_schema=False, raise_if_empty=False,
                       truncate_ragged_lines=False)


def _same(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return math.isclose(a, b, rel_tol=FLOAT_TOLERANCE, abs_tol=1e-12)


def compare(evidence: Evidence, submitted: bytes, name: str, output: ReplayOutput) -> str | None:
    """Why the recomputed result differs from the submitted table and sidecar; None if equal."""
    if not output.ok or output.table is None:
        return f"the query could not be re-run: {output.error or 'no result'}"
    separator = SEPARATORS[PurePosixPath(name).suffix.lower()]
    recomputed = output.table.encode("utf-8")
    try:
        shown, again = _grid(submitted, separator), _grid(recomputed, separator)
    except (pl.exceptions.PolarsError, ValueError):
        return "the file cannot be read as the table it claims to be"
    if shown.columns != again.columns:
        return "the recomputed table has other columns than the file"
    if shown.height != again.height:
        return f"the recomputed table has {again.height} rows, the file {shown.height}"
    for i, (a, b) in enumerate(zip(shown.rows(), again.rows())):
        for column, x, y in zip(shown.columns, a, b):
            if x != y:
                return f"line {i + 2}, column {column!r} reads {x!r} in the file but {y!r} when recomputed"
    if recomputed != submitted:
        return "the file's bytes differ from the recomputed table's (formatting or extra content)"
    if len(evidence.cells) != len(output.cells):
        return f"the evidence lists {len(evidence.cells)} cells, the recomputed table has {len(output.cells)}"
    for i, (claimed, actual) in enumerate(zip(evidence.cells, output.cells)):
        for field in EXACT_FIELDS:
            if getattr(claimed, field) != getattr(actual, field):
                return f"cell {_label(actual)}: the evidence says {field} {getattr(claimed, field)!r}, recomputed {getattr(actual, field)!r}"
        for field in FLOAT_FIELDS:
            if not _same(getattr(claimed, field), getattr(actual, field)):
                return f"cell {_label(actual)}: the evidence says {field} {getattr(claimed, field)!r}, recomputed {getattr(actual, field)!r}"
    return None


def _label(cell: EvidenceCell) -> str:
    return f"({', '.join(map(str, cell.row))} / {', '.join(map(str, cell.column))})"


def trusted(evidence: Evidence, output: ReplayOutput, policy: DisclosurePolicy) -> Evidence:
    """The evidence the checker may rely on: the recomputed figures under the enclave's policy."""
    return evidence.model_copy(update={
        "cells": list(output.cells), "status": output.status or Verdict.REVIEW, "findings": list(output.findings),
        "policy": policy.model_dump(mode="json"), "policy_version": policy.version,
    })


def parse_output(raw: bytes, limit: int) -> ReplayOutput:
    """The container's standard output as a ReplayOutput (a failed one if it is not)."""
    if len(raw) > limit:
        return ReplayOutput(ok=False, error=f"the replay printed more than {limit} bytes")
    try:
        output = ReplayOutput.model_validate_json(raw)
    except ValidationError:
        return ReplayOutput(ok=False, error="the replay printed no valid result")
    if output.format != OUTPUT_FORMAT:
        return ReplayOutput(ok=False, error="the replay printed a result of an unknown format")
    return output


# --- re-running in a container ------------------------------------------------------------

class ReplayFailed(Exception):
    """The container could not produce a result (engine, time or memory)."""


# Runs the replay input (bytes) with these views mounted; returns the container's stdout.
RunReplay = Callable[[bytes, list[ViewIdentity]], bytes]


@dataclass
class Replayer:
    """Re-runs evidence in fresh job containers on a Docker engine."""

    container_policy: ContainerPolicy
    policy: EvidencePolicy
    client: Any | None  # docker.DockerClient; None when the engine cannot be reached
    container_prefix: str = CONTAINER_PREFIX
    unavailable: str = "the container engine is unavailable"

    @classmethod
    def from_settings(cls, settings: Settings, policy: EvidencePolicy) -> Replayer:
        """The site's replayer: containers.yaml's image and limits, the local engine."""
        container_policy = load_container_policy(settings.policies_dir / "containers.yaml")
        try:
            import docker

            client = docker.from_env()
            client.ping()
        except Exception as exc:  # noqa: BLE001 - no engine means no replay, never a pass
            return cls(container_policy, policy, None, unavailable=f"the container engine is unavailable ({type(exc).__name__})")
        return cls(container_policy, policy, client)

    def verify(self, submitted: bytes, sidecar: bytes, name: str, views: Mapping[str, ViewIdentity],
               disclosure: DisclosurePolicy, project: str,
               patient_columns: Mapping[str, str] | None = None) -> EvidenceOutcome:
        """Decide whether ``sidecar`` is evidence of ``submitted`` (file ``name``)."""
        return verify(submitted, sidecar, name, views, disclosure, project, self.run,
                      self.policy.max_output_bytes, patient_columns)

    def container_spec(self, views: list[ViewIdentity]) -> dict[str, Any]:
        """docker-py ``containers.create`` arguments of a replay over ``views``: the job
        sandbox, only these views (read-only), no network, the replay's memory limit."""
        import docker.errors

        if self.client is None:
            raise ReplayFailed(self.unavailable)
        mounts = [Mount.dataset(v.path, v.dataset) for v in views]
        kwargs = container_kwargs(self.container_policy, mounts, job=True)
        memory = self.policy.mem_limit
        try:
            image = self.client.images.get(self.container_policy.image).id
        except docker.errors.DockerException:
            raise ReplayFailed(f"the notebook image {self.container_policy.image} is missing") from None
        kwargs.update(
            image=image, command=REPLAY_COMMAND, name=f"{self.container_prefix}{secrets.token_hex(6)}",
            network_mode="none", mem_limit=memory, memswap_limit=memory, working_dir="/tmp",
            stdin_open=True, environment={"PYTHONDONTWRITEBYTECODE": "1"},
            labels={**kwargs.get("labels", {}), REPLAY_LABEL: "1"},
            log_config={"type": "json-file", "config": {"max-size": str(self.policy.max_output_bytes * 2)}},
        )
        return kwargs

    def run(self, payload: bytes, views: list[ViewIdentity]) -> bytes:
        """Run the replay container over ``views`` with ``payload`` on stdin; its stdout."""
        import docker.errors
        import requests.exceptions

        kwargs = self.container_spec(views)
        memory = kwargs["mem_limit"]
        container = None
        try:
            container = self.client.containers.create(**kwargs)
            sock = container.attach_socket(params={"stdin": 1, "stream": 1})
            container.start()
            raw = getattr(sock, "_sock", sock)  # closing our side is the EOF the replay waits for
            raw.sendall(payload)
            raw.shutdown(socket.SHUT_WR)
            sock.close()
            deadline = time.monotonic() + self.policy.timeout_seconds
            while True:
                try:
                    container.wait(timeout=1)
                    break
                except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
                    if time.monotonic() > deadline:
                        container.kill()
                        raise ReplayFailed(f"the replay exceeded its time limit of {self.policy.timeout_seconds} s") from None
            container.reload()
            if container.attrs.get("State", {}).get("OOMKilled"):
                raise ReplayFailed(f"the replay exceeded its memory limit of {memory}")
            return container.logs(stdout=True, stderr=False)
        except docker.errors.DockerException as exc:
            raise ReplayFailed(f"the replay container failed ({str(exc).splitlines()[0][:160]})") from None
        finally:
            if container is not None:
                try:
                    container.remove(force=True)
                except docker.errors.DockerException:
                    pass


def verify(submitted: bytes, sidecar: bytes, name: str, views: Mapping[str, ViewIdentity],
           disclosure: DisclosurePolicy, project: str, run: RunReplay, limit: int,
           patient_columns: Mapping[str, str] | None = None) -> EvidenceOutcome:
    """The whole verification of one file's evidence, with ``run`` executing the replay.

    ``patient_columns`` ("dataset/table" -> patient key column of the project's view) asks
    the replay to name each cell's patients (as pseudonyms) for the differencing store."""
    evidence = read_sidecar(sidecar)
    if isinstance(evidence, EvidenceOutcome):
        return evidence
    query = precheck(evidence, submitted, name, views, project)
    if isinstance(query, EvidenceOutcome):
        return query
    mismatch = policy_mismatch(evidence, disclosure)
    if mismatch is not None:
        return refused(mismatch)
    payload = ReplayInput(evidence=evidence.model_dump(mode="json"), policy=disclosure.model_dump(mode="json"),
                          patient_columns=dict(patient_columns or {})).model_dump_json().encode("utf-8")
    try:
        raw = run(payload, [views[d] for d in sorted(query.datasets())])
    except ReplayFailed as exc:
        return refused(str(exc))
    output = parse_output(raw, limit)
    reason = compare(evidence, submitted, name, output)
    if reason is not None:
        return refused(reason)
    datasets = ", ".join(f"{d.name} v{d.version}" for d in evidence.datasets if d.name in query.datasets())
    populations = output.populations
    if populations is not None and len(populations) != len(output.cells):
        populations = None  # not who is in which cell: no fingerprints (never a refusal of the table)
    return EvidenceOutcome(EvidenceStatus.REPRODUCED,
                           f"re-run on {datasets}: the same {len(output.cells)} cells",
                           trusted(evidence, output, disclosure), populations)


# --- per project: what check_objects calls for each file --------------------------------------

# (relpath, quarantined file, quarantined sidecar) -> the outcome for that file.
VerifyFile = Callable[[str, Path, Path], EvidenceOutcome]
# The project's views as the catalogue grants them now: (dataset, host path, version).
ViewsOf = Callable[[Any, Any], list[tuple[str, Path, int | None]]]


def catalogue_views(session: Any, project: Any) -> list[tuple[str, Path, int | None]]:
    """The project's live views with their dataset versions (what its servers mount)."""
    from enclave.jobs.runner import catalogue_views as job_views

    return [(v.dataset, v.path, v.version) for v in job_views(session, project)]


class EvidenceVerifier:
    """Verifies the evidence of files of one project (what ``check_objects`` calls per file)
    and keeps each outcome by relpath, with the views it used, for the differencing check."""

    def __init__(self, replayer: Replayer | None, views: dict[str, ViewIdentity], disclosure: DisclosurePolicy,
                 slug: str, patient_columns: dict[str, str], off: str | None = None) -> None:
        self.replayer, self.views, self.disclosure, self.slug = replayer, views, disclosure, slug
        self.patient_columns, self.off = patient_columns, off
        self.outcomes: dict[str, EvidenceOutcome] = {}

    def __call__(self, relpath: str, stored: Path, sidecar: Path) -> EvidenceOutcome:
        outcome = self._verify(relpath, stored, sidecar)
        self.outcomes[relpath] = outcome
        return outcome

    def _verify(self, relpath: str, stored: Path, sidecar: Path) -> EvidenceOutcome:
        if self.off is not None or self.replayer is None:
            return refused(self.off or "no replay was run for this check")
        try:
            submitted, claimed = _read_nofollow(stored), _read_nofollow(sidecar)
        except OSError:
            return refused("the file or its evidence cannot be read")
        return self.replayer.verify(submitted, claimed, PurePosixPath(relpath).name, self.views, self.disclosure,
                                    self.slug, self.patient_columns)


def evidence_verifier(session: Any, env: Any, project: Any, views: ViewsOf = catalogue_views) -> EvidenceVerifier:
    """A verifier of evidence for files of ``project`` (``env`` an EgressEnv): the views are
    read once, now; each call re-runs one file's evidence."""
    evidence_policy: EvidencePolicy = env.policy.evidence
    if not evidence_policy.replay:
        return EvidenceVerifier(None, {}, env.disclosure, project.slug, {},
                                off="evidence replay is turned off by the egress policy")
    replayer: Replayer = env.replayer or Replayer.from_settings(env.settings, evidence_policy)
    current = {name: view_identity(name, Path(path), version) for name, path, version in views(session, project)}
    from enclave.disclosure.differencing.service import patient_columns

    return EvidenceVerifier(replayer, current, env.disclosure, project.slug, patient_columns(session, current))


def _read_nofollow(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as handle:
        return handle.read()


# --- checking files of a project outside a request (``enclave egress check --project``) -----

def check_project_files(session: Any, actor: Any, env: Any, slug: str, paths: list[Path],
                        views: ViewsOf = catalogue_views) -> list[tuple[Any, EvidenceOutcome]]:
    """Check ``paths`` as a submit would for project ``slug``: each table's sidecar (beside
    it) is re-run over the project's views, and the checker gets only reproduced evidence.
    Members, reviewers and admins may; returns (file report, evidence outcome) per path."""
    from enclave.disclosure import check_files
    from enclave.disclosure.evidence import is_sidecar, sidecar_path
    from enclave.egress import access
    from enclave.projects.service import get_project

    project = get_project(session, slug)
    access.check_check_outputs(actor, project)
    verify: EvidenceVerifier | None = None
    results = []
    for path in paths:
        sidecar = sidecar_path(path)
        outcome = ABSENT
        if not is_sidecar(path) and os.path.lexists(sidecar):
            if verify is None:
                verify = evidence_verifier(session, env, project, views)
            outcome = verify(path.name, path, sidecar)
        given = {path: outcome.evidence} if outcome.evidence is not None else None
        report = check_files([path], env.disclosure, evidence=given) if given else check_files([path], env.disclosure)
        results.append((report.files[0], outcome))
    return _with_differencing(session, env, project, paths, results, verify)


def _with_differencing(session: Any, env: Any, project: Any, paths: list[Path],
                       results: list[tuple[Any, EvidenceOutcome]], verify: EvidenceVerifier | None) -> list[tuple[Any, EvidenceOutcome]]:
    """The check's reports with each file's ``differencing`` finding (nothing is recorded)."""
    from enclave.disclosure.differencing.policy import DifferencingPolicy
    from enclave.disclosure.differencing.service import Output, differencing_findings
    from enclave.disclosure.findings import Finding
    from enclave.disclosure.verdict import worst

    outputs = []
    for path, (_, outcome) in zip(paths, results):
        data = _read_nofollow(path) if path.is_file() else b""
        outputs.append(Output(path.name, hashlib.sha256(data).hexdigest(), outcome, data))
    views = verify.views if verify is not None else {}
    found = differencing_findings(session, env.settings, env.differencing or DifferencingPolicy(),
                                  env.disclosure, project, outputs, views, None, record=False)
    out = []
    for output, (report, outcome) in zip(outputs, results):
        extra = [Finding(f["rule"], Verdict(f["status"]), f["message"], locations=f["locations"])
                 for f in found.findings.get(output.relpath, [])]
        if extra:
            report = dataclasses.replace(report, findings=[*report.findings, *extra],
                                         status=worst([Verdict(str(report.status))] + [f.status for f in extra]))
        out.append((report, outcome))
    return out


def differencing_on_submit(session: Any, env: Any, request: Any, stored: Mapping[str, Any],
                           results: dict[str, dict[str, Any]], verify: EvidenceVerifier | None,
                           canonical: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Submit's check results with each file's ``differencing`` (and ``cell_key``) findings.

    Every reproduced table is recorded in the differencing store (replacing this request's
    earlier round). A table the cell-key method applies to gets its perturbed bytes as its
    canonical form in ``canonical`` (what reviewers see and the release carries). Any
    failure of the check itself sends every file to review, never to a pass."""
    from enclave.disclosure.differencing.policy import DifferencingPolicy
    from enclave.disclosure.differencing.service import Output, differencing_findings, with_findings
    from enclave.egress.canonical import Canonical, CanonicalRules, canonical_bytes, store_bytes

    outcomes = verify.outcomes if verify is not None else {}
    try:
        outputs = [Output(relpath, stored[relpath].sha256, outcomes.get(relpath), _read_nofollow(stored[relpath].path))
                   for relpath in sorted(results)]
        found = differencing_findings(session, env.settings, env.differencing or DifferencingPolicy(),
                                      env.disclosure, request.project, outputs,
                                      verify.views if verify is not None else {}, request.id, record=True)
        if canonical is not None:
            rules = CanonicalRules.of(env.disclosure)
            for relpath, data in found.perturbed.items():
                kind, form = canonical_bytes(relpath, data, rules)
                kept = store_bytes(env.settings, form)
                canonical[relpath] = Canonical(kind=kind, sha256=kept.sha256, size=kept.size)
        elif found.perturbed:
            raise RuntimeError("perturbed tables need their canonical forms replaced")
    except Exception as exc:  # noqa: BLE001 - a broken differencing check must not pass a file
        note = {"rule": "differencing", "status": str(Verdict.REVIEW), "locations": [],
                "message": f"the differencing check failed ({type(exc).__name__}); compare this output with the "
                           "project's earlier releases by hand"}
        return with_findings(results, {relpath: [note] for relpath in results})
    return with_findings(results, found.findings)
