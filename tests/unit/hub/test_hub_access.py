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


def _site(settings, tmp_path, disclosure: bytes):
    """Settings whose policy directory is a copy of the repository's, with ``disclosure``
    as its disclosure.yaml."""
    import shutil

    policies = tmp_path / "policies"
    shutil.copytree(settings.policies_dir, policies)
    (policies / "disclosure.yaml").write_bytes(disclosure)
    return dataclasses.replace(settings, policies_dir=policies)


SITE_RULES = b"# the site's rules\nversion: site-2\nthreshold: 15\n"
LOOSE_RULES = b"version: loose\nthreshold: ten\n"  # not a valid policy


def test_publish_container_policies_publishes_the_bytes_it_validated(settings, tmp_path, monkeypatch):
    from enclave.hub import access

    site = _site(settings, tmp_path, SITE_RULES)
    source = site.policies_dir / "disclosure.yaml"
    reads: list[Path] = []
    validated: list[bytes] = []
    real_read, real_parse = access.read_policy_bytes, access.parse_policy_bytes

    def read(path):
        reads.append(path)
        return real_read(path)

    def parse_then_edit(path, data, model, **kwargs):
        result = real_parse(path, data, model, **kwargs)
        validated.append(data)
        source.write_bytes(LOOSE_RULES)  # an edit landing right after the check
        return result

    monkeypatch.setattr(access, "read_policy_bytes", read)
    monkeypatch.setattr(access, "parse_policy_bytes", parse_then_edit)
    folder = access.publish_container_policies(site)
    # Read once, and what was checked is what containers get, not the edit after it.
    assert reads == [source]
    assert validated == [SITE_RULES]
    assert (folder / "disclosure.yaml").read_bytes() == SITE_RULES
    assert not (folder / "disclosure.yaml").is_symlink()


def test_publish_container_policies_refuses_an_invalid_policy_in_one_line_and_keeps_the_copy(settings, tmp_path):
    from enclave.hub.access import publish_container_policies

    site = _site(settings, tmp_path, SITE_RULES)
    folder = publish_container_policies(site)
    published = (folder / "disclosure.yaml").stat()
    for bad, says in ((LOOSE_RULES, "threshold"), (b"threshold: [15\n", "not valid YAML"),
                      (b"\xff\xfe", "cannot be read"), (b"thresold: 15\n", "unknown key")):
        (site.policies_dir / "disclosure.yaml").write_bytes(bad)
        with pytest.raises(PolicyError) as refused:
            publish_container_policies(site)
        message = str(refused.value)
        assert says in message and "disclosure.yaml" in message and "\n" not in message
        # The previous copy is untouched (same file, same bytes) and nothing half-written is left.
        assert (folder / "disclosure.yaml").read_bytes() == SITE_RULES
        assert (folder / "disclosure.yaml").stat().st_ino == published.st_ino
        assert sorted(p.name for p in site.container_policies_dir.iterdir()) == ["current"]
    (site.policies_dir / "disclosure.yaml").unlink()
    with pytest.raises(PolicyError, match="policy file is missing"):
        publish_container_policies(site)
    assert (folder / "disclosure.yaml").read_bytes() == SITE_RULES


def test_publish_container_policies_race_never_publishes_unchecked_rules(settings, tmp_path):
    from enclave.disclosure.policy import DisclosurePolicy
    from enclave.hub.access import publish_container_policies
    from enclave.policy import parse_policy_bytes
    from tests.link_race import swapping

    site = _site(settings, tmp_path, SITE_RULES)
    source = site.policies_dir / "disclosure.yaml"
    loose = tmp_path / "loose.yaml"
    loose.write_bytes(LOOSE_RULES)
    folder = publish_container_policies(site)
    outcomes = {"published": 0, "refused": 0}
    # The site's file and a file of invalid rules swap names continually while it publishes.
    with swapping(source, loose):
        for _ in range(300):
            try:
                publish_container_policies(site)
                outcomes["published"] += 1
            except PolicyError as exc:
                assert "threshold" in str(exc)
                outcomes["refused"] += 1
            copy = (folder / "disclosure.yaml").read_bytes()
            assert copy == SITE_RULES, copy
            parse_policy_bytes(folder / "disclosure.yaml", copy, DisclosurePolicy)
    assert outcomes["published"] and outcomes["refused"], outcomes  # both sides of the race were met


def test_publish_container_policies_never_writes_through_a_link(settings, tmp_path):
    from enclave.hub.access import publish_container_policies

    site = _site(settings, tmp_path, SITE_RULES)
    folder = publish_container_policies(site)
    # A link where the copy should be, to a file holding the very same bytes: it is replaced
    # by a regular file, and its target is neither written nor its mode changed.
    elsewhere = tmp_path / "elsewhere.yaml"
    elsewhere.write_bytes(SITE_RULES)
    elsewhere.chmod(0o600)
    (folder / "disclosure.yaml").unlink()
    (folder / "disclosure.yaml").symlink_to(elsewhere)
    publish_container_policies(site)
    assert not (folder / "disclosure.yaml").is_symlink()
    assert (folder / "disclosure.yaml").read_bytes() == SITE_RULES
    (site.policies_dir / "disclosure.yaml").write_bytes(SITE_RULES + b"# edited\n")
    (folder / "disclosure.yaml").unlink()
    (folder / "disclosure.yaml").symlink_to(elsewhere)
    publish_container_policies(site)
    assert elsewhere.read_bytes() == SITE_RULES and elsewhere.stat().st_mode & 0o777 == 0o600
    assert (folder / "disclosure.yaml").read_bytes() == SITE_RULES + b"# edited\n"
    # The mounted folder itself replaced by a link: refused, nothing written through it.
    target = tmp_path / "other-folder"
    target.mkdir(mode=0o700)
    for entry in folder.iterdir():
        entry.unlink()
    folder.rmdir()
    folder.symlink_to(target)
    with pytest.raises(PolicyError, match="is a link, not a folder"):
        publish_container_policies(site)
    assert list(target.iterdir()) == [] and target.stat().st_mode & 0o777 == 0o700


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
