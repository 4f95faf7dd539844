"""Read-only views the consoles show, composed from the domain model (the public
register's are in :mod:`enclave.register.service`).

Nothing here changes a row. Each function checks who may read what, like the service layer.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections import Counter
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from sqlalchemy import select
from sqlalchemy.orm import Session

from enclave.applications import application_details
from enclave.clock import utcnow
from enclave.db.models import EgressFile, EgressRequest, EgressReview, Grant, Project, User
from enclave.disclosure.evidence import Evidence, EvidenceCell
from enclave.disclosure.outcome import TableOutcome, table_outcome
from enclave.disclosure.policy import DisclosurePolicy
from enclave.disclosure.rules import RULES
from enclave.disclosure.verdict import Verdict
from enclave.egress import access
from enclave.egress.policy import EgressEnv
from enclave.egress.quarantine import read_object
from enclave.egress.replay import ABSENT, EVIDENCE_RULE, EvidenceStatus
from enclave.egress.service import view_request
from enclave.enums import EgressStatus, ProjectStatus
from enclave.errors import EnclaveError, NotFound, PermissionDenied
from enclave.permissions import check_admin
from enclave.projects.lifecycle import actions_from
from enclave.projects.service import check_can_view, get_project
from enclave.web.schemas import (
    CountOut,
    DashboardOut,
    ExpiringGrantOut,
    GrantOut,
    ProjectDetailOut,
    ProjectOut,
)
from enclave.web.preview import FileView


def _grants(session: Session, project: Project) -> list[GrantOut]:
    now = utcnow()
    rows = session.scalars(select(Grant).where(Grant.project_id == project.id).order_by(Grant.expires_at))
    return [GrantOut(id=g.id, dataset=g.dataset_version.dataset.name, version=g.dataset_version.version,
                     granted_at=g.granted_at, expires_at=g.expires_at, revoked_at=g.revoked_at, live=g.is_live(now))
            for g in rows]


def project_detail(session: Session, actor: User, slug: str, hub_prefix: str = "/hub") -> ProjectDetailOut:
    """One project as its members, the admins and the reviewers may see it."""
    project = get_project(session, slug)
    check_can_view(actor, project)
    application = application_details(session, slug)
    member = any(m.user_id == actor.id for m in project.memberships)
    notebook = (f"{hub_prefix}/spawn/{actor.name}/{project.slug}"
                if member and project.status is ProjectStatus.ACTIVE else None)
    return ProjectDetailOut(
        **ProjectOut.of(project).model_dump(), grants=_grants(session, project),
        datasets_wanted=application["datasets_wanted"], proposed_team=application["team"],
        allowed_actions=actions_from(project.status), notebook_url=notebook,
    )


def application_queue(session: Session, actor: User) -> list[ProjectOut]:
    """Proposed projects, oldest first (admins)."""
    check_admin(actor, "see the application queue")
    rows = session.scalars(select(Project).where(Project.status == ProjectStatus.PROPOSED)
                           .order_by(Project.created_at, Project.id))
    return [ProjectOut.of(p) for p in rows]


def _week(when: dt.datetime) -> str:
    year, week, _ = when.isocalendar()
    return f"{year}-W{week:02d}"


def _last_weeks(n: int) -> list[str]:
    today = utcnow()
    return [_week(today - dt.timedelta(weeks=i)) for i in reversed(range(n))]


def dashboard(session: Session, actor: User, running_servers: int | None, weeks: int = 8,
              expiring_within_days: int = 30) -> DashboardOut:
    """Counts for the admin dashboard (admins)."""
    check_admin(actor, "see the dashboard")
    now = utcnow()
    projects = Counter(p.status for p in session.scalars(select(Project)))
    requests = Counter(r.status for r in session.scalars(select(EgressRequest)))
    labels = _last_weeks(weeks)
    since = now - dt.timedelta(weeks=weeks)
    decisions = Counter(_week(r.created_at) for r in
                        session.scalars(select(EgressReview).where(EgressReview.created_at >= since)))
    released = Counter()
    for request in session.scalars(select(EgressRequest).where(EgressRequest.released_at.is_not(None),
                                                               EgressRequest.released_at >= since)):
        released[_week(request.released_at)] += len(request.files)  # type: ignore[arg-type]
    horizon = now + dt.timedelta(days=expiring_within_days)
    expiring = [
        ExpiringGrantOut(project=g.project.slug, dataset=g.dataset_version.dataset.name,
                         version=g.dataset_version.version, expires_at=g.expires_at,
                         days_left=max(0, (g.expires_at - now).days))
        for g in session.scalars(select(Grant).where(Grant.revoked_at.is_(None), Grant.expires_at > now,
                                                     Grant.expires_at <= horizon).order_by(Grant.expires_at))
    ]
    return DashboardOut(
        running_servers=running_servers,
        projects_by_status=[CountOut(label=s.value, count=projects.get(s, 0)) for s in ProjectStatus],
        requests_by_status=[CountOut(label=s.value, count=requests.get(s, 0)) for s in EgressStatus],
        decisions_by_week=[CountOut(label=w, count=decisions.get(w, 0)) for w in labels],
        released_files_by_week=[CountOut(label=w, count=released.get(w, 0)) for w in labels],
        grants_expiring=expiring,
    )


# --- one file of a request, as a reviewer decides it ------------------------------------------

# The cells' figures a page lists in full; a larger table lists its failing and hidden cells only.
MAX_LISTED_CELLS = 2000
EVIDENCE_WORDS = {
    EvidenceStatus.REPRODUCED: "reproduced",
    EvidenceStatus.NOT_REPRODUCIBLE: "not reproducible",
    EvidenceStatus.ABSENT: "absent",
}
SAVED_FILE_WORDS = {Verdict.PASS: "the saved table passes", Verdict.REVIEW: "the saved table needs a reviewer",
                    Verdict.FAIL: "the saved table fails"}


@dataclass(frozen=True)
class CellOutcome:
    """One cell of a table as the library computed it, with each rule's outcome.

    ``figures`` is False on pages for the project's own members: their browser is outside
    the enclave, and the evidence's exact counts (of suppressed cells above all) stay inside.
    """

    row: list[str]
    column: list[str]
    margin: bool
    n: int | None
    status: Verdict
    suppressed: bool
    failing: list[str]           # rules the cell fails
    reasons: list[str]           # why, per rule ("threshold: n=3 < 10"); rule names only without figures
    secondary: bool              # hidden to protect a failing cell, failing nothing itself

    @property
    def label(self) -> str:
        return f"({', '.join(self.row)} / {', '.join(self.column)})"

    @property
    def why(self) -> str:
        """What a reader sees on the cell, in words."""
        if self.secondary:
            return "suppressed to protect a suppressed cell (secondary suppression)"
        if self.suppressed:
            return "suppressed: " + "; ".join(self.reasons)
        if self.failing:
            return "shown although it fails: " + "; ".join(self.reasons)
        if self.status is Verdict.REVIEW:
            return "for a reviewer to judge: " + "; ".join(self.reasons)
        return "passes every rule"


@dataclass
class EvidenceView:
    """What the enclave made of a file's evidence, and the check summary in words."""

    status: str                  # reproduced | not_reproducible | absent | pending
    reason: str
    summary: str
    figures: bool = False
    outcome: TableOutcome | None = None
    cells: list[CellOutcome] = field(default_factory=list)
    listed: list[CellOutcome] = field(default_factory=list)   # the cells the page lists
    rules: list[str] = field(default_factory=list)
    at: dict[tuple[int, str], CellOutcome] = field(default_factory=dict)  # (file line, column) on the page
    unplaced: list[CellOutcome] = field(default_factory=list)  # cells not in the saved table (e.g. margins left out)

    @property
    def words(self) -> str:
        return EVIDENCE_WORDS.get(EvidenceStatus(self.status), self.status) if self.status != "pending" else "not yet checked"


