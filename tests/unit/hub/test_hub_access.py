"""Who may open which project server, and what it mounts (no hub, no Docker)."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from enclave.clock import today, utcnow
from enclave.errors import PermissionDenied, PolicyError
from enclave.hub.access import (
    WORKSPACE_TARGET,
    check_can_spawn,
    prepare_workspace,
    project_mounts,
    spawnable_projects,
)
from enclave.hub.spawner import render_options_form
from enclave.projects.lifecycle import ProjectAction
from enclave.projects.service import transition_project
from enclave.sandbox import POLICIES_PATH, POLICY_FILES
from enclave.users import set_training
from tests.hub_support import grant, ingest


def test_spawnable_projects_lists_only_active_projects_of_the_member(factory):
    factory.project("alpha", "alice", "active")
    factory.project("beta", "bob", "active")
    factory.project("gamma", "alice", "suspended")
    factory.project("delta", "alice", "approved")
    assert [p.slug for p in spawnable_projects(factory.session, factory.get("alice"))] == ["alpha"]


def test_options_form_offers_only_the_given_projects_escaped():
    form = render_options_form([("alpha", "A <b>study</b>")], selected="alpha")
    assert 'value="alpha" selected' in form
    assert "<b>" not in form and "&lt;b&gt;" in form
    assert "no active project" in render_options_form([])


def test_check_can_spawn_accepts_a_member_of_an_active_project(factory):
    factory.project("alpha", "alice", "active")
    user, project = check_can_spawn(factory.session, "alice", "alpha", utcnow())
    assert (user.name, project.slug) == ("alice", "alpha")


@pytest.mark.parametrize(
    ("setup", "user", "slug", "says"),
    [
        ("nonmember", "mallory", "alpha", "not a member"),
        ("missing", "alice", "nosuch", "not a member"),
        ("suspended", "alice", "alpha", "suspended, not active"),
        ("training", "alice", "alpha", "training expired"),
        ("unnamed", "alice", "", "open a project server by its project name"),
        ("stranger", "nobody", "alpha", "not an enclave user"),
    ],
)
def test_check_can_spawn_refuses_with_the_reason(factory, setup, user, slug, says):
    factory.project("alpha", "alice", "active")
    factory.user("mallory")
    if setup == "suspended":
        transition_project(factory.session, factory.admin, "alpha", ProjectAction.SUSPEND, reason="audit")
    if setup == "training":
        set_training(factory.session, factory.admin, "alice", today() - dt.timedelta(days=1))
    with pytest.raises(PermissionDenied, match=says):
        check_can_spawn(factory.session, user, slug, utcnow())


def test_check_can_spawn_refuses_when_every_grant_has_ended(factory, settings, tmp_path):
    factory.project("alpha", "alice", "active")
    ingest(factory.session, factory.admin, settings, tmp_path, "tiny")
    grant(factory.session, factory.admin, settings, "alpha", "tiny", days=5)
    check_can_spawn(factory.session, "alice", "alpha", utcnow())
    with pytest.raises(PermissionDenied, match="expired or been revoked"):
        check_can_spawn(factory.session, "alice", "alpha", utcnow() + dt.timedelta(days=7))


def test_project_mounts_are_the_workspace_and_live_views_only(factory, settings, tmp_path):
    factory.project("alpha", "alice", "active")
    factory.project("beta", "bob", "active")
    ingest(factory.session, factory.admin, settings, tmp_path, "tiny")
    ingest(factory.session, factory.admin, settings, tmp_path, "other")
    g = grant(factory.session, factory.admin, settings, "alpha", "tiny")
    grant(factory.session, factory.admin, settings, "beta", "other")
    project = factory.session.get(type(g.project), g.project_id)
    mounts = project_mounts(settings, factory.session, project)
    assert [(m.target, m.read_only) for m in mounts] == [
        (WORKSPACE_TARGET, False), (POLICIES_PATH, True), ("/data/tiny", True)]
    assert mounts[0].source == settings.workspaces_dir / "alpha"
    assert mounts[1].source == settings.container_policies_dir / "current"
    assert mounts[2].source.is_relative_to(settings.views_dir)
    assert all(not m.source.is_relative_to(settings.catalog_dir) for m in mounts)


def test_project_mounts_show_containers_only_the_sites_disclosure_policy(factory, settings, tmp_path):
    import shutil

    policies = tmp_path / "policies"
    shutil.copytree(settings.policies_dir, policies)
    (policies / "disclosure.yaml").write_text("version: site-2\nthreshold: 15\n")
    site = dataclasses.replace(settings, policies_dir=policies)
    project = factory.project("alpha", "alice", "active")
    [folder] = [m.source for m in project_mounts(site, factory.session, project) if m.target == POLICIES_PATH]
    # Exactly the files enclave.safe reads, byte for byte, readable by the notebook user;
    # no other policy and nothing of the keys.
    assert sorted(p.name for p in folder.iterdir()) == list(POLICY_FILES) == ["disclosure.yaml"]
    assert (folder / "disclosure.yaml").read_bytes() == (policies / "disclosure.yaml").read_bytes()
    assert (folder / "disclosure.yaml").stat().st_mode & 0o777 == 0o644
    assert not folder.is_relative_to(settings.keys_dir) and folder != settings.home
    # An edit of the site's policy reaches the next server and job (and running ones, since
    # the folder is mounted and the file replaced); a stray file is removed.
    (policies / "disclosure.yaml").write_text("version: site-3\nthreshold: 12\n")
    (folder / "other.yaml").write_text("x: 1\n")
    project_mounts(site, factory.session, project)
    assert sorted(p.name for p in folder.iterdir()) == ["disclosure.yaml"]
    assert b"site-3" in (folder / "disclosure.yaml").read_bytes()
    # An invalid site policy starts nothing (fail closed), and the copy stays as it was.
    (policies / "disclosure.yaml").write_text("threshold: ten\n")
    with pytest.raises(PolicyError, match="threshold"):
        project_mounts(site, factory.session, project)
    assert b"site-3" in (folder / "disclosure.yaml").read_bytes()


def test_project_mounts_refuse_a_view_outside_the_views_directory(factory, settings, tmp_path):
    project = factory.project("alpha", "alice", "active")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    with pytest.raises(PolicyError, match="outside"):
        project_mounts(settings, factory.session, project, views=lambda s, p: [("tiny", outside)])
    with pytest.raises(PolicyError, match="cannot be mounted"):
        project_mounts(settings, factory.session, project, views=lambda s, p: [("../etc", settings.views_dir)])


def test_prepare_workspace_creates_outbox_owned_by_the_notebook_user(settings):
    root = prepare_workspace(settings, "alpha")
    assert (root / "outbox").is_dir()
    if __import__("os").geteuid() == 0:
        assert (root.stat().st_uid, (root / "outbox").stat().st_uid) == (1000, 1000)


def test_prepare_workspace_refuses_an_outbox_replaced_by_a_link(settings, tmp_path):
    import os

    import pytest

    from enclave.errors import PolicyError

    root = prepare_workspace(settings, "alpha")
    target = tmp_path / "host-secret"
    target.mkdir(mode=0o700)
    before = target.stat()
    (root / "outbox").rmdir()
    (root / "outbox").symlink_to(target)  # what a member could do from inside the server
    with pytest.raises(PolicyError, match="is a link or a file"):
        prepare_workspace(settings, "alpha")
    after = target.stat()
    assert (after.st_uid, after.st_mode) == (before.st_uid, before.st_mode)
    assert os.path.islink(root / "outbox")


def test_wait_until_listening_returns_once_the_port_accepts():
    import asyncio
    import socket
    import time

    from enclave.hub.spawner import wait_until_listening

    async def scenario() -> tuple[bool, float]:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        server: list[asyncio.base_events.Server] = []

        async def open_later() -> None:
            await asyncio.sleep(0.3)
            server.append(await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", port))

        async def never_stopped() -> bool:
            return False

        opener = asyncio.create_task(open_later())
        start = time.monotonic()
        ok = await wait_until_listening("127.0.0.1", port, timeout=5, interval=0.05, stopped=never_stopped)
        elapsed = time.monotonic() - start
        await opener
        server[0].close()
        return ok, elapsed

    ok, elapsed = asyncio.run(scenario())
    assert ok and 0.25 <= elapsed < 1.0


def test_wait_until_listening_gives_up_when_the_container_stopped():
    import asyncio
    import socket

    from enclave.hub.spawner import wait_until_listening

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async def stopped() -> bool:
        return True

    ok = asyncio.run(wait_until_listening("127.0.0.1", port, timeout=10, interval=0.05, stopped=stopped))
    assert ok is False
