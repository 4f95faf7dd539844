"""Researchers answer reviewers' comments on a returned request: who may, when, and that a
reply never tells a reviewer how the others voted."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from egress_world import World, draft, submit, to_state, vote_all
from enclave.audit import verify_chain
from enclave.db.models import AuditEvent
from enclave.egress import review
from enclave.egress import service as egress
from enclave.egress.schemas import request_detail
from enclave.enums import EgressStatus as S
from enclave.enums import ReviewDecision as D
from enclave.errors import InvalidInput, InvalidTransition, NotFound, PermissionDenied
from enclave.users import get_user

PATH = "tables/by_region.csv"


def _reply(world: World, rid: int, actor: str, message: str = "Rounded to 5 as asked.", path: str = PATH):
    with world.uow() as s:
        return egress.reply_to_comment(s, get_user(s, actor), world.env, rid, path, message)


def _detail(world: World, rid: int, actor: str):
    with world.uow() as s:
        return request_detail(s, get_user(s, actor), world.env, rid)


def test_reply_author_and_member_answer_a_returned_request_audited(world: World):
    rid = to_state(world, S.CHANGES_REQUESTED)
    _reply(world, rid, "rita")
    _reply(world, rid, "max", "The north count is a published figure.")
    replies = next(f for f in _detail(world, rid, "ria").file_list if f.path == PATH).replies
    assert [(r.author, r.round, r.message) for r in replies] == [
        ("rita", 1, "Rounded to 5 as asked."), ("max", 1, "The north count is a published figure.")]
    with world.uow() as s:
        events = s.scalars(select(AuditEvent).where(AuditEvent.action == egress.EgressAudit.REPLY)).all()
        assert [e.details["file"] for e in events] == [PATH, PATH]
        assert verify_chain(s).ok


@pytest.mark.parametrize("actor", ["ria", "outsider", "admin"])
def test_reply_refused_to_reviewers_outsiders_and_admins(world: World, actor: str):
    rid = to_state(world, S.CHANGES_REQUESTED)
    with pytest.raises(PermissionDenied):
        _reply(world, rid, actor)


@pytest.mark.parametrize("state", [S.DRAFT, S.IN_REVIEW, S.APPROVED, S.REJECTED, S.RELEASED, S.WITHDRAWN])
def test_reply_only_while_changes_are_requested(world: World, state: S):
    rid = to_state(world, state)
    with pytest.raises(InvalidTransition):
        _reply(world, rid, "rita")


def test_reply_bad_input_is_one_line(world: World):
    rid = to_state(world, S.CHANGES_REQUESTED)
    with pytest.raises(InvalidInput, match="--message"):
        _reply(world, rid, "rita", "   ")
    with pytest.raises(InvalidInput, match="at most"):
        _reply(world, rid, "rita", "x" * 5001)
    with pytest.raises(NotFound):
        _reply(world, rid, "rita", path="nothing/here.csv")


def test_reply_needs_a_comment_to_answer(world: World):
    # Returned by the checker (hard fail), no reviewer has commented yet.
    rid = draft(world, {"small.csv": b"region,count\nnorth,3\nsouth,85\n"})
    assert submit(world, rid) is S.CHANGES_REQUESTED
    with pytest.raises(InvalidInput, match="nothing to reply to"):
        _reply(world, rid, "rita", path="small.csv")


def test_reply_never_reveals_other_votes_to_a_reviewer_who_has_not_voted(world: World):
    rid = draft(world)
    submit(world, rid)
    vote_all(world, rid, "ria", D.REQUEST_CHANGES, "round the counts to 5")
    vote_all(world, rid, "rob", D.REQUEST_CHANGES, "suppress the small cells")
    _reply(world, rid, "rita", "Rounded and suppressed.")
    assert submit(world, rid) is S.IN_REVIEW
    with world.uow() as s:  # round 2: ria votes on one file; rex has not voted at all
        review.vote(s, get_user(s, "ria"), world.env, rid, PATH, D.APPROVE, "fine now")
    seen = next(f for f in _detail(world, rid, "rex").file_list if f.path == PATH)
    assert seen.votes == [] and seen.hidden_votes == 1
    assert [r.message for r in seen.replies] == ["Rounded and suppressed."]
    dumped = seen.model_dump_json()
    for secret in ("ria", "rob", "request_changes", "round the counts", "suppress the small", "approve"):
        assert secret not in dumped


def test_reply_through_the_cli_and_shown_by_egress_show(world: World):
    from typer.testing import CliRunner

    from enclave.cli.main import app

    rid = to_state(world, S.CHANGES_REQUESTED)
    runner = CliRunner()
    done = runner.invoke(app, ["--as", "rita", "egress", "reply", str(rid), PATH, "--message", "Rounded to 5."])
    assert done.exit_code == 0, done.output
    shown = runner.invoke(app, ["--as", "ria", "egress", "show", str(rid)])
    assert f"reply on {PATH} (round 1) by rita: Rounded to 5." in shown.output
    refused = runner.invoke(app, ["--as", "ria", "egress", "reply", str(rid), PATH, "--message", "x"])
    assert refused.exit_code != 0 and refused.stderr.strip().count("\n") == 0 and "Traceback" not in refused.stderr


def test_egress_show_prints_the_cited_runs(world: World):
    from typer.testing import CliRunner

    from enclave.cli.main import app
    from enclave.jobs import service as jobs

    notebook = world.settings.workspaces_dir / world.slug / "notebooks" / "counts.ipynb"
    notebook.parent.mkdir(parents=True)
    # A notebook takes only the parameters its cell tagged 'parameters' declares.
    notebook.write_bytes(b'{"cells": [{"cell_type": "code", "execution_count": null, "id": "p", '
                         b'"metadata": {"tags": ["parameters"]}, "outputs": [], "source": ["min_age = 18"]}], '
                         b'"metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
    with world.uow() as s:
        run_id = jobs.submit_job(s, get_user(s, "rita"), world.settings, world.slug, "notebooks/counts.ipynb",
                                 {"min_age": 50}).id
    runner = CliRunner()
    created = runner.invoke(app, ["--as", "rita", "egress", "create", world.slug, "--cite-run", str(run_id)])
    assert created.exit_code == 0, created.output
    rid = int(created.output.split()[3])  # "created egress request N (draft): ..."
    shown = runner.invoke(app, ["--as", "max", "egress", "show", str(rid)])
    assert shown.exit_code == 0, shown.output
    assert f"cited run {run_id}: queued notebooks/counts.ipynb" in shown.output and "min_age" in shown.output
