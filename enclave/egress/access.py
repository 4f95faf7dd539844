"""Who may do what with egress requests: the one place these rules are written.

One ``check_*`` per capability raises :class:`PermissionDenied` with one line saying why;
each ``can_*`` is derived from its check by :func:`_derived` (never written twice). The
service layer, the web consoles and the CLI all call these; none tests roles, authorship
or membership itself (a test reads the code to hold that). They decide *who*; *when*
(in which state) is the state machine's (``enclave.egress.workflow``).

The rules:
- the author and members of the project, and admins, see a request; reviewers see it
  once it is submitted;
- only the author changes, submits or withdraws it;
- a reviewer reviews it only when independent: neither its author nor a member of its
  project (separation of duties);
- a releaser (a reviewer or an admin) releases it only when independent in the same way;
- the author and members reply to reviewers' comments and download what was released;
- reviewers see other reviewers' votes only once they have voted on every file
  themselves; the author and members once review is over; admins always.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import ColumnElement, false, not_, or_, select

from enclave.db.models import EgressRequest, Membership, Project, User
from enclave.enums import EgressStatus, Role
from enclave.errors import PermissionDenied
from enclave.permissions import is_member

REVIEWING = frozenset({EgressStatus.SUBMITTED, EgressStatus.IN_REVIEW})
RELEASERS = frozenset({Role.REVIEWER, Role.ADMIN})


# --- facts (private: every rule below is built from these) -------------------------------

def _insider(actor: User, request: EgressRequest) -> bool:
    """The author or a member of the request's project."""
    return actor.id == request.author_id or is_member(actor, request.project)


def _need_role(actor: User, roles: frozenset[Role], doing: str) -> None:
    if not actor.roles & roles:
        needed = " or ".join(sorted(r.value for r in roles))
        raise PermissionDenied(f"{actor.name} may not {doing}: that needs the {needed} role")


def _need_independent(actor: User, request: EgressRequest, doing: str) -> None:
    if actor.id == request.author_id:
        raise PermissionDenied(f"{actor.name} may not {doing} egress request {request.id}: it is their own request")
    if is_member(actor, request.project):
        raise PermissionDenied(
            f"{actor.name} may not {doing} egress request {request.id}: they are a member of project "
            f"{request.project.slug}"
        )


def _need_author(actor: User, request: EgressRequest, doing: str) -> None:
    if actor.id != request.author_id:
        raise PermissionDenied(
            f"{actor.name} may not {doing} egress request {request.id}: only its author {request.author.name} may"
        )


def _need_insider(actor: User, request: EgressRequest, doing: str) -> None:
    if not _insider(actor, request):
        raise PermissionDenied(
            f"{actor.name} may not {doing} egress request {request.id}: only its author and members of "
            f"{request.project.slug} may"
        )


# --- one check per capability -------------------------------------------------------------

def check_view(actor: User, request: EgressRequest) -> None:
    """See the request, its files and findings."""
    if _insider(actor, request) or Role.ADMIN in actor.roles:
        return
    if Role.REVIEWER in actor.roles:
        if request.status is EgressStatus.DRAFT:
            raise PermissionDenied(f"egress request {request.id} is still a draft: reviewers see it once it is submitted")
        return
    raise PermissionDenied(f"{actor.name} may not see egress request {request.id}: they are not in project {request.project.slug}")


def check_create(actor: User, project: Project) -> None:
    """Open a request for a project: a researcher who is a member of it."""
    _need_role(actor, frozenset({Role.RESEARCHER}), "request egress")
    if not is_member(actor, project):
        raise PermissionDenied(f"{actor.name} may not request egress: they are not a member of project {project.slug}")


def check_see_outbox(actor: User, project: Project) -> None:
    """List the project's outbox to pick files from: members."""
    if not is_member(actor, project):
        raise PermissionDenied(
            f"{actor.name} may not see the outbox of project {project.slug}: they are not a member of it")


def check_edit(actor: User, request: EgressRequest) -> None:
    """Add or remove files, change groups, context and controls: the author."""
    _need_author(actor, request, "change")


def check_submit(actor: User, request: EgressRequest) -> None:
    """Send the request to the checks and review (or resubmit it): the author."""
    _need_author(actor, request, "submit")


def check_withdraw(actor: User, request: EgressRequest) -> None:
    """Withdraw the request: the author."""
    _need_author(actor, request, "withdraw")


def check_reviewer(actor: User) -> None:
    """Hold the reviewer role: open the reviewer console and its queue."""
    _need_role(actor, frozenset({Role.REVIEWER}), "review egress requests")


