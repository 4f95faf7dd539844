"""The hub-facing parts of sign-in: roles mirrored, and the hook for a site's own OIDC provider."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from tornado import web

from enclave.db.models import AuditEvent
from enclave.db.session import unit_of_work
from enclave.enums import Role
from enclave.hub.auth import enclave_post_auth_hook, hub_roles, managed_roles


def test_hub_roles_mirror_enclave_roles_and_keep_the_default_ones(factory):
    researcher = factory.user("alice")
    admin = factory.admin
    assert [r["name"] for r in hub_roles(researcher)] == ["user", "enclave-researcher"]
    assert [r["name"] for r in hub_roles(admin)] == ["user", "admin", "enclave-admin"]
    assert {r["name"] for r in managed_roles()} == {"enclave-admin", "enclave-reviewer", "enclave-researcher"}
    assert all(r["scopes"] == [] for r in managed_roles())


def test_post_auth_hook_admits_enclave_users_with_their_roles_and_audits(factory, settings):
    factory.user("alice", Role.RESEARCHER, Role.REVIEWER)
    factory.session.commit()
    result = enclave_post_auth_hook(object(), None, {"name": "alice", "auth_state": None})
    assert result["admin"] is False
    assert {r["name"] for r in result["roles"]} == {"user", "enclave-researcher", "enclave-reviewer"}
    with pytest.raises(web.HTTPError) as refused:
        enclave_post_auth_hook(object(), None, {"name": "stranger"})
    assert refused.value.status_code == 403 and "not an enclave user" in refused.value.log_message
    with unit_of_work(settings) as session:
        actions = session.scalars(select(AuditEvent.action).where(AuditEvent.action.startswith("hub.login"))).all()
    assert actions == ["hub.login", "hub.login_failed"]
