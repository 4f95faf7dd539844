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
    assert [r["name"] for r in hub_roles(admin)] == ["user", "enclave-admin"]  # never the hub's admin
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


# The scopes JupyterHub must never hand an enclave role or service: each reaches into, starts
# or impersonates other people's servers (or grants itself more).
FORBIDDEN = ("admin:", "access:servers", "servers", "tokens", "users", "admin-ui", "inherit", "proxy", "shutdown")


def _reaching(scopes):
    return [s for s in scopes if s.split("!")[0].startswith(FORBIDDEN) and not s.startswith("delete:servers")
            and s.split("!")[0] not in ("read:users:activity", "read:users:name", "read:servers")]


def test_no_enclave_role_or_service_holds_a_scope_into_other_peoples_servers(factory, settings):
    from enclave.hub.config import builtin_service_roles, extra_service_roles, extra_user_scopes

    admin = factory.admin
    everyone = managed_roles() + hub_roles(admin) + builtin_service_roles() + extra_service_roles(settings)
    for role in everyone:
        assert role.get("name") != "admin"
        assert not _reaching(role.get("scopes", [])), role
    assert not _reaching(extra_user_scopes())
    # Services get what they need only: the enforcer and the culler may stop, never access.
    for role in builtin_service_roles():
        assert "delete:servers" in role["scopes"] and not any(s.startswith("access:") for s in role["scopes"])


def test_auth_model_never_makes_anyone_a_hub_admin(factory, settings):
    from enclave.hub.auth import auth_model

    model = auth_model(factory.session, factory.admin)
    assert model["admin"] is False and "admin" not in {r["name"] for r in model["roles"]}


def test_web_service_cannot_start_or_stop_servers_and_sign_ins_reach_only_their_owners():
    """The console's start and stop go with the person's own sign-in token: the service's own
    token holds no scope that changes servers, and every server scope a sign-in token may
    carry is filtered to its owner (``!user``)."""
    from enclave.web.service import hub_service, hub_service_role

    role = hub_service_role()
    assert not [s for s in role["scopes"] if s.split("!")[0] in ("servers", "admin:servers", "delete:servers")]
    allowed = hub_service(None, {}, port=1)["oauth_client_allowed_scopes"]  # type: ignore[arg-type]
    assert "servers!user" in allowed
    assert all(s.endswith("!user") for s in allowed if "servers" in s), allowed