def evidence_view(session: Session, actor: User, env: EgressEnv, request_id: int, view: FileView,
                  figures: bool) -> EvidenceView:
    """The evidence of one file (``view``, already read for ``actor``), its cells placed on the
    page, and a check summary that never hides a failing cell behind "pass"."""
    request = view_request(session, actor, request_id)
    file = next(f for f in request.files if f.relpath == view.path)
    ev, index_levels = _file_evidence(env, file, figures)
    if ev.cells:
        _place(ev, view, index_levels)
    return ev


def check_summaries(session: Session, actor: User, env: EgressEnv, request_id: int) -> dict[str, str]:
    """Each file's check summary in words (path -> sentence), for the pages listing a request's files."""
    request = view_request(session, actor, request_id)
    return {f.relpath: _file_evidence(env, f, figures=False)[0].summary for f in request.files}


def _file_evidence(env: EgressEnv, file: EgressFile, figures: bool) -> tuple[EvidenceView, int]:
    """What the enclave made of a file's evidence (trusted cells only when it reproduced them)
    and the number of label columns of its table."""
    check = file.check_json or {}
    recorded = check.get("evidence") or {}
    if not file.sha256 or not file.check_status:
        return EvidenceView(status="pending", reason="not yet submitted", summary="Not yet checked: the checks run at submit."), 1
    try:
        status = EvidenceStatus(recorded.get("status", EvidenceStatus.ABSENT))
    except ValueError:
        status = EvidenceStatus.NOT_REPRODUCIBLE  # fail closed: an unknown record is no trust
    reason = str(recorded.get("reason") or ABSENT.reason)
    saved = _verdict(file.check_status)
    findings = list(check.get("findings", []))
    problems = [f for f in findings if f.get("status") != Verdict.PASS and f.get("rule") != EVIDENCE_RULE]
    if status is not EvidenceStatus.REPRODUCED or not check.get("evidence_sha256"):
        plain = ("Evidence not reproducible, so the file was checked as a plain file"
                 if status is not EvidenceStatus.ABSENT else "No evidence: checked as a plain file")
        found = f"{len(problems)} finding{'s' if len(problems) != 1 else ''} to read" if problems else "no rule objected"
        return EvidenceView(status=str(status), reason=reason, summary=f"{plain}; {found}; overall {saved}."), 1
    try:
        evidence = Evidence.model_validate_json(read_object(env.settings, check["evidence_sha256"]).read_bytes())
    except (EnclaveError, OSError, ValueError):
        return EvidenceView(status=str(EvidenceStatus.NOT_REPRODUCIBLE), reason="the quarantined evidence cannot be read",
                            summary=f"The evidence cannot be read now: treat the file as checked without it; overall {saved}."), 1
    policy = env.disclosure
    cells = [_cell_outcome(c, policy, figures) for c in evidence.cells]
    outcome = table_outcome(evidence.cells, policy.threshold)
    others = [f for f in problems if f.get("rule") not in evidence.rules]
    ev = EvidenceView(status=str(status), reason=reason, summary=_check_summary(outcome, saved, others), figures=figures,
                      outcome=outcome, cells=cells, rules=[r for r in evidence.rules if r in RULES])
    ev.listed = cells if len(cells) <= MAX_LISTED_CELLS else [c for c in cells if c.suppressed or c.status is not Verdict.PASS]
    return ev, len(evidence.analysis.get("index") or []) or 1


