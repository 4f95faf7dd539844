"""The admin CLI end to end in a temporary ENCLAVE_HOME, through the real console script."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tampering import drop_immutability
from tests.register_support import REGISTER_OPTIONS

ENCLAVE = [sys.executable, "-m", "enclave.cli.main"]


class Cli:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("ENCLAVE_")}
        self.env["ENCLAVE_HOME"] = str(home)

    def __call__(self, *args: str, ok: bool = True, user: str | None = None) -> subprocess.CompletedProcess:
        env = dict(self.env)
        if user:
            env["ENCLAVE_USER"] = user
        result = subprocess.run([*ENCLAVE, *args], env=env, capture_output=True, text=True, timeout=60)
        if ok:
            assert result.returncode == 0, f"{args}: {result.stderr}"
        else:
            assert result.returncode != 0, f"{args} should have failed: {result.stdout}"
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: "), f"not one clear line: {result.stderr!r}"
            assert "Traceback" not in result.stderr
        return result

    def audit_count(self) -> int:
        with sqlite3.connect(self.home / "enclave.db") as conn:
            return conn.execute("SELECT count(*) FROM audit_events").fetchone()[0]


@pytest.fixture(scope="module")
def template_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An enclave with an admin and three researchers, built once with the real CLI."""
    c = Cli(tmp_path_factory.mktemp("template") / "home")
    c("db", "upgrade")
    c("user", "add", "alice", "--role", "admin")
    c("--as", "alice", "user", "add", "bob", "--role", "researcher", "--training-expires", "2099-12-31")
    c("--as", "alice", "user", "add", "carol", "--role", "researcher", "--training-expires", "2099-12-31")
    c("--as", "alice", "user", "add", "dave", "--role", "researcher", "--training-expires", "2001-01-01")
    return c.home


@pytest.fixture
def cli(tmp_path: Path, template_home: Path) -> Cli:
    """A private copy of the template enclave for one test."""
    import shutil

    shutil.copytree(template_home, tmp_path / "home")
    return Cli(tmp_path / "home")


def test_cli_admin_takes_project_to_active_with_member_all_audited(cli: Cli):
    cli("--as", "alice", "project", "create", "diabetes", "--title", "Diabetes outcomes", "--pi", "bob",
        "--lay-summary", "How treatment affects outcomes.", "--end-date", "2099-06-30", *REGISTER_OPTIONS)
    cli("--as", "alice", "project", "approve", "diabetes")
    cli("--as", "alice", "project", "activate", "diabetes")
    cli("--as", "alice", "project", "add-member", "diabetes", "carol")
    shown = json.loads(cli("--as", "alice", "project", "show", "diabetes", "--json").stdout)
    assert shown["status"] == "active" and shown["members"] == ["bob", "carol"]
    listed = json.loads(cli("--as", "alice", "project", "list", "--json").stdout)
    assert [p["slug"] for p in listed] == ["diabetes"]

    events = json.loads(cli("--as", "alice", "audit", "list", "--project", "diabetes", "--json").stdout)
    assert [e["action"] for e in events] == [
        "project.create", "project.transition", "project.transition", "project.examples_installed",
        "project.member_add"]
    assert [e["details"].get("to") for e in events[1:3]] == ["approved", "active"]
    by_bob = json.loads(cli("--as", "alice", "audit", "list", "--user", "bob", "--json").stdout)
    assert by_bob == []
    assert "audit chain intact" in cli("--as", "alice", "audit", "verify").stdout

    # A hand-edited audit row is caught and named.
    with sqlite3.connect(cli.home / "enclave.db") as conn:
        drop_immutability(conn)  # the database refuses the edit; its owner can drop that first
        conn.execute("UPDATE audit_events SET actor = 'mallory' WHERE action = 'project.member_add'")
    result = subprocess.run([*ENCLAVE, "--as", "alice", "audit", "verify"], env=cli.env, capture_output=True, text=True)
    seq = events[-1]["seq"]
    assert result.returncode == 1 and f"BROKEN at event #{seq}" in result.stderr


def test_cli_user_list_json(cli: Cli):
    users = json.loads(cli("--as", "alice", "user", "list", "--json").stdout)
    assert {u["name"]: u["roles"] for u in users}["alice"] == ["admin"]
    assert next(u for u in users if u["name"] == "bob")["training_expires"] == "2099-12-31"


def test_cli_first_user_must_be_admin_and_later_users_need_admin(tmp_path: Path):
    c = Cli(tmp_path / "fresh")
    c("db", "upgrade")
    assert "first user of an empty enclave must be an admin" in c("user", "add", "eve", "--role", "researcher", ok=False).stderr
    c("user", "add", "root", "--role", "admin")
    assert "--as USER" in c("user", "add", "eve", "--role", "researcher", ok=False).stderr
    c("--as", "root", "user", "add", "eve", "--role", "researcher")
    assert "admin role" in c("--as", "eve", "user", "add", "zed", "--role", "admin", ok=False).stderr


