"""Retention and destruction: a closed project's views go at once, its workspace is
archived (encrypted, read-only) for its tier's period, then destroyed with a signed,
audited record the public register shows; backups and restores honour the destruction;
the enforcer's own pass removes expired views."""

from __future__ import annotations

import datetime as dt
import io
import json
import tarfile
from pathlib import Path

import pytest
from sqlalchemy import select, text

from backup_world import PASSPHRASE, World, draft, submit
from enclave.audit import list_events, verify_chain
from enclave.backup.create import create_backup
from enclave.backup.crypto import decrypt_stream
from enclave.backup.restore import restore_backup
from enclave.catalog.pseudonym import key_path
from enclave.config import Settings
from enclave.db.models import DataRetention, EgressFile, EgressRequest, Grant, Project
from enclave.db.session import engine_for, unit_of_work
from enclave.egress.quarantine import object_path
from enclave.egress.signing import KEYRING_NAME, load_public_key, verify_envelope
from enclave.enums import EgressStatus
from enclave.errors import PolicyError
from enclave.policy import load_policy_file
from enclave.projects.lifecycle import ProjectAction
from enclave.projects.retention import (RetentionPolicy, archive_key_path, archive_path, closed_by_name, housekeeping,
                                       move_project)
from enclave.users import get_user
from enclave.register.service import search_register as register

REPO = Path(__file__).resolve().parents[3]


def _close(world: World) -> None:
    with unit_of_work(world.settings) as s:
        move_project(s, get_user(s, "admin"), world.settings, world.slug, ProjectAction.CLOSE, "study finished")
    housekeeping(world.settings)


def _unreleased_objects(world: World) -> list[str]:
    """Objects submitted for egress and never released (a new, pending request's own file)."""
    submit(world, draft(world, {"pending/west.csv": b"region,count\nwest,77\nsouth,81\n"}))
    with unit_of_work(world.settings) as s:
        def objects(released: bool) -> set[str]:
            status = EgressRequest.status == EgressStatus.RELEASED
            return set(s.scalars(select(EgressFile.sha256).join(EgressRequest).where(status if released else ~status)))
        return sorted(objects(False) - objects(True))


def test_retention_close_removes_views_at_once_and_archives_the_workspace_encrypted(busy: World, tmp_path: Path) -> None:
    secret = tmp_path / "elsewhere.txt"
    secret.write_text("NOT THE PROJECT'S")
    (busy.outbox / "link").symlink_to(secret)
    marker = b"ONLY-IN-THE-WORKSPACE-" * 20
    busy.write("notes/marker.txt", marker)
    with unit_of_work(busy.settings) as s:
        view = Path(s.scalars(select(Grant.view_path)).one())
    assert view.is_dir()
    _close(busy)
    assert not view.exists() and not (busy.settings.workspaces_dir / busy.slug).exists()
    with unit_of_work(busy.settings) as s:
        assert s.scalars(select(Grant.view_path)).one() is None
        row = s.get(DataRetention, s.scalars(select(Project.id)).one())
        assert row.retention_days == 90 and row.destroy_after - row.closed_at == dt.timedelta(days=90)  # tier2
        assert [e.action for e in list_events(s, project=busy.slug)][-3:] == [
            "project.transition", "retention.views_removed", "retention.archive"]
    archive = archive_path(busy.settings, busy.slug)
    assert archive.stat().st_mode & 0o777 == 0o400
    assert marker[:40] not in archive.read_bytes()  # encrypted
    plain = io.BytesIO()
    with open(archive, "rb") as fh:
        decrypt_stream(fh, plain, archive_key_path(busy.settings, busy.slug).read_bytes())
    plain.seek(0)
    with tarfile.open(fileobj=plain) as tar:
        names = tar.getnames()
        assert tar.extractfile(f"{busy.slug}/outbox/notes/marker.txt").read() == marker
    assert f"{busy.slug}/outbox/link" not in names  # links are never packed


def test_retention_destroys_on_time_with_a_signed_record_on_the_register(busy: World) -> None:
    unreleased = _unreleased_objects(busy)
    assert unreleased and all(object_path(busy.settings, sha).exists() for sha in unreleased)
    # The differencing store's map of this project's pseudonyms goes with its data; another
    # project's map stays.
    from enclave.disclosure.differencing.store import DifferencingStore
    store = DifferencingStore.of_home(busy.settings.home)
    own, other = store.map_path("cardio", busy.slug, 1), store.map_path("cardio", f"{busy.slug}-v2x", 1)
    for path in (own, other):
        path.write_bytes(b"pseudonym -> patient index")
    _close(busy)
    with unit_of_work(busy.settings) as s:
        row = s.scalars(select(DataRetention)).one()
        due = row.destroy_after
    assert housekeeping(busy.settings, now=due - dt.timedelta(minutes=1)).destroyed == []
    assert archive_path(busy.settings, busy.slug).exists()
    assert housekeeping(busy.settings, now=due + dt.timedelta(seconds=1)).destroyed == [busy.slug]
    for gone in (archive_path(busy.settings, busy.slug), archive_key_path(busy.settings, busy.slug),
                 key_path(busy.settings.keys_dir, busy.slug), *(object_path(busy.settings, sha) for sha in unreleased)):
        assert not gone.exists(), gone
    assert not own.exists() and other.exists()
    assert len(list((busy.settings.export_dir / busy.slug).glob("request-*"))) == 2  # releases are kept
    envelope = json.loads((busy.settings.export_dir / busy.slug / "destruction.json").read_text())
    record = verify_envelope(envelope, load_public_key(busy.settings.keys_dir / KEYRING_NAME))
    assert record["project"]["slug"] == busy.slug and record["closed_by"]["role"] == "admin"
    assert closed_by_name(envelope) == "admin"  # the custodians' copy keeps the name
    assert record["policy"]["version"] == "2026.1" and record["retention_days"] == 90
    assert record["quarantine_objects"] == unreleased
    with unit_of_work(busy.settings) as s:
        assert [e.action for e in list_events(s, project=busy.slug)][-1] == "retention.destroy"
        assert verify_chain(s).ok
        entry = next(e for e in register(s) if e.slug == busy.slug)
        assert entry.data_destroyed_on == (due + dt.timedelta(seconds=1)).date()
    # Nothing is destroyed twice, and the record cannot be changed afterwards.
    assert housekeeping(busy.settings, now=due + dt.timedelta(days=1)).destroyed == []
    with engine_for(busy.settings.db_url).connect() as conn, pytest.raises(Exception, match="immutable"):
        conn.execute(text("UPDATE data_retention SET destroyed_at = NULL"))


