"""Egress pages: the researcher's requests and the reviewer's queue and file review."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse

from enclave.egress import access, inbox, queues, release, review, service
from enclave.egress.policy import EgressEnv
from enclave.egress.schemas import EgressRequestOut, request_detail, rows
from enclave.enums import ProjectStatus, ReviewDecision
from enclave.errors import InvalidInput
from enclave.projects.service import projects_of
from enclave.web import egress_views, jobs_views, preview, readmodels
from enclave.web.auth import Identity
from enclave.web.confirm import check_confirmed
from enclave.web.context import acting, check_console, render, signed_in, web
from enclave.web.pages.forms import done_message, form_fields

router = APIRouter()


def _env(request: Request) -> EgressEnv:
    return EgressEnv.load(web(request).settings)


def _back(request: Request, where: str, done: str) -> RedirectResponse:
    return RedirectResponse(f"{web(request).prefix}/{where}?done={done}", status_code=303)


def reviewer(ident: Identity = Depends(signed_in)) -> Identity:
    check_console(ident, "review")
    return ident


@router.get("/egress")
def my_requests(request: Request, ident: Identity = Depends(signed_in)):
    """My projects' egress requests, and a form to start one."""
    with acting(request, ident) as (session, actor):
        mine = [p.slug for p in projects_of(session, actor, ProjectStatus.ACTIVE)]
        member_of = {p.slug for p in projects_of(session, actor)}
        listed = rows(session, _env(request), [r for r in service.list_requests(session, actor)
                                               if r.project.slug in member_of])
    return render(request, "egress/list.html", requests=list(reversed(listed)), projects=mine,
                  done=done_message(request))


@router.post("/egress")
async def create(request: Request, ident: Identity = Depends(signed_in)):
    data = await form_fields(request)
    env = _env(request)
    with acting(request, ident) as (session, actor):
        created = service.create_request(session, actor, env, data.get("project", ""), data.get("title", "").strip())
        number = created.id
    return _back(request, f"egress/{number}", "created")


@router.get("/egress/{request_id}")
def request_page(request: Request, request_id: int, ident: Identity = Depends(signed_in)):
    env = _env(request)
    with acting(request, ident) as (session, actor):
        detail = request_detail(session, actor, env, request_id)
        outbox = []
        if detail.may_edit:
            present = {f.path for f in detail.file_list}
            outbox = [f for f in egress_views.outbox_files(session, actor, env.settings, detail.project)
                      if f["path"] not in present]
        origins = jobs_views.file_origins(session, actor, detail)
        runs = jobs_views.cited_runs(session, actor, detail)
        summaries = readmodels.check_summaries(session, actor, env, request_id)
        may_reply = detail.status == "changes_requested" and access.can_reply(actor, service.get_request(session, request_id))
    return render(request, "egress/request.html", req=detail, outbox=outbox, origins=origins, runs=runs,
                  may_reply=may_reply, summaries=summaries, done=done_message(request))


@router.get("/egress/{request_id}/file")
def request_file(request: Request, request_id: int, path: str, part: int = 0, ident: Identity = Depends(signed_in)):
    """A file of my project's request in the canonical form that reviewers see and release writes."""
    env = _env(request)
    with acting(request, ident) as (session, actor):
        detail = request_detail(session, actor, env, request_id)
        view = preview.file_view(session, actor, env, request_id, path, part)
        # The project's members see the outcome of each cell, never the evidence's figures.
        ev = readmodels.evidence_view(session, actor, env, request_id, view, figures=False)
    entry = next(f for f in detail.file_list if f.path == view.path)
    return render(request, "egress/file.html", req=detail, view=view, visible=preview.visible, ev=ev, entry=entry)


@router.post("/egress/{request_id}/files")
async def add_files(request: Request, request_id: int, ident: Identity = Depends(signed_in)):
    form = await request.form()
    paths = [p for p in form.getlist("paths") if isinstance(p, str)]
    data = await form_fields(request)
    env = _env(request)
    with acting(request, ident) as (session, actor):
        service.add_files(session, actor, env, request_id, paths, data.get("group", "").strip(),
                          data.get("context") or None, data.get("controls") or None)
    return _back(request, f"egress/{request_id}", "files_added")


