"""The signed release record, downloads, and the audit trail of every step."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from egress_world import FILES, RELEASED, World, draft, release, submit, to_state, vote_all
from enclave.audit import list_events, verify_chain
from enclave.egress import release as release_service
from enclave.egress.signing import PRIVATE_NAME, PUBLIC_NAME, load_or_create_key
from enclave.enums import EgressStatus as S
from enclave.errors import Conflict, InvalidTransition, PermissionDenied
from enclave.users import get_user


def _verify(world: World, record: Path):  # type: ignore[no-untyped-def]
    return release_service.verify_release(record, world.settings.keys_dir / PUBLIC_NAME)


def test_release_record_is_complete_signed_and_verifies(world: World) -> None:
    rid = to_state(world, S.RELEASED)
    with world.uow() as s:
        record_path = Path(release_service.get_request(s, rid).release_record_path)
    report = _verify(world, record_path)
    assert report.ok and report.files_checked == 2
    record = report.record
    assert record["request"]["id"] == rid and record["project"]["slug"] == world.slug
    sha = lambda data: __import__("hashlib").sha256(data).hexdigest()  # noqa: E731
    # Released: the canonical form; submitted: the researcher's bytes. Both are named.
    assert record["format"] == "enclave-release/2"
    assert {f["path"]: f["sha256"] for f in record["files"]} == {p: sha(b) for p, b in RELEASED.items()}
    assert all(f["size"] == len(RELEASED[f["path"]]) for f in record["files"])
    assert {f["path"]: f["submitted"] for f in record["files"]} == {
        p: {"sha256": sha(b), "size": len(b)} for p, b in FILES.items()}
    assert all({r["reviewer"] for r in f["reviews"]} == {"ria", "rob"} for f in record["files"])
    assert record["policies"]["disclosure"]["version"] and record["policies"]["disclosure"]["sha256"]
    assert record["groups"][0]["context"] and record["groups"][0]["controls"]
    assert set(record["timestamps"]) == {"created", "submitted", "released"}
    assert "datasets" in record
    # The private key is 0600 in a 0700 folder.
    assert stat.S_IMODE((world.settings.keys_dir / PRIVATE_NAME).stat().st_mode) == 0o600
    assert stat.S_IMODE(world.settings.keys_dir.stat().st_mode) == 0o700
    # Released bytes and the record are read-only in the export store.
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o444 for p in record_path.parent.rglob("*") if p.is_file())


def test_release_tampered_record_or_file_does_not_verify(world: World, tmp_path: Path) -> None:
    rid = to_state(world, S.RELEASED)
    with world.uow() as s:
        record_path = Path(release_service.get_request(s, rid).release_record_path)
    envelope = json.loads(record_path.read_text())
    # 1. a changed decision in the record
    envelope["record"]["files"][0]["reviews"][0]["decision"] = "reject"
    forged = tmp_path / "forged" / "release.json"
    forged.parent.mkdir()
    forged.write_text(json.dumps(envelope))
    report = _verify(world, forged)
    assert not report.ok and "does NOT verify" in report.problems[0]
    # 2. a record signed with another key
    other = load_or_create_key(tmp_path / "other-keys")
    from enclave.egress.signing import sign_record

    resigned = tmp_path / "resigned" / "release.json"
    resigned.parent.mkdir()
    resigned.write_text(json.dumps(sign_record(envelope["record"], other)))
    assert not _verify(world, resigned).ok
    # 3. a released file altered, and one added, beside an intact record
    files = record_path.parent / "files"
    target = files / "tables/by_region.csv"
    target.chmod(0o644)
    target.write_bytes(b"region,count\nnorth,2\n")
    (files / "extra.csv").write_bytes(b"x")
    report = _verify(world, record_path)
    assert not report.ok
    assert any("tables/by_region.csv does not match" in p for p in report.problems)
    assert any("extra.csv is not in the record" in p for p in report.problems)


def test_download_only_author_and_members_and_every_download_audited(world: World, tmp_path: Path) -> None:
    rid = to_state(world, S.RELEASED)
    for name in ("outsider", "ria", "admin"):
        with world.uow() as s, pytest.raises(PermissionDenied, match="only its author and members"):
            release_service.download_release(s, get_user(s, name), world.env, rid, tmp_path / name)
        assert not (tmp_path / name).exists()
    for name in ("rita", "max"):
        with world.uow() as s:
            release_service.download_release(s, get_user(s, name), world.env, rid, tmp_path / name)
        for relpath, data in RELEASED.items():
            assert (tmp_path / name / "files" / relpath).read_bytes() == data
        assert _verify(world, tmp_path / name / "release.json").ok
    with world.uow() as s:
        downloads = [e.actor for e in list_events(s, action="egress.download")]
    assert downloads == ["rita", "max"]
    # A download interrupted half-way is completed by the next one; other content is never overwritten.
    again = tmp_path / "again"
    (again / "files" / "tables").mkdir(parents=True)
    (again / "files" / "tables" / "by_region.csv").write_bytes(FILES["tables/by_region.csv"])
    with world.uow() as s:
        release_service.download_release(s, get_user(s, "rita"), world.env, rid, again)
    assert (again / "files" / "analysis.ipynb").read_bytes() == RELEASED["analysis.ipynb"]
    (again / "files" / "analysis.ipynb").write_bytes(b"my own notes")
    with world.uow() as s, pytest.raises(Conflict, match="already exists with other content"):
        release_service.download_release(s, get_user(s, "rita"), world.env, rid, again)
    assert (again / "files" / "analysis.ipynb").read_bytes() == b"my own notes"
    unreleased = to_state(world, S.APPROVED)
    with world.uow() as s, pytest.raises(InvalidTransition, match="only released requests"):
        release_service.download_release(s, get_user(s, "rita"), world.env, unreleased, tmp_path / "early")


def test_release_refused_to_members_and_unapproved(world: World) -> None:
    rid = to_state(world, S.APPROVED)
    with world.uow() as s, pytest.raises(PermissionDenied):
        release_service.release_request(s, get_user(s, "rhea"), world.env, rid)
    with world.uow() as s, pytest.raises(PermissionDenied):
        release_service.release_request(s, get_user(s, "rita"), world.env, rid)
    from enclave.projects import service as projects
    from enclave.projects.lifecycle import ProjectAction

    with world.uow() as s:
        projects.transition_project(s, get_user(s, "admin"), world.slug, ProjectAction.SUSPEND, "data breach inquiry")
    with world.uow() as s, pytest.raises(InvalidTransition, match="nothing is released while it is not active"):
        release_service.release_request(s, get_user(s, "ria"), world.env, rid)
    with world.uow() as s:
        projects.transition_project(s, get_user(s, "admin"), world.slug, ProjectAction.ACTIVATE)
    in_review = to_state(world, S.IN_REVIEW)
    with world.uow() as s, pytest.raises(InvalidTransition, match="only an approved request"):
        release_service.release_request(s, get_user(s, "ria"), world.env, in_review)
    assert not (world.settings.export_dir / world.slug / f"request-{in_review}").exists()


def test_audit_every_step_logged_and_chain_verifies(world: World, tmp_path: Path) -> None:
    rid = draft(world)
    submit(world, rid)
    vote_all(world, rid, "ria")
    vote_all(world, rid, "rob")
    release(world, rid)
    with world.uow() as s:
        release_service.download_release(s, get_user(s, "rita"), world.env, rid, tmp_path / "dl")
    with world.uow() as s:
        events = [e for e in list_events(s) if e.target == f"egress:{rid}"]
        report = verify_chain(s)
    actions = [e.action for e in events]
    assert actions[:4] == ["egress.create", "egress.set_group", "egress.add_files", "egress.submit"]
    moves = [(e.details["from"], e.details["to"]) for e in events if e.action == "egress.transition"]
    assert moves == [("draft", "submitted"), ("submitted", "in_review"), ("in_review", "approved"),
                     ("approved", "released")]
    assert actions.count("egress.vote") == 4
    assert {"egress.release", "egress.download"} <= set(actions)
    assert report.ok, report.problem


def test_release_record_names_cited_job_runs_of_the_project_only(world: World) -> None:
    from enclave.egress import service as egress
    from enclave.errors import InvalidInput
    from enclave.jobs.service import submit_job

    notebook = world.settings.workspaces_dir / world.slug / "make_tables.ipynb"
    notebook.write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
    with world.uow() as s:
        run = submit_job(s, get_user(s, "rita"), world.settings, world.slug, "make_tables.ipynb")
        run_id, digest = run.id, run.notebook_sha256
    with world.uow() as s, pytest.raises(InvalidInput, match="job run 999 is not a run of project heart-study"):
        egress.create_request(s, get_user(s, "rita"), world.env, world.slug, cited_runs=[999])
    with world.uow() as s:
        rid = egress.create_request(s, get_user(s, "rita"), world.env, world.slug, "t", cited_runs=[run_id]).id
    for relpath, data in FILES.items():
        world.write(relpath, data)
    with world.uow() as s:
        egress.add_files(s, get_user(s, "rita"), world.env, rid, list(FILES), "main", "counts", "over 10")
    submit(world, rid)
    vote_all(world, rid, "ria")
    vote_all(world, rid, "rob")
    request = release(world, rid)
    record = json.loads(Path(request.release_record_path).read_text())["record"]
    assert [(r["id"], r["notebook"], r["notebook_sha256"]) for r in record["request"]["cited_runs"]] == [
        (run_id, "make_tables.ipynb", digest)]


def _signed_release(world: World, folder: Path, record: dict, files: dict[str, bytes]) -> Path:
    from enclave.egress.signing import sign_record

    for relpath, data in files.items():
        (folder / "files" / relpath).parent.mkdir(parents=True, exist_ok=True)
        (folder / "files" / relpath).write_bytes(data)
    (folder / "release.json").write_text(json.dumps(sign_record(record, load_or_create_key(world.settings.keys_dir))))
    return folder / "release.json"


def test_release_records_of_format_1_still_verify_and_unknown_formats_do_not(world: World, tmp_path: Path) -> None:
    import datetime as dt
    import hashlib

    data = b"region,count\r\nnorth,120\r\n"  # format 1 released the submitted bytes as they were
    item = {"path": "t.csv", "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    now = dt.datetime.now(dt.UTC).isoformat()
    old = _signed_release(world, tmp_path / "old", {"format": "enclave-release/1", "files": [item],
                                                    "timestamps": {"released": now}}, {"t.csv": data})
    report = _verify(world, old)
    assert report.ok and report.files_checked == 1, report.problems
    (tmp_path / "old" / "files" / "t.csv").write_bytes(data.replace(b"\r\n", b"\n"))
    assert not _verify(world, old).ok  # its files are held to the digests it names
    future = _signed_release(world, tmp_path / "future", {"format": "enclave-release/9", "files": [item],
                                                          "timestamps": {"released": now}}, {"t.csv": data})
    report = _verify(world, future)
    assert not report.ok and "unknown record format" in report.problems[0]


def test_release_refuses_a_file_without_canonical_form_and_exports_nothing(world: World) -> None:
    rid = to_state(world, S.APPROVED)
    with world.uow() as s:  # as left by a submit from before canonical forms
        request = release_service.get_request(s, rid)
        request.files[0].canonical_sha256 = None
    with world.uow() as s, pytest.raises(Conflict, match="cannot be released: it was submitted before"):
        release_service.release_request(s, get_user(s, "ria"), world.env, rid)
    assert not (world.settings.export_dir / world.slug / f"request-{rid}").exists()


def test_release_writes_the_canonical_bytes_only_when_they_still_match_their_digest(world: World) -> None:
    import hashlib
    import os

    data = b"\xef\xbb\xbfregion,count\r\nnorth,120\r\n"
    rid = draft(world, {"t.csv": data})
    submit(world, rid)
    vote_all(world, rid, "ria")
    vote_all(world, rid, "rob")
    with world.uow() as s:
        file = release_service.get_request(s, rid).files[0]
        canonical_sha, submitted_sha = file.canonical_sha256, file.sha256
    assert canonical_sha == hashlib.sha256(b"region,count\nnorth,120\n").hexdigest() != submitted_sha
    stored = world.settings.quarantine_dir / "objects" / canonical_sha[:2] / canonical_sha
    os.chmod(stored, 0o644)
    stored.write_bytes(data)  # the quarantine altered: the submitted bytes in the canonical's place
    with world.uow() as s, pytest.raises(Exception, match="no longer matches its digest"):
        release_service.release_request(s, get_user(s, "ria"), world.env, rid)
    assert not (world.settings.export_dir / world.slug / f"request-{rid}").exists()