def _verdict(value: str | None) -> Verdict:
    try:
        return Verdict(value)
    except ValueError:
        return Verdict.REVIEW


def _check_summary(outcome: TableOutcome, saved: Verdict, others: list[dict]) -> str:
    """E.g. "10 cells failed in the raw table (3 cells below 10 and 7 zeros); all suppressed; the saved table passes."

    ``others`` are the file's findings that are not about its own cells (e.g. differencing
    against earlier outputs): they are named, so a verdict worse than the cells' is explained."""
    end = SAVED_FILE_WORDS[saved]
    if outcome.failed_cells == 0:
        head = f"No cell failed in the raw table ({outcome.cells} checked)"
    else:
        n = outcome.failed_cells
        head = f"{n} cell{'s' if n != 1 else ''} failed in the raw table ({outcome.failing_words()}); "
        head += "all suppressed" if outcome.exposed == 0 else f"{outcome.exposed} of them shown"
    if outcome.protective:
        head += f"; {outcome.protective} more hidden to protect them"
    if outcome.review_cells:
        head += f"; {outcome.review_cells} for a reviewer to judge"
    if others:
        named = sorted({f"{str(f.get('rule', 'checker')).replace('_', ' ')} {f.get('status')}" for f in others})
        head += f"; other checks: {', '.join(named)} (see the findings)"
    return f"{head}; {end}."


