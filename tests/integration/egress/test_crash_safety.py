"""Killing the process at each step leaves every request consistent, and the step can be
retried without duplicates or loss (real subprocesses, crash points set by ENCLAVE_CRASH_AT)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from egress_world import FILES, SAFE_TABLE, World, draft, status_of, to_state
from enclave.audit import list_events, verify_chain
from enclave.db.models import EgressReview
from enclave.egress import release as release_service
from enclave.egress.signing import PUBLIC_NAME
from enclave.enums import EgressStatus as S

pytestmark = pytest.mark.slow


def enclave(*args: str, crash_at: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "ENCLAVE_CRASH_AT"}
    if crash_at:
        env["ENCLAVE_CRASH_AT"] = crash_at
    return subprocess.run([sys.executable, "-m", "enclave.cli.main", *args], env=env, capture_output=True,
                          text=True, timeout=120)


def _objects(world: World) -> list[Path]:
    root = world.settings.quarantine_dir / "objects"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def _audit_ok(world: World) -> None:
    with world.uow() as s:
        report = verify_chain(s)
    assert report.ok, report.problem
    done = enclave("--as", "admin", "audit", "verify")
    assert done.returncode == 0, done.stderr


# Submitted in a subprocess, so of types whose canonical form needs no notebook allowlist; the
# note's carriage returns make its canonical form a second object in the quarantine.
NOTE = b"# Notes\r\nAll counts at least 10.\r\n"
CRASH_FILES = {"tables/by_region.csv": SAFE_TABLE, "notes.md": NOTE}


def test_crash_while_copying_into_quarantine(world: World) -> None:
    rid = draft(world, CRASH_FILES)
    crashed = enclave("--as", "rita", "egress", "submit", str(rid), crash_at="quarantine.copy")
    assert crashed.returncode == 137
    assert status_of(world, rid) is S.DRAFT
    assert _objects(world) == []
    leftovers = list((world.settings.quarantine_dir / "tmp").glob("incoming-*"))
    assert len(leftovers) == 1  # the half-written copy, under a temporary name only
    os.utime(leftovers[0], (time.time() - 7200, time.time() - 7200))
    retried = enclave("--as", "rita", "egress", "submit", str(rid))
    assert retried.returncode == 0, retried.stderr
    assert status_of(world, rid) is S.IN_REVIEW
    canonical = [SAFE_TABLE, b"# Notes\nAll counts at least 10.\n"]
    assert sorted(p.read_bytes() for p in _objects(world)) == sorted({*CRASH_FILES.values(), *canonical})
    assert list((world.settings.quarantine_dir / "tmp").glob("incoming-*")) == []
    with world.uow() as s:
        assert len(list(list_events(s, action="egress.submit"))) == 1
    _audit_ok(world)


def test_crash_between_a_vote_and_its_audit_event(world: World) -> None:
    rid = to_state(world, S.IN_REVIEW)
    vote = ("--as", "ria", "egress", "review", str(rid), "analysis.ipynb", "--decision", "approve", "--comment", "ok")
    assert enclave(*vote, crash_at="review.vote").returncode == 137
    with world.uow() as s:
        assert s.query(EgressReview).count() == 0
        assert list(list_events(s, action="egress.vote")) == []
    assert enclave(*vote).returncode == 0
    assert enclave(*vote).returncode == 0  # a second retry is not a duplicate either
    with world.uow() as s:
        assert s.query(EgressReview).count() == 1
        assert len(list(list_events(s, action="egress.vote"))) == 1
    _audit_ok(world)


@pytest.mark.parametrize("point", ["release.copy", "release.commit"])
def test_crash_during_release(world: World, point: str) -> None:
    rid = to_state(world, S.APPROVED)
    crashed = enclave("--as", "ria", "egress", "release", str(rid), crash_at=point)
    assert crashed.returncode == 137
    assert status_of(world, rid) is S.APPROVED
    with world.uow() as s:
        assert list(list_events(s, action="egress.release")) == []
    retried = enclave("--as", "ria", "egress", "release", str(rid))
    assert retried.returncode == 0, retried.stderr
    assert status_of(world, rid) is S.RELEASED
    project_export = world.settings.export_dir / world.slug
    assert sorted(p.name for p in project_export.iterdir()) == [f"request-{rid}"]  # no staging left
    report = release_service.verify_release(project_export / f"request-{rid}" / "release.json",
                                            world.settings.keys_dir / PUBLIC_NAME)
    assert report.ok and report.files_checked == len(FILES)
    with world.uow() as s:
        assert len(list(list_events(s, action="egress.release"))) == 1
    _audit_ok(world)
