"""Each egress action passes exactly one access check; no request falls out of every queue;
the inbox counts what waits on each person; a request in review can be withdrawn."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from egress_world import World, draft, release, status_of, submit, to_state, vote_all
from enclave.cli.main import app
from enclave.egress import access, inbox, queues, review
from enclave.egress import release as release_service
from enclave.egress import service as egress
from enclave.egress.schemas import request_detail
from enclave.enums import EgressStatus as S
from enclave.enums import ReviewDecision as D
from enclave.errors import InvalidTransition, PermissionDenied
from enclave.users import get_user
from enclave.web.egress_views import outbox_files


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Every call of a check of enclave.egress.access (can_* included: they call their check)."""
    seen: Counter[str] = Counter()
    for name in [n for n in vars(access) if n.startswith("check_")]:
        original = getattr(access, name)

        def counted(*args, _name=name, _original=original, **kwargs):  # type: ignore[no-untyped-def]
            seen[_name] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(access, name, counted)
    return seen


def _as(world: World, name: str, step: Callable) -> object:  # type: ignore[type-arg]
    with world.uow() as s:
        return step(s, get_user(s, name))


def test_access_each_egress_action_goes_through_exactly_one_check(world: World, calls: Counter[str],
                                                                 tmp_path: Path) -> None:
    env = world.env
    rid = draft(world)
    returned = to_state(world, S.CHANGES_REQUESTED)
    rid_review = to_state(world, S.IN_REVIEW)
    approved = to_state(world, S.APPROVED)
    released = to_state(world, S.RELEASED)
    world.write("extra.csv", b"region,count\nwest,150\n")
    actions: list[tuple[str, str, Callable]] = [  # type: ignore[type-arg]
        ("check_create", "rita", lambda s, a: egress.create_request(s, a, env, world.slug, "t")),
        ("check_edit", "rita", lambda s, a: egress.set_group(s, a, env, rid, "main", context="c")),
        ("check_edit", "rita", lambda s, a: egress.add_files(s, a, env, rid, ["extra.csv"], "main")),
        ("check_edit", "rita", lambda s, a: egress.remove_file(s, a, env, rid, "extra.csv")),
        ("check_submit", "rita", lambda s, a: egress.submit_request(s, a, env, rid)),
        ("check_reply", "max", lambda s, a: egress.reply_to_comment(s, a, env, returned, "analysis.ipynb", "fixed")),
        ("check_withdraw", "rita", lambda s, a: egress.withdraw_request(s, a, env, returned)),
        ("check_review", "rex", lambda s, a: review.vote(s, a, env, rid_review, "analysis.ipynb", D.APPROVE, "ok")),
        ("check_release", "rex", lambda s, a: release_service.release_request(s, a, env, approved)),
        ("check_download", "max", lambda s, a: release_service.download_release(s, a, env, released, tmp_path / "d")),
        ("check_view", "ria", lambda s, a: egress.view_request(s, a, released)),
        ("check_see_outbox", "max", lambda s, a: outbox_files(s, a, world.settings, world.slug)),
    ]
    for check, actor, step in actions:
        calls.clear()
        _as(world, actor, step)
        assert calls == Counter({check: 1}), f"{check} by {actor}: {dict(calls)}"
    # A refusal comes from that same one check.
    calls.clear()
    with pytest.raises(PermissionDenied, match="only its author rita may"):
        _as(world, "max", lambda s, a: egress.withdraw_request(s, a, env, rid_review))
    assert calls == Counter({"check_withdraw": 1})


def test_queues_approved_request_waits_for_release_and_says_on_whom(world: World) -> None:
    rid = to_state(world, S.IN_REVIEW)
    with world.uow() as s:
        detail = request_detail(s, get_user(s, "rita"), world.env, rid)
        assert detail.waiting_on == "independent reviewers (0 of 2 reviews of every file)"
    vote_all(world, rid, "ria")
    vote_all(world, rid, "rob")
    assert status_of(world, rid) is S.APPROVED
    with world.uow() as s:
        for name in ("ria", "rob", "rex", "admin"):  # the reviewers themselves may release, and so may admins
            assert [r.id for r in queues.release_queue(s, get_user(s, name))] == [rid], name
        assert queues.release_queue(s, get_user(s, "rhea")) == []  # a reviewer in the project
        with pytest.raises(PermissionDenied, match="needs the admin or reviewer role"):
            queues.release_queue(s, get_user(s, "rita"))
        assert queues.review_queue(s, get_user(s, "rex")) == []  # out of review ...
        detail = request_detail(s, get_user(s, "rita"), world.env, rid)
        assert detail.waiting_on == "a releaser (a reviewer or admin outside project heart-study)"  # ... never "system"
        assert request_detail(s, get_user(s, "rex"), world.env, rid).may_release
        assert not request_detail(s, get_user(s, "rhea"), world.env, rid).may_release
    release(world, rid, "rex")
    with world.uow() as s:
        assert queues.release_queue(s, get_user(s, "rex")) == []
        assert request_detail(s, get_user(s, "rita"), world.env, rid).waiting_on is None