def _cell_outcome(cell: EvidenceCell, policy: DisclosurePolicy, figures: bool) -> CellOutcome:
    failing = [r for r, v in cell.verdicts.items() if v is Verdict.FAIL]
    flagged = [r for r, v in cell.verdicts.items() if v is not Verdict.PASS]
    reasons = [_reason(r, cell, policy) if figures else r.replace("_", " ") for r in flagged]
    return CellOutcome(row=[str(p) for p in cell.row], column=[str(p) for p in cell.column], margin=cell.margin,
                       n=cell.n if figures else None, status=cell.status, suppressed=cell.suppressed,
                       failing=failing, reasons=reasons, secondary=cell.suppressed and cell.status is not Verdict.FAIL)


def _reason(rule: str, cell: EvidenceCell, policy: DisclosurePolicy) -> str:
    """One rule's outcome on one cell with its figures, as the rule states it."""
    if cell.negatives and rule in ("nk_dominance", "p_percent"):
        return f"{rule.replace('_', ' ')}: {cell.negatives} negative value(s), dominance undefined"
    if cell.missing and rule in ("nk_dominance", "p_percent"):
        return f"{rule.replace('_', ' ')}: {cell.missing} missing value(s), dominance undefined"
    if rule == "threshold":
        return f"threshold: n={cell.n} < {policy.threshold}"
    if rule == "zeros":
        return "zeros: n=0"
    if rule == "nk_dominance" and cell.nk_share is not None:
        return f"dominance: top {policy.nk_dominance.n} share {cell.nk_share:.3f} ≥ {policy.nk_dominance.k}"
    if rule == "p_percent" and cell.p_ratio is not None:
        return f"p% rule: p ratio {cell.p_ratio:.3f} < {policy.p_percent}"
    if rule == "rounding":
        return f"rounding: n={cell.n} is not a multiple of {policy.rounding.base}"
    return rule.replace("_", " ")


def _place(ev: EvidenceView, view: FileView, index_levels: int) -> None:
    """Put each cell where the saved table shows it: the row whose labels are the cell's row
    and the column whose header is the cell's column (as ``SafeResult.render`` writes them)."""
    if view.kind != "table":
        ev.unplaced = [c for c in ev.cells if c.suppressed or c.failing]
        return
    columns = {h: h for h in view.header[index_levels:]}
    lines: dict[tuple[str, ...], int] = {}
    for i, row in enumerate(view.rows):
        lines[_key(row[:index_levels])] = view.first_line + i
    placed: set[int] = set()
    for k, cell in enumerate(ev.cells):
        column = " | ".join(p for p in cell.column if p)
        line = lines.get(_key(cell.row))
        if line is not None and column in columns:
            ev.at[(line, column)] = cell
            placed.add(k)
    # Cells of other parts of a long file are on those parts; only those in no row at all are "unplaced".
    if view.parts == 1:
        ev.unplaced = [c for k, c in enumerate(ev.cells) if k not in placed and (c.suppressed or c.failing)]


def _key(labels: list[str]) -> tuple[str, ...]:
    parts = list(labels)
    while parts and parts[-1] == "":  # a margin row of a several-level index reads "All", "", ...
        parts.pop()
    return tuple(parts)


# --- earlier outputs of the project ---------------------------------------------------------

@dataclass(frozen=True)
class EarlierFile:
    """A file released earlier by the same project."""

    request_id: int
    title: str
    path: str
    released_at: dt.datetime | None
    sha256: str | None
    size: int | None


@dataclass(frozen=True)
class TableShape:
    """What a table's similarity is judged on: its header, row labels and shape."""

    header: tuple[str, ...]
    labels: tuple[str, ...]
    rows: int


@dataclass
class SimilarTable:
    earlier: EarlierFile
    score: float
    shared_columns: list[str]
    header: list[str]
    rows: list[list[str]]
    total_rows: int