@router.post("/egress/{request_id}/files/remove")
async def remove_file(request: Request, request_id: int, ident: Identity = Depends(signed_in)):
    data = await form_fields(request)
    env = _env(request)
    with acting(request, ident) as (session, actor):
        service.remove_file(session, actor, env, request_id, data.get("path", ""))
    return _back(request, f"egress/{request_id}", "file_removed")


@router.post("/egress/{request_id}/submit")
async def submit(request: Request, request_id: int, ident: Identity = Depends(signed_in)):
    data = await form_fields(request)
    env = _env(request)
    with acting(request, ident) as (session, actor):
        service.submit_request(session, actor, env, request_id, data.get("exception") or None)
    return _back(request, f"egress/{request_id}", "submitted")


@router.post("/egress/{request_id}/reply")
async def reply(request: Request, request_id: int, ident: Identity = Depends(signed_in)):
    """The author or a member answers the reviewers' comments on one file."""
    data = await form_fields(request)
    env = _env(request)
    with acting(request, ident) as (session, actor):
        service.reply_to_comment(session, actor, env, request_id, data.get("path", ""), data.get("message", ""))
    return _back(request, f"egress/{request_id}", "replied")


# Irreversible steps ask first (enclave.web.confirm): GET shows what will happen and a form
# whose POST carries confirm=yes.
IRREVERSIBLE = {
    "withdraw": ("Withdraw this request?",
                 "A withdrawn request is final: its files are no longer reviewed and it cannot be resubmitted. "
                 "To send the outputs again, start a new request.", "Withdraw for good"),
    "release": ("Release these files?",
                "The files leave the enclave in the form reviewers saw, with a signed release record. "
                "A release cannot be undone.", "Release for good"),
}


@router.get("/egress/{request_id}/withdraw")
def confirm_withdraw(request: Request, request_id: int, ident: Identity = Depends(signed_in)):
    return _confirm_page(request, request_id, "withdraw", ident)


@router.get("/egress/{request_id}/release")
def confirm_release(request: Request, request_id: int, ident: Identity = Depends(signed_in)):
    return _confirm_page(request, request_id, "release", ident)


def _confirm_page(request: Request, request_id: int, step: str, ident: Identity):
    """The confirmation page of an irreversible step: what will happen, and one button."""
    env = _env(request)
    with acting(request, ident) as (session, actor):
        detail = request_detail(session, actor, env, request_id)
    allowed = detail.may_withdraw if step == "withdraw" else detail.may_release
    title, warning, button = IRREVERSIBLE[step]
    return render(request, "egress/confirm.html", req=detail, step=step, title=title, warning=warning,
                  button=button, allowed=allowed)


@router.post("/egress/{request_id}/withdraw")
async def withdraw(request: Request, request_id: int, ident: Identity = Depends(signed_in)):
    data = await form_fields(request)
    check_confirmed(data, "withdraw the request")
    env = _env(request)
    with acting(request, ident) as (session, actor):
        service.withdraw_request(session, actor, env, request_id)
    return _back(request, f"egress/{request_id}", "withdrawn")


@router.post("/egress/{request_id}/release")
async def release_request(request: Request, request_id: int, ident: Identity = Depends(signed_in)):
    """Release an approved request (an independent reviewer or admin), once confirmed."""
    if not (ident.is_reviewer or ident.is_admin):  # the hub's console scopes too, as the API asks
        check_console(ident, "review")
    data = await form_fields(request)
    check_confirmed(data, "release the request")
    env = _env(request)
    with acting(request, ident) as (session, actor):
        release.release_request(session, actor, env, request_id)
    return _back(request, "review" if ident.is_reviewer else "inbox", "released")


