"""Errors in the web's words: no command-line flags or commands in a browser.

A domain error may carry its own web wording (``EnclaveError.web``) and the form field
it concerns (``EnclaveError.field``). An error without a web wording whose message
still gives a command-line instruction ("give --expires ...", "see 'enclave user list'")
loses that instruction here, so nothing the CLI would say reaches a browser.
"""

from __future__ import annotations

import re

from enclave.errors import EnclaveError

# The CLI's command groups and sub-commands (tests/unit/web/test_web_wording.py checks
# that every command of `enclave` is matched).
_GROUPS = "db|user|project|audit|policy|dataset|grant|optout|egress|job|hub|incident|demo|keys|backup"
_COMMANDS = (
    "activate|add|add-member|approve|break-glass|cancel|check|clear|close|code|count|create|download|enable-user|"
    "enforce|enrol-totp|expire|generate|import|inbox|ingest|keygen|list|load|logs|refresh|register-details|reject|"
    "release|remove|remove-member|reply|rerun|restore|review|revoke|roles|rotate|set-password|setup|show|submit|"
    "suspend|training|upgrade|verify|versions|withdraw|worker"
)
CLI_TEXT = re.compile(
    rf"(?<![\w-])--[a-zA-Z][\w-]*"  # a flag
    rf"|\benclave\s+(?:--as\s+\S+\s+)?(?:{_GROUPS})\s+(?:{_COMMANDS})\b"  # a command
    rf"|\benclave\s+(?:{_GROUPS})\b(?=['\"`)])"  # a quoted command group
    rf"|\bENCLAVE_USER\b"
)
_CLAUSE = re.compile(r"(: |; )")
_BRACKETED = re.compile(r"\s*\([^()]*\)")
FALLBACK_ADVICE = "ask the enclave team for help"


def has_cli_text(text: str) -> bool:
    """Whether ``text`` mentions a command-line flag or an ``enclave`` command."""
    return CLI_TEXT.search(text) is not None


def without_cli(text: str) -> str:
    """``text`` with every clause that gives a command-line instruction left out.

    Messages read "what is wrong: what to do"; a bracketed or colon/semicolon-separated
    clause naming a flag or command is dropped, and if nothing but the problem is left,
    the advice becomes to ask an administrator.
    """
    if not has_cli_text(text):
        return text
    text = _BRACKETED.sub(lambda m: "" if has_cli_text(m.group(0)) else m.group(0), text)
    parts = _CLAUSE.split(text)
    clauses, seps = parts[0::2], parts[1::2]
    kept: list[str] = []
    for i, clause in enumerate(clauses):
        if has_cli_text(clause):
            continue
        if kept:
            kept.append(seps[i - 1])
        kept.append(clause)
    if not kept:
        return f"this could not be done here: {FALLBACK_ADVICE}"
    result = "".join(kept).strip()
    if len(kept) == 1:  # only the problem was left: say what to do instead
        result = f"{result}: {FALLBACK_ADVICE}"
    return result


def web_message(exc: EnclaveError) -> str:
    """What a browser shows for ``exc``: its web wording, or its message without CLI text."""
    return exc.web or without_cli(str(exc))