def earlier_outputs(session: Session, actor: User, request_id: int) -> list[EarlierFile]:
    """Every file released by the request's project before (newest first), for its reviewers."""
    request = view_request(session, actor, request_id)
    access.check_see_history(actor, request.project)
    others = session.scalars(select(EgressRequest.id).where(
        EgressRequest.project_id == request.project_id, EgressRequest.id != request.id,
        EgressRequest.status == EgressStatus.RELEASED)).all()
    released = []
    for other in others:  # each as this actor may see it
        try:
            released.append(view_request(session, actor, other))
        except PermissionDenied:
            continue
    released.sort(key=lambda r: (r.released_at or r.created_at, r.id), reverse=True)
    return [EarlierFile(request_id=r.id, title=r.title, path=f.relpath, released_at=r.released_at,
                        sha256=f.canonical_sha256, size=f.canonical_size)
            for r in released for f in sorted(r.files, key=lambda f: f.relpath) if f.canonical_sha256]


def check_earlier(session: Session, actor: User, request_id: int, earlier_id: int, relpath: str) -> None:
    """Refuse unless ``relpath`` of request ``earlier_id`` is a released file of the same project."""
    if not any(e.request_id == earlier_id and e.path == relpath for e in earlier_outputs(session, actor, request_id)):
        raise NotFound(f"{relpath} of request {earlier_id} is not a released output of this project: "
                       "open one from the list of earlier outputs")


def table_shape(data: bytes, delimiter: str, max_rows: int = 5000) -> TableShape:
    """The header, first column's labels and row count of a CSV/TSV (the first ``max_rows`` rows)."""
    reader = csv.reader(io.StringIO(data.decode("utf-8", errors="replace"), newline=""), delimiter=delimiter)
    header = tuple(next(reader, []))
    labels, rows = [], 0
    for row in reader:
        rows += 1
        if rows <= max_rows and row:
            labels.append(row[0])
    return TableShape(header=header, labels=tuple(labels), rows=rows)


def similarity(a: TableShape, b: TableShape) -> float:
    """How alike two tables are, 0 to 1: shared column names (half), shared row labels (three
    tenths) and alike shape (a fifth). Tables that could be differenced share most of all three."""
    def jaccard(x: tuple[str, ...], y: tuple[str, ...]) -> float:
        sx, sy = set(x), set(y)
        return len(sx & sy) / len(sx | sy) if sx | sy else 0.0

    shape = (min(len(a.header), len(b.header)) / max(len(a.header), len(b.header), 1)
             + min(a.rows, b.rows) / max(a.rows, b.rows, 1)) / 2
    return round(0.5 * jaccard(a.header, b.header) + 0.3 * jaccard(a.labels, b.labels) + 0.2 * shape, 3)


# An earlier table less alike than this is not worth a reviewer's eye beside the current one.
MIN_SIMILARITY = 0.4
SIMILAR_ROWS_SHOWN = 50
# The newest earlier tables compared (each is read and its digest checked, so the page stays quick).
MAX_COMPARED = 50


def most_similar_table(session: Session, actor: User, env: EgressEnv, request_id: int,
                       view: FileView, earlier: list[EarlierFile]) -> SimilarTable | None:
    """The earlier released table most like the current file (a table), if any is alike enough."""
    if view.kind != "table" or not view.canonical_sha256:
        return None
    delimiter = "\t" if view.path.lower().endswith(".tsv") else ","
    current = table_shape(read_object(env.settings, view.canonical_sha256).read_bytes(), delimiter)
    best: tuple[float, EarlierFile, TableShape, bytes] | None = None
    tables = [e for e in earlier if PurePosixPath(e.path).suffix.lower() in (".csv", ".tsv") and e.sha256]
    for e in tables[:MAX_COMPARED]:  # newest first
        suffix = PurePosixPath(e.path).suffix.lower()
        try:
            data = read_object(env.settings, e.sha256).read_bytes()
        except EnclaveError:
            continue  # a missing object is reported where the file is opened
        shape = table_shape(data, "\t" if suffix == ".tsv" else ",")
        score = similarity(current, shape)
        if best is None or score > best[0]:
            best = (score, e, shape, data)
    if best is None or best[0] < MIN_SIMILARITY:
        return None
    score, e, shape, data = best
    rows = list(csv.reader(io.StringIO(data.decode("utf-8", errors="replace"), newline=""),
                           delimiter="\t" if e.path.lower().endswith(".tsv") else ","))
    return SimilarTable(earlier=e, score=score, shared_columns=[h for h in shape.header if h in set(current.header)],
                        header=list(shape.header), rows=rows[1:1 + SIMILAR_ROWS_SHOWN], total_rows=shape.rows)
