"""Tampering with any stored audit event (edit, delete, reorder, cut the tail) is detected and named."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from enclave.audit import append_event, verify_chain
from enclave.db.session import unit_of_work
from tests.tampering import drop_immutability


@pytest.fixture
def chain(settings):
    """Ten real events written through the service layer, committed."""
    with unit_of_work(settings) as session:
        from tests.conftest import Factory

        f = Factory(session, settings)
        f.project("study", pi="pi", status="active", members=("m1",))
        while verify_chain(session).checked < 10:
            append_event(session, "root-admin", "test.padding", details={"n": 1})
        assert verify_chain(session).ok
    return settings


def _sql(settings, statement: str, **params) -> None:
    with unit_of_work(settings) as session:
        drop_immutability(session)  # the database refuses edits; an owner can drop that first
        session.execute(text(statement), params)


def _verify(settings):
    with unit_of_work(settings) as session:
        return verify_chain(session)


def test_verify_chain_intact(chain):
    report = _verify(chain)
    assert report.ok and report.checked == 10 and report.first_bad is None


def test_verify_chain_detects_edited_details(chain):
    _sql(chain, "UPDATE audit_events SET details = :d WHERE seq = 4", d='{"reason": "nothing to see"}')
    report = _verify(chain)
    assert not report.ok and report.first_bad == 4 and "altered" in report.problem


def test_verify_chain_detects_edited_actor_even_with_rehash_attempt(chain):
    # An attacker who also recomputes the edited row's hash still breaks the next link.
    with unit_of_work(chain) as session:
        from enclave.audit import compute_hash
        from enclave.db.models import AuditEvent

        drop_immutability(session)
        event = session.query(AuditEvent).filter_by(seq=5).one()
        event.actor = "someone-else"
        event.hash = compute_hash(event, event.prev_hash)
    report = _verify(chain)
    assert not report.ok and report.first_bad == 6 and "does not follow" in report.problem


def test_verify_chain_detects_deleted_event(chain):
    _sql(chain, "DELETE FROM audit_events WHERE seq = 3")
    report = _verify(chain)
    assert not report.ok and report.first_bad == 3 and "missing" in report.problem


def test_verify_chain_detects_reordered_events(chain):
    _sql(chain, "UPDATE audit_events SET seq = -1 WHERE seq = 6")
    _sql(chain, "UPDATE audit_events SET seq = 6 WHERE seq = 7")
    _sql(chain, "UPDATE audit_events SET seq = 7 WHERE seq = -1")
    report = _verify(chain)
    assert not report.ok and report.first_bad == 6


def test_verify_chain_detects_cut_tail(chain):
    _sql(chain, "DELETE FROM audit_events WHERE seq = 10")
    report = _verify(chain)
    assert not report.ok and report.first_bad == 10 and "cut from the end" in report.problem


def test_append_event_rolls_back_with_failed_change(settings):
    with pytest.raises(RuntimeError):
        with unit_of_work(settings) as session:
            append_event(session, "someone", "test.event")
            raise RuntimeError("the change failed")
    report = _verify(settings)
    assert report.ok and report.checked == 0