def test_retention_backups_and_restores_honour_destruction(busy: World, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    with unit_of_work(busy.settings) as s:
        admin = get_user(s, "admin")
    before = create_backup(busy.settings, admin, dest, passphrase=PASSPHRASE).id  # the project still active
    unreleased = _unreleased_objects(busy)
    _close(busy)
    with unit_of_work(busy.settings) as s:
        due = s.scalars(select(DataRetention.destroy_after)).one()
    housekeeping(busy.settings, now=due + dt.timedelta(seconds=1))
    create_backup(busy.settings, admin, dest, passphrase=PASSPHRASE)  # the destination learns of the destruction
    restored = restore_backup(dest, tmp_path / "restored", backup_id=before, passphrase=PASSPHRASE)
    assert restored.not_restored == [busy.slug]
    home = restored.home
    assert not (home / "workspaces" / busy.slug).exists() and not (home / "views" / busy.slug).exists()
    assert not key_path(home / "keys", busy.slug).exists()
    assert not any((home / "quarantine" / "objects" / sha[:2] / sha).exists() for sha in unreleased)
    assert len(list((home / "export" / busy.slug).glob("request-*"))) == 2
    settings = Settings(home=home, db_url=f"sqlite:///{home / 'enclave.db'}", policies_dir=home / "policies")
    with unit_of_work(settings) as s:
        project = s.scalars(select(Project)).one()
        row = s.get(DataRetention, project.id)
        assert row is not None and row.destroyed_at is not None
        assert all(g.view_path is None for g in s.scalars(select(Grant)))
        last = list(list_events(s))[-1]
        assert last.action == "backup.restore" and last.details["not_restored"] == [busy.slug]
        assert verify_chain(s).ok
    # The enclave on the restored home destroys nothing twice and restores nothing later.
    assert housekeeping(settings).destroyed == []


def test_retention_the_enforcers_pass_removes_expired_views(busy: World) -> None:
    with unit_of_work(busy.settings) as s:
        grant = s.scalars(select(Grant)).one()
        view, expires = Path(grant.view_path), grant.expires_at
    assert housekeeping(busy.settings, now=expires - dt.timedelta(seconds=1)).expired_views == []
    assert view.is_dir()
    assert housekeeping(busy.settings, now=expires + dt.timedelta(seconds=1)).expired_views == [grant.id]
    assert not view.exists()
    with unit_of_work(busy.settings) as s:
        event = list(list_events(s, action="grant.expire"))[-1]
        assert event.actor == "enclave-retention" and event.details["files"]


def test_retention_policy_needs_a_period_for_every_tier(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    for name in ("tiers.yaml", "retention.yaml"):
        (policies / name).write_text((REPO / "policies" / name).read_text())
    path = policies / "retention.yaml"
    path.write_text(path.read_text().replace("  tier3:\n    archive_days: 180\n", ""))
    with pytest.raises(PolicyError, match="tier 'tier3' of tiers.yaml has no retention period"):
        load_policy_file(path, RetentionPolicy)
    path.write_text((REPO / "policies" / "retention.yaml").read_text().replace("archive_days: 30", "archive_dayz: 30"))
    with pytest.raises(PolicyError, match="unknown key"):
        load_policy_file(path, RetentionPolicy)


def test_retention_register_page_shows_the_destruction_and_serves_its_record(busy: World, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from enclave.web.app import create_app
    from tests.integration.web.world import PREFIX, authenticator

    _close(busy)
    with unit_of_work(busy.settings) as s:
        due = s.scalars(select(DataRetention.destroy_after)).one()
    client = TestClient(create_app(busy.settings, authenticator()), raise_server_exceptions=False)
    assert "archived; to be destroyed on" in client.get(PREFIX + "/register").text
    housekeeping(busy.settings, now=due + dt.timedelta(seconds=1))
    page = client.get(PREFIX + "/register").text
    assert "data destroyed on" in page and f"register/{busy.slug}/destruction.json" in page
    served = client.get(f"{PREFIX}/register/{busy.slug}/destruction.json")
    assert served.status_code == 200
    record = verify_envelope(served.json(), load_public_key(busy.settings.keys_dir / KEYRING_NAME))
    assert record["project"]["slug"] == busy.slug
    assert client.get(f"{PREFIX}/register/no-such-project/destruction.json").status_code == 404
