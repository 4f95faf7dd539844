"""The egress replay tests' world on a real engine: a project granted a synthetic dataset,
an egress environment whose evidence replay runs in real containers, and submitting outputs
as a researcher would."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

from enclave.catalog import service as catalog
from enclave.clock import today
from enclave.db.models import EgressFile, EgressRequest
from enclave.db.session import unit_of_work
from enclave.demo.synthetic import generate, write_csv
from enclave.egress import service as egress
from enclave.egress.policy import EgressEnv, EvidencePolicy
from enclave.egress.replay import Replayer
from enclave.sandbox import ContainerPolicy
from enclave.users import get_user


def grant_synthetic_dataset(settings, factory, session, slug: str, source: Path, user: str = "alice",
                            patients: int = 600, seed: int = 11) -> None:
    """``slug``, an active project of ``user``, granted for 30 days the dataset ``demo``:
    ``patients`` synthetic patients written to ``source`` and ingested by the admin (which
    materialises the project's view)."""
    factory.project(slug, user, "active")
    session.commit()
    write_csv(generate(patients, seed=seed), source)
    with unit_of_work(settings) as s:
        catalog.ingest_dataset(s, get_user(s, "root-admin"), settings, source, "demo", description="synthetic")
    with unit_of_work(settings) as s:
        catalog.add_grant(s, get_user(s, "root-admin"), settings, slug, "demo", expires=today() + dt.timedelta(days=30))


def replaying_env(settings, client, image: str, prefix: str, **evidence) -> EgressEnv:
    """The enclave's egress environment with its evidence replay in real containers of
    ``image`` named ``prefix``...; ``evidence`` overrides the replay's policy (90 s, 1 GB)."""
    policy = EvidencePolicy(**({"timeout_seconds": 90, "mem_limit": "1g"} | evidence))
    container = ContainerPolicy(image=image, job_mem_limit="1g", cpu_limit=1.0)
    env = EgressEnv.load(settings)
    return dataclasses.replace(env, replayer=Replayer(container, policy, client, container_prefix=prefix))


def submit_tables(settings, env: EgressEnv, slug: str, relpaths: list[str], user: str = "alice") -> list[EgressFile]:
    """``user`` asks to release ``relpaths`` of ``slug`` as tables and submits the request
    (which runs the automated checks and the evidence replay); its files as checked,
    detached from the session."""
    with unit_of_work(settings) as s:
        person = get_user(s, user)
        request = egress.create_request(s, person, env, slug, "tables")
        egress.add_files(s, person, env, request.id, list(relpaths), "tables", context="cohort tables",
                         controls="suppression by enclave.safe")
        request_id = request.id
    with unit_of_work(settings) as s:
        egress.submit_request(s, get_user(s, user), env, request_id, exception="checked by hand if need be")
    with unit_of_work(settings) as s:
        return [EgressFile(relpath=f.relpath, check_status=f.check_status, check_json=dict(f.check_json or {}))
                for f in s.get(EgressRequest, request_id).files]
