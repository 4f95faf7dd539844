"""Evidence sidecars go with their table: never listed as a file to choose, refused when
named (service and CLI alike), and still read by the checker at submission."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from egress_world import SAFE_TABLE, World, draft
from enclave.cli.main import app
from enclave.egress import service as egress
from enclave.errors import InvalidInput
from enclave.users import get_user
from enclave.web.egress_views import outbox_files


def test_sidecar_not_offered_and_its_table_marked_as_carrying_evidence(world: World):
    world.write("tables/t.csv", SAFE_TABLE)
    world.write("tables/t.csv.evidence.json", b"{}")
    world.write("orphan.csv.evidence.json", b"{}")
    world.write("notes.txt", b"plain\n")
    with world.uow() as s:
        listed = outbox_files(s, get_user(s, "rita"), world.settings, world.slug)
    assert sorted((f["path"], f["evidence"]) for f in listed) == [("notes.txt", False), ("tables/t.csv", True)]


def test_sidecar_named_as_a_file_is_refused_with_one_line(world: World):
    rid = draft(world, files={})
    world.write("t.csv", SAFE_TABLE)
    world.write("t.csv.evidence.json", b"{}")
    with world.uow() as s, pytest.raises(InvalidInput) as refused:
        egress.add_files(s, get_user(s, "rita"), world.env, rid, ["t.csv", "t.csv.evidence.json"], "main")
    assert str(refused.value) == ("outbox/t.csv.evidence.json is the evidence of outbox/t.csv: it goes with its "
                                  "table when the request is submitted; add t.csv instead")
    with world.uow() as s:
        assert egress.view_request(s, get_user(s, "rita"), rid).files == []  # nothing half-added
    result = CliRunner().invoke(app, ["--as", "rita", "egress", "add", str(rid), "t.csv.evidence.json", "--group", "g"])
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "goes with its table" in lines[0], result.stderr
