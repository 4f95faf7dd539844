"""The enforcer is woken by committed changes, not by rolled-back ones, and knows the next
expiry; copies of an ended view's files in a workspace become an incident, once."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from pathlib import Path

import pytest
from sqlalchemy import select

from enclave.catalog.service import revoke_grant
from enclave.clock import today, utcnow
from enclave.config import Settings
from enclave.db.models import AuditEvent, Incident
from enclave.db.session import unit_of_work
from enclave.enums import IncidentKind
from enclave.hub.enforce import Trigger, _wait, next_expiry
from enclave.hub.revoked_copies import SCAN_ACTION, report_revoked_copies
from enclave.projects.lifecycle import ProjectAction
from enclave.projects.service import transition_project
from enclave.users import get_user, set_training
from enclave.wakeup import WakeUpListener, poke, socket_path
from tests.conftest import Factory
from tests.hub_support import grant, ingest


@pytest.fixture
def world(settings: Settings, tmp_path: Path) -> Settings:
    with unit_of_work(settings) as session:
        f = Factory(session, settings)
        f.project("alpha", "alice", "active", members=("carol",))
        ingest(session, f.admin, settings, tmp_path, "tiny")
        grant(session, f.admin, settings, "alpha", "tiny", days=3)
    return settings


def _received(listener: WakeUpListener) -> list[str]:
    listener._read()
    return listener.take() if listener.woken.is_set() else []


def test_wakeup_a_committed_suspension_pokes_the_enforcer(world: Settings):
    listener = WakeUpListener(world)
    try:
        assert oct(socket_path(world).stat().st_mode & 0o777) == "0o600"
        assert _received(listener) == []
        with unit_of_work(world) as session:
            transition_project(session, get_user(session, "root-admin"), "alpha", ProjectAction.SUSPEND, reason="x")
            listener._read()
            assert not listener.woken.is_set()  # not before the commit
        assert _received(listener) == ["project.transition"]
    finally:
        listener.close()


def test_wakeup_a_rolled_back_change_does_not_poke(world: Settings):
    listener = WakeUpListener(world)
    try:
        with pytest.raises(RuntimeError):
            with unit_of_work(world) as session:
                transition_project(session, get_user(session, "root-admin"), "alpha", ProjectAction.SUSPEND, reason="x")
                raise RuntimeError("the unit of work fails after the change")
        assert _received(listener) == []
        # Changes that cannot stop a server do not poke either.
        with unit_of_work(world) as session:
            f = Factory(session, world)
            f._admin = get_user(session, "root-admin")
            f.user("dora")
        assert _received(listener) == []
    finally:
        listener.close()


@pytest.mark.parametrize("change", ["revoke", "training"])
def test_wakeup_revoking_a_grant_or_changing_training_pokes(world: Settings, change: str):
    listener = WakeUpListener(world)
    try:
        with unit_of_work(world) as session:
            admin = get_user(session, "root-admin")
            if change == "revoke":
                g = session.scalars(select(AuditEvent).where(AuditEvent.action == "grant.add")).one()
                revoke_grant(session, admin, int(g.target.split()[1]), reason="withdrawn")
            else:
                set_training(session, admin, "carol", today() - dt.timedelta(days=1))
        assert _received(listener) == (["grant.revoke"] if change == "revoke" else ["user.update"])
    finally:
        listener.close()


def test_wakeup_without_an_enforcer_the_change_still_commits(world: Settings):
    assert not poke(world, ["project.transition"])
    with unit_of_work(world) as session:
        transition_project(session, get_user(session, "root-admin"), "alpha", ProjectAction.SUSPEND, reason="x")
    with unit_of_work(world) as session:
        assert session.scalars(select(AuditEvent).where(AuditEvent.action == "project.transition")).all()


def test_wakeup_wait_returns_at_a_poke_long_before_the_poll(world: Settings):
    async def scenario() -> tuple[Trigger, list[str]]:
        listener = WakeUpListener(world)
        listener.attach(asyncio.get_running_loop())
        try:
            asyncio.get_running_loop().call_later(0.2, poke, world, ["grant.revoke"])
            return await asyncio.wait_for(_wait(world, listener, asyncio.Event(), interval=600), timeout=30)
        finally:
            listener.close(asyncio.get_running_loop())

    assert asyncio.run(scenario()) == (Trigger.CHANGE, ["grant.revoke"])


def test_wakeup_next_expiry_is_the_earliest_grant_or_training_end(world: Settings):
    now = utcnow()
    with unit_of_work(world) as session:
        g_end = next_expiry(session, now)
        assert g_end is not None and g_end > now
        set_training(session, get_user(session, "root-admin"), "carol", today())
    with unit_of_work(world) as session:
        ends = next_expiry(session, now)
    assert ends == dt.datetime.combine(today() + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
    assert ends <= g_end


def test_revoked_copies_a_copy_of_a_revoked_view_file_opens_one_incident(world: Settings):
    with unit_of_work(world) as session:
        g = session.scalars(select(AuditEvent).where(AuditEvent.action == "grant.add")).one()
        grant_id = int(g.target.split()[1])
        from enclave.db.models import Grant

        view = Path(session.get(Grant, grant_id).view_path)
    ws = world.workspaces_dir / "alpha"
    (ws / "deep" / "er").mkdir(parents=True)
    parquet = next(view.glob("*.parquet"))
    (ws / "deep" / "er" / "renamed.bin").write_bytes(parquet.read_bytes())
    (ws / "same-size-other-bytes").write_bytes(bytes(len(parquet.read_bytes())))
    (ws / "link").symlink_to(parquet)  # a link is not a copy and is not followed
    with unit_of_work(world) as session:
        revoke_grant(session, get_user(session, "root-admin"), grant_id, reason="withdrawn")
    assert not view.exists()

    [(target, copies)] = report_revoked_copies(world, "enclave-enforcer")
    assert target == f"grant {grant_id}" and [c.path for c in copies] == ["deep/er/renamed.bin"]
    assert report_revoked_copies(world, "enclave-enforcer") == []  # scanned once
    with unit_of_work(world) as session:
        [incident] = session.scalars(select(Incident)).all()
        assert incident.kind is IncidentKind.REVOKED_VIEW_COPY and incident.user.name == "alice"
        assert incident.details_json["copies"][0]["copy_of"] == parquet.name
        assert incident.details_json["members"] == ["alice", "carol"]
        scans = session.scalars(select(AuditEvent).where(AuditEvent.action == SCAN_ACTION)).all()
        assert len(scans) == 1 and len(scans[0].details["copies"]) == 1
        opened = session.scalars(select(AuditEvent).where(AuditEvent.action == "incident.open")).all()
        assert len(opened) == 1


def test_revoked_copies_a_copy_whose_name_is_not_utf8_is_found_too(world: Settings):
    """A copy cannot hide behind a name of bytes that are not UTF-8: it is found, and the
    incident names it printably (its stray bytes as \\xNN)."""
    with unit_of_work(world) as session:
        g = session.scalars(select(AuditEvent).where(AuditEvent.action == "grant.add")).one()
        grant_id = int(g.target.split()[1])
        from enclave.db.models import Grant

        view = Path(session.get(Grant, grant_id).view_path)
    ws = os.fsencode(world.workspaces_dir / "alpha")
    os.makedirs(os.path.join(ws, b"d\xe9j\xe0"))
    with open(os.path.join(ws, b"d\xe9j\xe0", b"\xff.bin"), "wb") as out:
        out.write(next(view.glob("*.parquet")).read_bytes())
    with unit_of_work(world) as session:
        revoke_grant(session, get_user(session, "root-admin"), grant_id, reason="withdrawn")
    [(_target, copies)] = report_revoked_copies(world, "enclave-enforcer")
    assert [c.path for c in copies] == ["d\\xe9j\\xe0/\\xff.bin"]
    with unit_of_work(world) as session:
        [incident] = session.scalars(select(Incident)).all()
        assert incident.details_json["copies"][0]["path"] == "d\\xe9j\\xe0/\\xff.bin"


def test_revoked_copies_a_clean_workspace_is_scanned_without_an_incident(world: Settings):
    with unit_of_work(world) as session:
        g = session.scalars(select(AuditEvent).where(AuditEvent.action == "grant.add")).one()
        revoke_grant(session, get_user(session, "root-admin"), int(g.target.split()[1]), reason="withdrawn")
    [(_, copies)] = report_revoked_copies(world, "enclave-enforcer")
    assert copies == []
    with unit_of_work(world) as session:
        assert session.scalars(select(Incident)).all() == []