def test_queues_no_open_request_is_in_nobodys_queue(world: World) -> None:
    """Every request that is not final shows in the inbox of someone who can move it on."""
    everyone = ["rita", "max", "ria", "rob", "rex", "rhea", "admin", "outsider"]
    for state in (S.DRAFT, S.IN_REVIEW, S.CHANGES_REQUESTED, S.APPROVED):
        rid = to_state(world, state)
        with world.uow() as s:
            request = egress.get_request(s, rid)
            waiting = queues.waiting_on(s, world.env, request)
            assert waiting and waiting != "system", state
            holders = [n for n in everyone
                       if any(r.id == rid for kind in ("reviews_waiting", "changes_requested", "waiting_release")
                              for r in getattr(inbox.inbox(s, get_user(s, n)), kind))]
            listed = [n for n in everyone if any(r.id == rid for r in egress.list_requests(s, get_user(s, n)))]
        if state is S.DRAFT:  # the author's own list says it waits on them
            assert "rita" in listed and waiting.startswith("rita (author)")
        else:
            assert holders, f"a request {state} is in nobody's inbox"


def test_inbox_counts_reviews_returns_releases_and_release_queue(world: World, tmp_path: Path) -> None:
    rid = to_state(world, S.IN_REVIEW)
    with world.uow() as s:
        assert inbox.inbox(s, get_user(s, "ria")).counts["reviews_waiting"] == 1
        assert inbox.inbox(s, get_user(s, "rhea")).counts["reviews_waiting"] == 0  # her own project
    vote_all(world, rid, "ria", D.REQUEST_CHANGES, "round the counts to 5")
    vote_all(world, rid, "rob", D.REQUEST_CHANGES, "and say which years")
    with world.uow() as s:
        rita = inbox.inbox(s, get_user(s, "rita"))
        assert rita.counts == {"reviews_waiting": 0, "changes_requested": 1, "released": 0, "waiting_release": 0}
        assert [u["to"] for u in rita.updates][:1] == ["changes_requested"]  # the notifiers' events, newest first
        assert inbox.inbox(s, get_user(s, "max")).counts["changes_requested"] == 0  # a member, not the author
        # The comments the researcher must act on are on the request.
        votes = [v for f in request_detail(s, get_user(s, "rita"), world.env, rid).file_list for v in f.votes]
        assert {v.comment for v in votes} == {"round the counts to 5", "and say which years"}
    submit(world, rid)
    vote_all(world, rid, "ria")
    vote_all(world, rid, "rob")
    with world.uow() as s:
        assert inbox.inbox(s, get_user(s, "rex")).counts["waiting_release"] == 1
        assert inbox.inbox(s, get_user(s, "admin")).counts["waiting_release"] == 1
    release(world, rid, "rex")
    with world.uow() as s:
        assert inbox.inbox(s, get_user(s, "rex")).total == 0
        assert inbox.inbox(s, get_user(s, "rita")).counts["released"] == 1
        assert inbox.inbox(s, get_user(s, "max")).counts["released"] == 1
    with world.uow() as s:
        release_service.download_release(s, get_user(s, "max"), world.env, rid, tmp_path / "got")
    with world.uow() as s:
        assert inbox.inbox(s, get_user(s, "max")).counts["released"] == 0  # downloaded
        assert inbox.inbox(s, get_user(s, "rita")).counts["released"] == 1  # not yet by her


def test_withdraw_a_request_in_review_takes_it_out_of_every_queue(world: World) -> None:
    rid = to_state(world, S.IN_REVIEW)
    with world.uow() as s:
        review.vote(s, get_user(s, "ria"), world.env, rid, "analysis.ipynb", D.APPROVE, "fine")
    with world.uow() as s, pytest.raises(PermissionDenied, match="only its author rita may"):
        egress.withdraw_request(s, get_user(s, "max"), world.env, rid)
    with world.uow() as s:
        egress.withdraw_request(s, get_user(s, "rita"), world.env, rid)
    assert status_of(world, rid) is S.WITHDRAWN
    with world.uow() as s:
        assert queues.review_queue(s, get_user(s, "rob")) == []
        assert inbox.inbox(s, get_user(s, "rob")).total == 0
    with world.uow() as s, pytest.raises(InvalidTransition, match="votes are taken only while it is in review"):
        review.vote(s, get_user(s, "rob"), world.env, rid, "analysis.ipynb", D.APPROVE, "fine")
    # An approved request is no longer the author's to withdraw: it waits for release.
    approved = to_state(world, S.APPROVED)
    with world.uow() as s, pytest.raises(InvalidTransition, match="cannot become withdrawn"):
        egress.withdraw_request(s, get_user(s, "rita"), world.env, approved)


def test_cli_list_queue_release_shows_what_waits_and_on_whom(world: World) -> None:
    rid = to_state(world, S.APPROVED)
    other = to_state(world, S.IN_REVIEW)
    runner = CliRunner()
    out = runner.invoke(app, ["--as", "rex", "egress", "list", "--queue", "release", "--json"], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    rows = json.loads(out.output)
    assert [(r["id"], r["status"]) for r in rows] == [(rid, "approved")]
    assert rows[0]["waiting_on"].startswith("a releaser")
    out = runner.invoke(app, ["--as", "rex", "egress", "list", "--queue", "review", "--json"], catch_exceptions=False)
    assert [r["id"] for r in json.loads(out.output)] == [other]
    out = runner.invoke(app, ["--as", "rita", "egress", "list", "--queue", "release"])
    assert out.exit_code != 0 and "needs the admin or reviewer role" in out.stderr
    out = runner.invoke(app, ["--as", "rex", "egress", "inbox", "--json"], catch_exceptions=False)
    assert json.loads(out.output)["counts"] == {"reviews_waiting": 1, "changes_requested": 0, "released": 0,
                                                "waiting_release": 1}
