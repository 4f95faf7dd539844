"""Submitting outputs as a researcher would, for the egress tests on a real engine."""

from __future__ import annotations

from enclave.db.models import EgressFile, EgressRequest
from enclave.db.session import unit_of_work
from enclave.egress import service as egress
from enclave.egress.policy import EgressEnv
from enclave.users import get_user


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
