"""servers_to_stop decides from the database alone which running servers must stop."""

from __future__ import annotations

import datetime as dt

from enclave.catalog.service import revoke_grant
from enclave.clock import today, utcnow
from enclave.hub.enforce import RunningServer, servers_to_stop
from enclave.projects.lifecycle import ProjectAction
from enclave.projects.service import remove_member, transition_project
from enclave.users import set_training
from tests.hub_support import grant, ingest


def _setup(factory):
    factory.project("alpha", "alice", "active", members=("carol",))
    factory.project("beta", "bob", "active")


def test_servers_to_stop_keeps_servers_that_may_run(factory):
    _setup(factory)
    running = [("alice", "alpha"), ("carol", "alpha"), ("bob", "beta")]
    assert servers_to_stop(factory.session, running, utcnow()) == []


def test_servers_to_stop_stops_every_server_of_a_suspended_project(factory):
    _setup(factory)
    transition_project(factory.session, factory.admin, "alpha", ProjectAction.SUSPEND, reason="breach")
    orders = servers_to_stop(factory.session, [("alice", "alpha"), ("carol", "alpha"), ("bob", "beta")], utcnow())
    assert [(o.user, o.server) for o in orders] == [("alice", "alpha"), ("carol", "alpha")]
    assert all("suspended" in o.reason for o in orders)


def test_servers_to_stop_stops_a_closed_project_and_unknown_servers(factory):
    _setup(factory)
    transition_project(factory.session, factory.admin, "beta", ProjectAction.CLOSE, reason="study finished")
    orders = servers_to_stop(factory.session, [("bob", "beta"), ("bob", ""), ("bob", "nosuch"), ("eve", "alpha")], utcnow())
    assert [o.reason for o in orders] == [
        "project beta is closed", "not a project server", "no project named nosuch", "not an enclave user"]


def test_servers_to_stop_stops_a_removed_member_and_expired_training(factory):
    _setup(factory)
    remove_member(factory.session, factory.admin, "alpha", "carol")
    set_training(factory.session, factory.admin, "bob", today() - dt.timedelta(days=1))
    orders = servers_to_stop(factory.session, [("carol", "alpha"), ("bob", "beta"), ("alice", "alpha")], utcnow())
    assert [(o.user, o.reason) for o in orders] == [
        ("carol", "carol is no longer a member of alpha"), ("bob", f"bob's training expired on {today() - dt.timedelta(days=1)}")]


def test_servers_to_stop_stops_servers_started_before_a_grant_ended(factory, settings, tmp_path):
    _setup(factory)
    ingest(factory.session, factory.admin, settings, tmp_path, "tiny")
    g = grant(factory.session, factory.admin, settings, "alpha", "tiny", days=3)
    started = utcnow()
    running = [RunningServer("alice", "alpha", started)]
    assert servers_to_stop(factory.session, running, utcnow()) == []
    # Expiry: a server started before the grant ran out must stop; one started after need not.
    later = g.expires_at + dt.timedelta(minutes=1)
    assert [o.reason for o in servers_to_stop(factory.session, running, later)] == ["the grant of tiny to alpha has expired"]
    assert servers_to_stop(factory.session, [RunningServer("alice", "alpha", later)], later) == []
    revoke_grant(factory.session, factory.admin, g.id, reason="withdrawn")
    assert [o.reason for o in servers_to_stop(factory.session, running, utcnow())] == [
        "the grant of tiny to alpha was revoked"]