@router.get("/inbox")
def inbox_page(request: Request, ident: Identity = Depends(signed_in)):
    """What waits on me, and what happened to my requests."""
    env = _env(request)
    with acting(request, ident) as (session, actor):
        box = inbox.inbox(session, actor)
        lists = {name: rows(session, env, getattr(box, name)) for name in box.counts}
        shown = {"changes_requested", "released"} | ({"reviews_waiting"} if access.can_reviewer(actor) else set()) | (
            {"waiting_release"} if access.can_releaser(actor) else set())
    # The badge shows the inbox built here: no second count.
    return render(request, "inbox.html", box=box, lists=lists, shown=shown, inbox_total=box.total,
                  done=done_message(request))


@router.get("/review")
def queue(request: Request, ident: Identity = Depends(reviewer)):
    """What waits on me, oldest first: requests to review, then approved ones to release."""
    env = _env(request)
    with acting(request, ident) as (session, actor):
        waiting = rows(session, env, queues.review_queue(session, actor))
        to_release = rows(session, env, queues.release_queue(session, actor))
    return render(request, "review/queue.html", queue=waiting, to_release=to_release, done=done_message(request))


@router.get("/review/{request_id}")
def review_request(request: Request, request_id: int, ident: Identity = Depends(reviewer)):
    env = _env(request)
    with acting(request, ident) as (session, actor):
        egress_views.check_may_review(actor, session, request_id)
        detail = request_detail(session, actor, env, request_id)
        origins = jobs_views.file_origins(session, actor, detail)
        runs = jobs_views.cited_runs(session, actor, detail)
        summaries = readmodels.check_summaries(session, actor, env, request_id)
    return render(request, "review/request.html", req=detail, origins=origins, runs=runs, summaries=summaries,
                  done=done_message(request))


@router.get("/review/{request_id}/file")
def review_file(request: Request, request_id: int, path: str, part: int = 0, ident: Identity = Depends(reviewer)):
    env = _env(request)
    with acting(request, ident) as (session, actor):
        egress_views.check_may_review(actor, session, request_id)
        detail = request_detail(session, actor, env, request_id)
        view = preview.file_view(session, actor, env, request_id, path, part)
        origins = jobs_views.file_origins(session, actor, detail)
        runs = jobs_views.cited_runs(session, actor, detail)
        ev = readmodels.evidence_view(session, actor, env, request_id, view, figures=True)
        earlier = readmodels.earlier_outputs(session, actor, request_id)
        similar = readmodels.most_similar_table(session, actor, env, request_id, view, earlier)
    entry = next(f for f in detail.file_list if f.path == view.path)
    return render(request, "review/file.html", req=detail, view=view, visible=preview.visible, entry=entry, file_origin=origins.get(entry.path),
                  runs=runs, ev=ev, earlier=earlier, similar=similar)


@router.get("/review/{request_id}/earlier/{earlier_id}/file")
def earlier_file(request: Request, request_id: int, earlier_id: int, path: str, part: int = 0,
                 ident: Identity = Depends(reviewer)):
    """A file the project released before, as it left, for the reviewers of a later request."""
    env = _env(request)
    with acting(request, ident) as (session, actor):
        egress_views.check_may_review(actor, session, request_id)
        readmodels.check_earlier(session, actor, request_id, earlier_id, path)
        view = preview.file_view(session, actor, env, earlier_id, path, part)
        earlier = EgressRequestOut.of(service.view_request(session, actor, earlier_id))
    return render(request, "review/earlier.html", req_id=request_id, earlier=earlier, view=view, visible=preview.visible)


@router.post("/review/{request_id}/vote")
async def vote(request: Request, request_id: int, ident: Identity = Depends(reviewer)):
    data = await form_fields(request)
    try:
        decision = ReviewDecision(data.get("decision", ""))
    except ValueError:
        raise InvalidInput("choose approve, request changes or reject") from None
    env = _env(request)
    with acting(request, ident) as (session, actor):
        review.vote(session, actor, env, request_id, data.get("path", ""), decision, data.get("comment", ""))
    return _back(request, f"review/{request_id}", "voted")

