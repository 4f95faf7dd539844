"""Announcing state changes: log file, e-mail and webhook notifiers, sent after commit.

Services call :func:`queue` in their unit of work; the notes go out only once that unit of
work has committed (a SQLAlchemy ``after_commit`` hook) and are dropped on rollback, so a
notification never announces a change that did not happen. Sending never raises: a
failing notifier is logged and recorded in the audit log as ``egress.notify_failed``,
and the state change stands.
"""

from __future__ import annotations

import json
import logging
import smtplib
from email.message import EmailMessage
from typing import Any

import httpx
from sqlalchemy import event
from sqlalchemy.orm import Session

from enclave.egress.policy import EgressEnv, LogNotifier, SmtpNotifier, WebhookNotifier

log = logging.getLogger(__name__)

_KEY = "enclave.egress.notifications"
NOTIFY_FAILED = "egress.notify_failed"


def queue(session: Session, env: EgressEnv, note: dict[str, Any]) -> None:
    """Send ``note`` through every configured notifier once ``session`` commits."""
    pending = session.info.get(_KEY)
    if pending is None:
        pending = session.info[_KEY] = []
        event.listen(session, "after_commit", _after_commit)
        event.listen(session, "after_rollback", _after_rollback)
    pending.append((env, note))


def _after_rollback(session: Session) -> None:
    session.info.get(_KEY, []).clear()


def _after_commit(session: Session) -> None:
    pending = session.info.get(_KEY, [])
    notes, pending[:] = list(pending), []
    for env, note in notes:
        dispatch(env, note)


def dispatch(env: EgressEnv, note: dict[str, Any]) -> list[str]:
    """Send one note through every notifier; return (and record) the failures."""
    failures: list[str] = []
    for notifier in env.policy.notifiers:
        try:
            if isinstance(notifier, LogNotifier):
                _send_log(env, notifier, note)
            elif isinstance(notifier, SmtpNotifier):
                _send_smtp(notifier, note)
            elif isinstance(notifier, WebhookNotifier):
                _send_webhook(notifier, note)
        except Exception as exc:  # noqa: BLE001 - a notifier must never undo or block a change
            reason = f"{notifier.kind}: {type(exc).__name__}: {exc}"
            log.warning("egress notification failed (%s) for request %s", reason, note.get("request"))
            failures.append(reason)
    if failures:
        _record_failures(env, note, failures)
    return failures


def _record_failures(env: EgressEnv, note: dict[str, Any], failures: list[str]) -> None:
    from enclave.audit import append_event
    from enclave.db.session import unit_of_work

    try:
        with unit_of_work(env.settings, check=False) as session:
            append_event(session, "system", NOTIFY_FAILED, project=note.get("project"),
                         target=f"egress:{note.get('request')}",
                         details={"status": note.get("to"), "failures": failures})
    except Exception:  # noqa: BLE001 - recording is best effort; the log line above remains
        log.exception("could not record egress notification failures")


def subject(note: dict[str, Any]) -> str:
    return f"[enclave] egress request {note['request']} ({note['project']}) is now {note['to']}"


def _send_log(env: EgressEnv, notifier: LogNotifier, note: dict[str, Any]) -> None:
    path = env.log_path(notifier)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(note, sort_keys=True, default=str) + "\n")


def _send_smtp(notifier: SmtpNotifier, note: dict[str, Any]) -> None:
    recipients = list(notifier.to)
    if notifier.user_domain:
        recipients += [f"{name}@{notifier.user_domain}" for name in note.get("people", [])]
    if not recipients:
        return
    message = EmailMessage()
    message["From"] = notifier.sender
    message["To"] = ", ".join(recipients)
    message["Subject"] = subject(note)
    message.set_content(
        f"{subject(note)}.\n\nChanged by {note['actor']} at {note['at']} (was {note['from']}).\n"
        f"See: enclave egress show {note['request']}\n"
    )
    with smtplib.SMTP(notifier.host, notifier.port, timeout=notifier.timeout_seconds) as smtp:
        smtp.send_message(message)


def _send_webhook(notifier: WebhookNotifier, note: dict[str, Any]) -> None:
    response = httpx.post(notifier.url, json=note, timeout=notifier.timeout_seconds)
    response.raise_for_status()
