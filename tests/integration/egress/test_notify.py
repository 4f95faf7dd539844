"""Notifications after each state change: a real local SMTP server and HTTP sink, and a
notifier that fails without blocking or undoing anything."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller

from egress_world import World, draft, status_of, submit, vote_all
from enclave.audit import list_events
from enclave.egress.policy import EgressPolicy, LogNotifier, SmtpNotifier, WebhookNotifier
from enclave.egress.service import withdraw_request
from enclave.enums import EgressStatus as S
from enclave.users import get_user
from tests.ports import free_port


class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], str]] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        self.messages.append((list(envelope.rcpt_tos), envelope.content.decode("utf-8", "replace")))
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[int, _Mailbox]]:
    mailbox = _Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, mailbox
    finally:
        controller.stop()


@pytest.fixture
def sink() -> Iterator[tuple[str, list[dict]]]:
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's hook name
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/egress", received
    finally:
        server.shutdown()
        server.server_close()


def test_notify_smtp_webhook_and_log_on_every_change(world: World, smtp, sink) -> None:
    port, mailbox = smtp
    url, received = sink
    world.env = replace(world.env, policy=EgressPolicy(notifiers=(
        LogNotifier(kind="log", path="notes.log"),
        SmtpNotifier(kind="smtp", host="127.0.0.1", port=port, sender="enclave@site.test",
                     to=("checkers@site.test",), user_domain="site.test"),
        WebhookNotifier(kind="webhook", url=url),
    )))
    rid = draft(world)
    submit(world, rid)
    vote_all(world, rid, "ria")
    vote_all(world, rid, "rob")
    expected = [("draft", "submitted"), ("submitted", "in_review"), ("in_review", "approved")]
    assert [(n["from"], n["to"]) for n in received] == expected
    assert all(n["request"] == rid and n["project"] == world.slug for n in received)
    assert len(mailbox.messages) == 3
    recipients, body = mailbox.messages[-1]
    assert sorted(recipients) == ["checkers@site.test", "rita@site.test"]
    assert f"egress request {rid} (heart-study) is now approved" in body
    lines = [json.loads(x) for x in (world.settings.home / "notes.log").read_text().splitlines()]
    assert [(n["from"], n["to"]) for n in lines] == expected


def test_notify_failure_never_blocks_and_is_recorded(world: World, sink) -> None:
    url, received = sink
    dead = f"http://127.0.0.1:{free_port()}/nobody-listens"
    world.env = replace(world.env, policy=EgressPolicy(notifiers=(
        WebhookNotifier(kind="webhook", url=dead, timeout_seconds=2),
        SmtpNotifier(kind="smtp", host="127.0.0.1", port=free_port(), sender="e@site.test", to=("x@site.test",),
                     timeout_seconds=2),
        WebhookNotifier(kind="webhook", url=url),
    )))
    rid = draft(world)
    assert submit(world, rid) is S.IN_REVIEW
    assert status_of(world, rid) is S.IN_REVIEW
    # The working notifier still heard of both changes.
    assert [(n["from"], n["to"]) for n in received] == [("draft", "submitted"), ("submitted", "in_review")]
    with world.uow() as s:
        failures = list(list_events(s, action="egress.notify_failed"))
    assert len(failures) == 2
    assert all(len(e.details["failures"]) == 2 for e in failures)
    assert any("webhook" in f for f in failures[0].details["failures"])
    assert any("smtp" in f for f in failures[0].details["failures"])


def test_notify_nothing_sent_for_a_change_that_rolled_back(world: World, sink) -> None:
    url, received = sink
    world.env = replace(world.env, policy=EgressPolicy(notifiers=(WebhookNotifier(kind="webhook", url=url),)))
    rid = draft(world)
    with pytest.raises(RuntimeError), world.uow() as s:
        withdraw_request(s, get_user(s, "rita"), world.env, rid)
        raise RuntimeError("the unit of work fails after the change was queued")
    assert status_of(world, rid) is S.DRAFT
    assert received == []
