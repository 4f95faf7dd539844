"""Everything an untrusted outbox can try is refused with one clear line, and nothing leaks."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from egress_world import FILES, RELEASED, SAFE_TABLE, World, draft, release, submit, vote_all
from enclave.egress import service as egress
from enclave.egress.policy import EgressEnv, EgressPolicy, Limits
from enclave.enums import EgressStatus
from enclave.errors import InvalidInput, NotFound
from enclave.users import get_user

DATASET = b"patient_id,nhs_number,diagnosis\n1,9434765919,I21\n2,9434765870,I22\n" * 50


def _all_bytes_under(root: Path) -> bytes:
    if not root.exists():
        return b""
    return b"".join(p.read_bytes() for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def _add(world: World, rid: int, relpath: str) -> None:
    with world.uow() as s:
        egress.add_files(s, get_user(s, "rita"), world.env, rid, [relpath], "main", "ctx", "ctl")


@pytest.fixture
def dataset(world: World, tmp_path: Path) -> Path:
    """A dataset file outside the outbox (as in the catalogue)."""
    path = world.settings.catalog_dir / "cohort" / "v1" / "data.csv"
    path.parent.mkdir(parents=True)
    path.write_bytes(DATASET)
    return path


def test_quarantine_symlink_to_dataset_refused_and_nothing_leaks(world: World, dataset: Path) -> None:
    rid = draft(world)
    (world.outbox / "innocent.csv").symlink_to(dataset)
    with pytest.raises(InvalidInput, match="outbox/innocent.csv is a symbolic link"):
        _add(world, rid, "innocent.csv")
    # Swapping a file for a link after adding it is caught at submit, when the copy is made.
    world.write("late.csv", SAFE_TABLE)
    _add(world, rid, "late.csv")
    (world.outbox / "late.csv").unlink()
    (world.outbox / "late.csv").symlink_to(dataset)
    with pytest.raises(InvalidInput, match="outbox/late.csv is a symbolic link"):
        submit(world, rid)
    assert DATASET[:40] not in _all_bytes_under(world.settings.quarantine_dir)
    assert DATASET[:40] not in _all_bytes_under(world.settings.export_dir)


def test_quarantine_symlinked_folder_and_outbox_refused(world: World, dataset: Path) -> None:
    rid = draft(world)
    (world.outbox / "linked").symlink_to(dataset.parent)
    with pytest.raises(InvalidInput, match="outbox/linked is a symbolic link or not a folder"):
        _add(world, rid, "linked/data.csv")
    # The whole outbox replaced by a link to the catalogue.
    real = world.outbox.rename(world.outbox.parent / "outbox-real")
    world.outbox.symlink_to(dataset.parent)
    with pytest.raises(InvalidInput, match="the outbox of project heart-study is a symbolic link"):
        _add(world, rid, "data.csv")
    assert real.is_dir()


def test_quarantine_hard_link_refused(world: World, dataset: Path) -> None:
    rid = draft(world)
    os.link(dataset, world.outbox / "copy.csv")
    with pytest.raises(InvalidInput, match="outbox/copy.csv has 2 hard links"):
        _add(world, rid, "copy.csv")


def test_quarantine_fifo_device_folder_hidden_and_escape_refused(world: World) -> None:
    rid = draft(world)
    os.mkfifo(world.outbox / "pipe.csv")
    with pytest.raises(InvalidInput, match="outbox/pipe.csv is a FIFO"):
        _add(world, rid, "pipe.csv")
    os.mknod(world.outbox / "null.csv", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    with pytest.raises(InvalidInput, match="outbox/null.csv is a device"):
        _add(world, rid, "null.csv")
    (world.outbox / "folder").mkdir()
    with pytest.raises(InvalidInput, match="outbox/folder is a folder"):
        _add(world, rid, "folder")
    world.write(".secret.csv", SAFE_TABLE)
    with pytest.raises(InvalidInput, match="hidden file"):
        _add(world, rid, ".secret.csv")
    world.write(".cache/t.csv", SAFE_TABLE)
    with pytest.raises(InvalidInput, match="hidden folder"):
        _add(world, rid, ".cache/t.csv")
    with pytest.raises(InvalidInput, match="control characters"):
        _add(world, rid, "tables\x00/by_region.csv")
    for escape in ("../../catalog/cohort/v1/data.csv", "/etc/passwd", "tables/../../x"):
        with pytest.raises(InvalidInput, match="outbox"):
            _add(world, rid, escape)
    with pytest.raises(NotFound, match="does not exist"):
        _add(world, rid, "missing.csv")


def test_quarantine_a_name_that_is_not_utf8_is_refused_in_one_printable_line(world: World) -> None:
    """A file named with bytes that are not UTF-8 (as a CLI argument passes them) is refused
    before anything is recorded, and the refusal prints (its bytes as \\xNN)."""
    rid = draft(world)
    with open(os.path.join(os.fsencode(world.outbox), b"t-\xff.csv"), "wb") as out:
        out.write(SAFE_TABLE)
    with pytest.raises(InvalidInput, match=r"not a UTF-8 name: rename the file") as refused:
        _add(world, rid, os.fsdecode(b"t-\xff.csv"))
    message = str(refused.value)
    assert "t-\\xff.csv" in message and "\n" not in message
    message.encode("utf-8")  # printable as it is
    with world.uow() as s:
        assert [f.relpath for f in egress.get_request(s, rid).files] == list(FILES)


def test_quarantine_size_and_count_limits(world: World) -> None:
    small = EgressEnv(settings=world.settings, policy=EgressPolicy(limits=Limits(max_file_bytes=50, max_files=2)),
                      disclosure=world.env.disclosure, disclosure_digest=None)
    rid = draft(world, files={})
    world.write("big.csv", b"x" * 51)
    with world.uow() as s, pytest.raises(InvalidInput, match="over the egress limit of 50 bytes"):
        egress.add_files(s, get_user(s, "rita"), small, rid, ["big.csv"], "main", "c", "c")
    for i in range(3):
        world.write(f"t{i}.csv", b"a,b\n1,2\n")
    with world.uow() as s, pytest.raises(InvalidInput, match="at most 2 files"):
        egress.add_files(s, get_user(s, "rita"), small, rid, ["t0.csv", "t1.csv", "t2.csv"], "main", "c", "c")
    # A file that grows past the limit after it was added is refused at submit.
    with world.uow() as s:
        egress.add_files(s, get_user(s, "rita"), small, rid, ["t0.csv"], "main", "c", "c")
    world.write("t0.csv", b"y" * 60)
    with world.uow() as s, pytest.raises(InvalidInput, match="over the egress limit"):
        egress.submit_request(s, get_user(s, "rita"), small, rid)
    objects = world.settings.quarantine_dir / "objects"
    assert not objects.exists() or not any(p.is_file() for p in objects.rglob("*"))


def test_quarantine_released_bytes_are_those_submitted_in_canonical_form(world: World) -> None:
    rid = draft(world)
    submit(world, rid)
    # The researcher (or anything in the container) changes the outbox after submit.
    world.write("tables/by_region.csv", b"region,count\nnorth,3\n")
    (world.outbox / "analysis.ipynb").unlink()
    vote_all(world, rid, "ria")
    assert vote_all(world, rid, "rob") is EgressStatus.APPROVED
    request = release(world, rid)
    files = Path(request.release_record_path).parent / "files"
    assert (files / "tables/by_region.csv").read_bytes() == FILES["tables/by_region.csv"]
    assert (files / "analysis.ipynb").read_bytes() == RELEASED["analysis.ipynb"]  # its canonical form
    # Quarantined objects are read-only.
    for obj in (world.settings.quarantine_dir / "objects").rglob("*"):
        if obj.is_file():
            assert stat.S_IMODE(obj.stat().st_mode) == 0o444


def test_quarantine_export_and_keys_are_never_mounted_into_a_project_server(world: World) -> None:
    from enclave.hub.access import project_mounts
    from enclave.projects.service import get_project

    release(world, _released(world))
    with world.uow() as s:
        mounts = project_mounts(world.settings, s, get_project(s, world.slug))
    for mount in mounts:
        source = mount.source.resolve()
        for secret in (world.settings.quarantine_dir, world.settings.export_dir, world.settings.keys_dir):
            secret = secret.resolve()
            assert not secret.is_relative_to(source) and not source.is_relative_to(secret), (mount, secret)


def _released(world: World) -> int:
    rid = draft(world)
    submit(world, rid)
    vote_all(world, rid, "ria")
    vote_all(world, rid, "rob")
    return rid