@pytest.fixture(scope="module")
def study_template(tmp_path_factory: pytest.TempPathFactory, template_home: Path) -> Path:
    import shutil

    home = tmp_path_factory.mktemp("study") / "home"
    shutil.copytree(template_home, home)
    Cli(home)("--as", "alice", "project", "create", "study", "--title", "Study", "--pi", "bob",
              "--lay-summary", "Summary.", "--end-date", "2099-06-30", *REGISTER_OPTIONS)
    return home


@pytest.fixture
def study_cli(tmp_path: Path, study_template: Path) -> Cli:
    import shutil

    shutil.copytree(study_template, tmp_path / "home")
    return Cli(tmp_path / "home")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--as", "nobody", "project", "list"], "not an enclave user"),
        (["project", "list"], "say who is acting"),
        (["--as", "alice", "project", "approve", "nosuch"], "no project 'nosuch'"),
        (["--as", "alice", "project", "add-member", "study", "nobody"], "no user named 'nobody'"),
        (["--as", "alice", "project", "create", "new", "--title", "T", "--pi", "bob", "--lay-summary", "S",
          "--end-date", "2099-02-30"], "is not a date: write it as YYYY-MM-DD"),
        (["--as", "alice", "project", "create", "new", "--title", "T", "--pi", "bob", "--lay-summary", "S",
          "--end-date", "2001-01-01"], "in the past"),
        (["--as", "alice", "project", "create", "Bad Slug", "--title", "T", "--pi", "bob", "--lay-summary", "S",
          "--end-date", "2099-01-01"], "slug 'Bad Slug' is not allowed"),
        (["--as", "alice", "project", "create", "study", "--title", "T", "--pi", "bob", "--lay-summary", "S",
          "--end-date", "2099-01-01"], "already exists"),
        (["--as", "alice", "project", "add-member", "study", "dave"], "training expired on 2001-01-01"),
        (["--as", "alice", "project", "add-member", "study", "bob"], "already a member"),
        (["--as", "alice", "project", "activate", "study"], "cannot be activated; allowed now: approve, reject"),
        (["--as", "alice", "project", "suspend", "study", "--reason", "x"], "cannot be suspended"),
        (["--as", "bob", "project", "approve", "study"], "needs the admin role"),
        (["--as", "alice", "user", "add", "bob", "--role", "researcher"], "already exists"),
        (["--as", "alice", "user", "add", "zed", "--role", "wizard"], "unknown role 'wizard'"),
        (["--as", "alice", "user", "add", "zed", "--role", "researcher", "--training-expires", "soon"], "is not a date"),
        (["--as", "alice", "audit", "list", "--since", "yesterday"], "is not a date"),
        (["--as", "bob", "audit", "list"], "may not read the audit log"),
        (["--as", "alice", "project", "approve"], "Missing argument"),
        (["--as", "alice", "project", "frobnicate", "study"], "No such command"),
    ],
)
def test_cli_bad_input_one_line_nonzero_nothing_written(study_cli: Cli, args, expected):
    cli = study_cli
    before = cli.audit_count()
    result = cli(*args, ok=False)
    assert expected in result.stderr
    assert cli.audit_count() == before


def test_cli_missing_database_says_run_upgrade(tmp_path: Path):
    c = Cli(tmp_path / "empty")
    result = c("--as", "alice", "project", "list", ok=False)
    assert "run 'enclave db upgrade'" in result.stderr
    assert not (tmp_path / "empty" / "enclave.db").exists()


def test_cli_corrupt_database_says_restore(tmp_path: Path):
    c = Cli(tmp_path / "corrupt")
    c.home.mkdir(parents=True)
    (c.home / "enclave.db").write_bytes(b"this is not sqlite" * 100)
    assert "corrupt" in c("--as", "alice", "project", "list", ok=False).stderr
    assert "corrupt" in c("db", "upgrade", ok=False).stderr
    assert (c.home / "enclave.db").read_bytes().startswith(b"this is not sqlite")


def test_cli_policy_check_reports_bad_file(tmp_path: Path, cli: Cli):
    import shutil

    from tests.conftest import REPO

    target = tmp_path / "pol"
    shutil.copytree(REPO / "policies", target)
    assert "tiers.yaml" in cli("policy", "check", str(target)).stdout
    (target / "tiers.yaml").write_text((target / "tiers.yaml").read_text() + "colour: blue\n")
    result = cli("policy", "check", str(target), ok=False)
    assert "tiers.yaml: colour: unknown key" in result.stderr


def test_cli_every_group_shows_help_without_error():
    from typer.testing import CliRunner

    from enclave.cli.main import GROUPS, app

    runner = CliRunner()
    for args in [[], *([name] for _, name in GROUPS), *([name, "--help"] for _, name in GROUPS)]:
        result = runner.invoke(app, args, prog_name="enclave")
        assert result.exception is None or isinstance(result.exception, SystemExit), (args, result.exception)
        assert "Usage" in result.output and "error:" not in result.output, args
