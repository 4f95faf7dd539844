"""``enclave incident``: list, clear and enable-user through the real command."""

from __future__ import annotations

import json

from enclave.config import Settings
from enclave.db.session import unit_of_work
from enclave.enums import IncidentKind
from enclave.incidents import open_incident
from tests.integration.foundation.test_cli import Cli, cli, template_home  # noqa: F401 - fixtures


def test_incident_cli_lists_clears_and_enables(cli: Cli):  # noqa: F811
    settings = Settings.from_env({"ENCLAVE_HOME": str(cli.home)})
    with unit_of_work(settings) as session:
        for _ in range(2):
            open_incident(session, "enclave-meter", IncidentKind.EGRESS_VOLUME, user="bob", project=None,
                          server="cardio", details={"sent_in_window": 99}, suspend_user=True,
                          disable_after_incidents=2)
    listed = json.loads(cli("--as", "alice", "incident", "list", "--json").stdout)
    assert [(i["id"], i["user"], i["status"]) for i in listed] == [(2, "bob", "open"), (1, "bob", "open")]
    cli("--as", "bob", "incident", "list", ok=False)  # not an admin
    cli("--as", "alice", "incident", "clear", "1", "--note", "", ok=False)
    out = cli("--as", "alice", "incident", "clear", "1", "--note", "reviewed").stdout
    assert "cleared incident #1" in out and "account is disabled" in out  # two incidents disabled it
    cli("--as", "alice", "incident", "clear", "2", "--note", "reviewed")
    assert "already cleared" in cli("--as", "alice", "incident", "clear", "2", "--note", "x", ok=False).stderr
    cli("--as", "alice", "incident", "enable-user", "bob", "--note", "second review")
    assert json.loads(cli("--as", "alice", "incident", "list", "--status", "all", "--json").stdout)[0]["status"] \
        == "cleared"
    events = json.loads(cli("--as", "alice", "audit", "list", "--action", "user.", "--json").stdout)
    assert [e["action"] for e in events if e["target"] == "user:bob"][-2:] == ["user.disable", "user.enable"]
