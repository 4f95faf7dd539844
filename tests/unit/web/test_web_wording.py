"""The web's wording of errors: command-line flags and commands never reach a browser."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest
import typer

from enclave.cli.main import GROUPS
from enclave.errors import InvalidInput, NotFound
from enclave.web.wording import has_cli_text, web_message, without_cli

REPO = Path(__file__).resolve().parents[3]


def _commands() -> list[str]:
    out = []
    for module, group in GROUPS:
        command = typer.main.get_command(importlib.import_module(module).app)
        for name in getattr(command, "commands", {}) or [""]:
            out.append(f"enclave {group} {name}".strip())
    return out


@pytest.mark.parametrize("command", _commands())
def test_wording_recognises_every_command_of_the_cli(command: str):
    assert has_cli_text(f"see '{command}'")
    if command.count(" ") == 2:  # a group's sub-command is recognised unquoted too
        assert has_cli_text(f"run {command} first")


@pytest.mark.parametrize("text", [
    "there is no enclave user named 'x': ask an administrator",
    "a is signed in to the hub but is not an enclave user",
    "the enclave project team will help", "a — dash and a range 3-5", "Trusted Research Environment",
])
def test_wording_leaves_plain_words_alone(text: str):
    assert not has_cli_text(text) and without_cli(text) == text


def test_wording_drops_command_line_advice_and_keeps_the_problem():
    assert without_cli("expiry 2030-01-01 is after the project's end date 2029-01-01: give an earlier --expires") \
        == "expiry 2030-01-01 is after the project's end date 2029-01-01: ask the enclave team for help"
    assert without_cli("project a already has grant 3 on d: revoke it first ('enclave grant revoke 3')") \
        == "project a already has grant 3 on d: revoke it first"
    assert without_cli("say why with --as USER") == "this could not be done here: ask the enclave team for help"


def test_wording_prefers_the_errors_own_web_words():
    exc = InvalidInput("give --expires YYYY-MM-DD after today", field="expires", web="the last day must be after today")
    assert str(exc) == "give --expires YYYY-MM-DD after today"  # the CLI keeps its own words
    assert web_message(exc) == "the last day must be after today" and exc.field == "expires"
    assert web_message(NotFound("no user 'x': see 'enclave user list'")) == "no user 'x': ask the enclave team for help"


def _raised_messages() -> list[tuple[str, int, str]]:
    """Every literal message of a raised enclave error outside the CLI, with whether it has web words."""
    found = []
    for path in (REPO / "enclave").rglob("*.py"):
        if "cli" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and node.exc.args:
                first = node.exc.args[0]
                parts = [first] if isinstance(first, ast.Constant) else getattr(first, "values", [])
                text = "".join(p.value if isinstance(p, ast.Constant) and isinstance(p.value, str) else "X"
                               for p in parts)
                if text:
                    found.append((str(path.relative_to(REPO)), node.lineno, text))
    return found


def test_wording_no_raised_message_reaches_a_browser_with_command_line_text():
    messages = _raised_messages()
    assert len(messages) > 100
    with_cli = [(f, line, text) for f, line, text in messages if has_cli_text(text)]
    assert with_cli, "the control: some messages do speak of the CLI"
    for filename, line, text in with_cli:
        assert not has_cli_text(without_cli(text)), (filename, line, without_cli(text))
