"""Waking the enforcer the moment a change that may stop servers commits.

Suspending a project, removing a member, changing someone's training or roles, revoking
or expiring a grant, opening an incident or disabling an account: each writes an audit
event (:func:`enclave.audit.append_event` tells :func:`note_action`). When the unit of
work that wrote it commits, one datagram goes to the enforcer's socket
``ENCLAVE_HOME/run/enforcer.sock``, and the enforcer runs a round at once instead of at
its next poll. The datagram carries only the action names; the enforcer decides from the
database alone, so a forged poke can at most cause an extra round. Nothing listening (no
enforcer, or another machine) is fine: the periodic poll stays as the safety net.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import socket
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.orm import Session

from enclave.config import Settings

log = logging.getLogger(__name__)

# Audit actions after which a running server may have to stop.
WAKE_ACTIONS = frozenset({
    "project.transition",      # suspended, closed ...
    "project.member_remove",
    "user.update",             # training expiry, roles
    "user.disable",
    "grant.revoke",
    "grant.expire",
    "incident.open",           # an incident may suspend its person
})
SETTINGS_KEY = "enclave.settings"   # unit_of_work puts its Settings here
_PENDING = "enclave.wakeup.actions"
MAX_DATAGRAM = 4096


def socket_path(settings: Settings) -> Path:
    """Where the enforcer listens."""
    return settings.home / "run" / "enforcer.sock"


def _address(settings: Settings) -> str:
    """The socket's address: its path, or (a path too long for AF_UNIX, over 107 bytes)
    a Linux abstract name derived from it. A poke carries no authority either way."""
    path = str(socket_path(settings))
    if len(os.fsencode(path)) <= 100:
        return path
    return "\0enclave-enforcer-" + hashlib.sha256(os.fsencode(path)).hexdigest()[:32]


def note_action(session: Session, action: str) -> None:
    """Remember ``action`` of this unit of work; poke the enforcer after it commits."""
    if action not in WAKE_ACTIONS:
        return
    pending = session.info.get(_PENDING)
    if pending is None:
        pending = session.info[_PENDING] = []
        event.listen(session, "after_commit", _after_commit)
        event.listen(session, "after_rollback", lambda s: s.info.get(_PENDING, []).clear())
    pending.append(action)


def _after_commit(session: Session) -> None:
    pending = session.info.get(_PENDING) or []
    actions, pending[:] = sorted(set(pending)), []
    settings = session.info.get(SETTINGS_KEY)
    if actions and isinstance(settings, Settings):
        poke(settings, actions)


def poke(settings: Settings, actions: list[str]) -> bool:
    """Send one wake-up datagram; True if an enforcer received it."""
    message = json.dumps({"actions": actions})[:MAX_DATAGRAM].encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            sock.sendto(message, _address(settings))
        return True
    except OSError as exc:  # no enforcer listening: the poll will catch up
        log.debug("enforcer not woken (%s)", exc)
        return False


class WakeUpListener:
    """The enforcer's end: a datagram socket, readable from an asyncio loop."""

    def __init__(self, settings: Settings) -> None:
        self.path = socket_path(settings)
        self.address = _address(settings)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if self.address.startswith("\0"):
            self.sock.bind(self.address)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(self.path.parent, 0o700)
            self._unlink()  # left by an enforcer that did not stop cleanly
            self.sock.bind(self.address)
            os.chmod(self.path, 0o600)
        self.sock.setblocking(False)
        self.woken = asyncio.Event()
        self.actions: set[str] = set()

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.add_reader(self.sock.fileno(), self._read)

    def _read(self) -> None:
        while True:
            try:
                data = self.sock.recv(MAX_DATAGRAM)
            except BlockingIOError:
                break
            except OSError:
                break
            try:
                actions = json.loads(data).get("actions", [])
                self.actions.update(str(a) for a in actions if str(a) in WAKE_ACTIONS)
            except (ValueError, AttributeError):
                self.actions.add("unknown")
            self.woken.set()

    def take(self) -> list[str]:
        """The actions received since the last call (and clear the wake-up)."""
        self.woken.clear()
        taken, self.actions = sorted(self.actions), set()
        return taken

    def close(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        if loop is not None:
            loop.remove_reader(self.sock.fileno())
        self.sock.close()
        if not self.address.startswith("\0"):
            self._unlink()

    def _unlink(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