def check_review(actor: User, request: EgressRequest) -> None:
    """Vote on the request's files (and open it in the reviewer console): an independent reviewer."""
    _need_role(actor, frozenset({Role.REVIEWER}), "review egress requests")
    _need_independent(actor, request, "review")


def check_releaser(actor: User) -> None:
    """Hold a releasing role (reviewer or admin): see the queue of requests waiting for release."""
    _need_role(actor, RELEASERS, "release egress requests")


def check_release(actor: User, request: EgressRequest) -> None:
    """Release the approved request: an independent reviewer or admin."""
    _need_role(actor, RELEASERS, "release egress requests")
    _need_independent(actor, request, "release")


def check_reply(actor: User, request: EgressRequest) -> None:
    """Answer reviewers' comments: the author and members."""
    _need_insider(actor, request, "reply on")


def check_follow(actor: User, request: EgressRequest) -> None:
    """Be told of the request's changes in the inbox: the author and members."""
    _need_insider(actor, request, "follow")


def check_download(actor: User, request: EgressRequest) -> None:
    """Download the released files and their record: the author and members."""
    _need_insider(actor, request, "download")


def check_see_history(actor: User, project: Project) -> None:
    """See the project's earlier requests (to look for differencing): reviewers, admins and members."""
    if not (actor.roles & RELEASERS) and not is_member(actor, project):
        raise PermissionDenied(f"{actor.name} may not see the egress history of project {project.slug}")


def check_see_votes(actor: User, request: EgressRequest, *, voted_on_every_file: bool) -> None:
    """See every reviewer's votes (the independence rule): a reviewer once they have voted
    on every file, the author and members once review is over, admins always."""
    over = request.status not in REVIEWING
    if _insider(actor, request):
        if over:
            return
        raise PermissionDenied(f"the votes on egress request {request.id} are shown to its project once review is over")
    if Role.REVIEWER in actor.roles:
        if over or voted_on_every_file:
            return
        raise PermissionDenied(f"{actor.name} sees other reviewers' votes on request {request.id} once they have voted on every file")
    if Role.ADMIN in actor.roles:
        return
    raise PermissionDenied(f"{actor.name} may not see the votes on egress request {request.id}")


def check_check_outputs(actor: User, project: Project) -> None:
    """Check files against a project's views (evidence re-run): members, reviewers and admins."""
    if not (is_member(actor, project) or actor.roles & RELEASERS):
        raise PermissionDenied(f"{actor.name} may not check outputs against project {project.slug}: only its members, "
                               "reviewers and admins may")


# --- the same rules in SQL, to count requests without loading them -----------------------
# Conditions on EgressRequest rows that say what the check of the same name says of one
# request (the inbox's badge counts with them). tests/integration/egress/test_inbox_counts.py
# holds each equal to its check, for every person and request of a world in every state.

def _sql_insider(actor: User) -> ColumnElement[bool]:
    """``_insider`` in SQL: the author, or a member of the request's project."""
    projects = select(Membership.project_id).where(Membership.user_id == actor.id)
    return or_(EgressRequest.author_id == actor.id, EgressRequest.project_id.in_(projects))


def where_follow(actor: User) -> ColumnElement[bool]:
    """``check_follow`` in SQL."""
    return _sql_insider(actor)


def where_submit(actor: User) -> ColumnElement[bool]:
    """``check_submit`` in SQL."""
    return EgressRequest.author_id == actor.id


def where_review(actor: User) -> ColumnElement[bool]:
    """``check_review`` in SQL (no request at all without the reviewer role)."""
    return not_(_sql_insider(actor)) if can_reviewer(actor) else false()


def where_release(actor: User) -> ColumnElement[bool]:
    """``check_release`` in SQL (no request at all without a releasing role)."""
    return not_(_sql_insider(actor)) if can_releaser(actor) else false()


# --- booleans, derived --------------------------------------------------------------------

def _derived(check_name: str) -> Callable[..., bool]:
    """``can_x(...)``: True when ``check_x(...)`` would not raise (looked up at call time)."""

    def can_(*args: Any, **kwargs: Any) -> bool:
        try:
            globals()[check_name](*args, **kwargs)
        except PermissionDenied:
            return False
        return True

    can_.__name__ = check_name.replace("check_", "can_", 1)
    can_.__doc__ = f"True when ``{check_name}`` allows it."
    return can_


can_view = _derived("check_view")
can_edit = _derived("check_edit")
can_submit = _derived("check_submit")
can_withdraw = _derived("check_withdraw")
can_review = _derived("check_review")
can_release = _derived("check_release")
can_releaser = _derived("check_releaser")
can_reviewer = _derived("check_reviewer")
can_reply = _derived("check_reply")
can_download = _derived("check_download")
can_follow = _derived("check_follow")
can_see_votes = _derived("check_see_votes")
