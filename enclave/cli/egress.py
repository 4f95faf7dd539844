"""``enclave egress``: output checks and egress requests (quarantine, review, signed release)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Check outputs and take them out of the enclave through reviewed, signed requests.",
                  no_args_is_help=True)


# --- Output checking (issue 4): classify files by content and apply the disclosure rules.

def _check_policy(policy_file: "_Path | None"):  # type: ignore[no-untyped-def]
    """The disclosure policy: --policy, else disclosure.yaml in the policy directory (a
    missing file is an error naming it, never the built-in defaults)."""
    from enclave.config import Settings
    from enclave.disclosure.policy import load_disclosure_policy

    return load_disclosure_policy(policy_file or Settings.from_env().policies_dir / "disclosure.yaml")


@app.command("check")
def egress_check(
    ctx: typer.Context,
    files: "_List[_Path]" = typer.Argument(..., help="Output files to check (symbolic links are never followed)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    policy_file: "_Optional[_Path]" = typer.Option(
        None, "--policy", help="A disclosure policy YAML (default: disclosure.yaml in the policy directory)."),
    project: "_Optional[str]" = typer.Option(
        None, "--project", help="Re-run each table's evidence over this project's views, as a submit does "
                                "(needs --as USER); without it no evidence is trusted."),
) -> None:
    """Check output files against the disclosure rules; exit 0 if all pass, 1 if any needs review or fails."""
    import json

    from enclave.disclosure import check_files
    from enclave.disclosure.verdict import Verdict

    absent = [str(f) for f in files if not f.exists() and not f.is_symlink()]
    if absent:
        typer.echo(f"error: no such file: {', '.join(absent)} (give paths of output files)", err=True)
        raise typer.Exit(2)
    if project is not None:
        _check_with_evidence(ctx, project, files, as_json)
        return
    try:
        policy = _check_policy(policy_file)
    except _EnclaveError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    report = check_files(files, policy)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        _print_check_report(report)
    raise typer.Exit(0 if report.status is Verdict.PASS else 1)


def _check_with_evidence(ctx: typer.Context, slug: str, files: "_List[_Path]", as_json: bool) -> None:
    import json

    from enclave.disclosure.checker import CheckReport
    from enclave.disclosure.verdict import Verdict, worst
    from enclave.egress.replay import check_project_files

    with _acting(ctx) as (session, actor):
        checked = check_project_files(session, actor, _egress_env(), slug, list(files))
    status = worst([Verdict(str(r.status)) for r, _ in checked] + [Verdict.PASS])
    if as_json:
        typer.echo(json.dumps({"status": str(status), "files": [
            {**r.to_dict(), "evidence": o.as_json()} for r, o in checked]}, indent=2))
    else:
        _print_check_report(CheckReport([r for r, _ in checked]))
        for r, o in checked:
            note = o.finding()
            typer.echo(f"{r.path}: {note['message'] if note else o.reason}")
            for finding in r.findings:  # the table as it would be reviewed and released
                if finding.rule == "cell_key" and finding.locations:
                    typer.echo(f"{r.path} with cell-key noise:\n" + "\n".join(finding.locations))
    raise typer.Exit(0 if status is Verdict.PASS else 1)


def _print_check_report(report) -> None:  # type: ignore[no-untyped-def]
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Output check: {report.status}", title_justify="left", show_lines=True)
    for column in ("file", "status", "rule", "finding", "where"):
        table.add_column(column, overflow="fold")
    for file in report.files:
        if not file.findings:
            table.add_row(file.path, str(file.status), "", "no findings", "")
        for finding in file.findings:
            where = ", ".join(finding.locations[:5]) + (" ..." if len(finding.locations) > 5 else "")
            table.add_row(file.path, str(finding.status), finding.rule, finding.message, where)
    Console(width=160).print(table)


# --- Egress requests (issue 5): create, add, submit, withdraw, review, release, list, show,
# download, verify. Thin: each parses, calls one enclave.egress service function, prints.

from pathlib import Path as _Path  # noqa: E402
from enum import StrEnum as _StrEnum  # noqa: E402
from typing import List as _List, Optional as _Optional  # noqa: E402

from enclave.cli.common import JSON_OPTION as _JSON, acting as _acting, print_json as _print_json  # noqa: E402
from enclave.cli.common import print_table as _print_table, settings as _settings  # noqa: E402
from enclave.enums import EgressStatus as _EgressStatus, ReviewDecision as _ReviewDecision  # noqa: E402
from enclave.errors import EnclaveError as _EnclaveError, InvalidInput as _InvalidInput  # noqa: E402


def _egress_env():  # type: ignore[no-untyped-def]
    from enclave.egress.policy import EgressEnv

    return EgressEnv.load(_settings())


@app.command("create")
def egress_create(
    ctx: typer.Context,
    project: str = typer.Argument(..., help="The project's slug."),
    title: str = typer.Option("", "--title", help="A short description of the outputs."),
    cite_run: _List[int] = typer.Option([], "--cite-run", help="A job run that produced the outputs (repeatable)."),
) -> None:
    """Open a draft egress request for a project you are a member of."""
    from enclave.egress import service

    env = _egress_env()
    with _acting(ctx) as (session, actor):
        request = service.create_request(session, actor, env, project, title, cited_runs=list(cite_run))
        rid = request.id
    typer.echo(f"created egress request {rid} (draft): add files with 'enclave egress add {rid} PATH --group NAME'")


@app.command("add")
def egress_add(
    ctx: typer.Context,
    request_id: int = typer.Argument(..., help="The request's number."),
    paths: _List[str] = typer.Argument(None, help="Files inside the project's outbox/ (relative to it)."),
    group: str = typer.Option(..., "--group", help="The group these files belong to (created if new)."),
    context: _Optional[str] = typer.Option(None, "--context", help="What the output is and which population."),
    controls: _Optional[str] = typer.Option(None, "--controls", help="Suppression, rounding, thresholds applied."),
) -> None:
    """Add outbox files to a group of a request, and/or set the group's context and controls."""
    from enclave.egress import service

    env = _egress_env()
    with _acting(ctx) as (session, actor):
        if paths:
            files = service.add_files(session, actor, env, request_id, list(paths), group, context, controls)
            message = f"request {request_id}: {len(files)} file(s) in group {group}"
        elif context is None and controls is None:
            raise _InvalidInput("name files to add, or give --context/--controls to describe the group")
        else:
            service.set_group(session, actor, env, request_id, group, context, controls)
            message = f"request {request_id}: group {group} updated"
    typer.echo(message)


@app.command("remove")
def egress_remove(ctx: typer.Context, request_id: int, path: str) -> None:
    """Take a file out of a draft or returned request."""
    from enclave.egress import service

    env = _egress_env()
    with _acting(ctx) as (session, actor):
        service.remove_file(session, actor, env, request_id, path)
    typer.echo(f"request {request_id}: removed {path}")


@app.command("submit")
def egress_submit(
    ctx: typer.Context,
    request_id: int,
    exception: _Optional[str] = typer.Option(
        None, "--exception", help="If the automated checks fail: why the outputs are safe (reviewers see it)."),
) -> None:
    """Quarantine and check the files, then send the request to review."""
    from enclave.egress import service

    env = _egress_env()
    with _acting(ctx) as (session, actor):
        request = service.submit_request(session, actor, env, request_id, exception)
        status = request.status
        failed = [f.relpath for f in request.files if f.check_status == "fail"]
    if status is _EgressStatus.CHANGES_REQUESTED:
        # Raised after the unit of work committed: the return to the researcher stands.
        raise _EnclaveError(f"request {request_id} failed the automated checks ({', '.join(failed)}) and is back "
                            f"with you: see 'enclave egress show {request_id}', fix the outputs or resubmit with --exception TEXT")
    typer.echo(f"request {request_id} submitted: files quarantined and checked; now {status.value}")


@app.command("withdraw")
def egress_withdraw(ctx: typer.Context, request_id: int) -> None:
    """Withdraw a draft or returned request."""
    from enclave.egress import service

    env = _egress_env()
    with _acting(ctx) as (session, actor):
        service.withdraw_request(session, actor, env, request_id)
    typer.echo(f"request {request_id} withdrawn")


@app.command("review")
def egress_review(
    ctx: typer.Context,
    request_id: int,
    path: str = typer.Argument(..., help="The file voted on (its path in the outbox)."),
    decision: _ReviewDecision = typer.Option(..., "--decision", help="approve, request_changes or reject."),
    comment: str = typer.Option("", "--comment", help="Why (required to overrule the checker or to ask for changes)."),
) -> None:
    """Vote on one file of a request in review (independent reviewers only)."""
    from enclave.egress import review

    env = _egress_env()
    with _acting(ctx) as (session, actor):
        review.vote(session, actor, env, request_id, path, decision, comment)
        status = review.get_request(session, request_id).status
    typer.echo(f"request {request_id}: vote recorded on {path}; request is {status.value}")


@app.command("release")
def egress_release(ctx: typer.Context, request_id: int) -> None:
    """Copy an approved request's files to the export store with a signed release record."""
    from enclave.egress import release

    env = _egress_env()
    with _acting(ctx) as (session, actor):
        request = release.release_request(session, actor, env, request_id)
        record = request.release_record_path
    typer.echo(f"request {request_id} released; record: {record}")


class _Queue(_StrEnum):
    """The queues of people a request waits on."""

    REVIEW = "review"
    RELEASE = "release"


@app.command("list")
def egress_list(
    ctx: typer.Context,
    project: _Optional[str] = typer.Option(None, "--project"),
    status: _Optional[_EgressStatus] = typer.Option(None, "--status"),
    queue: _Optional[_Queue] = typer.Option(
        None, "--queue", help="Only what waits on you: 'review' (your votes) or 'release' (approved, for releasers)."),
    as_json: bool = _JSON,
) -> None:
    """List the egress requests you may see, each with who it waits on."""
    from enclave.egress import queues, service
    from enclave.egress.schemas import rows

    env = _egress_env()
    with _acting(ctx) as (session, actor):
        if queue is _Queue.REVIEW:
            found = queues.review_queue(session, actor)
        elif queue is _Queue.RELEASE:
            found = queues.release_queue(session, actor)
        else:
            found = service.list_requests(session, actor, project=project, status=status)
        listed = rows(session, env, [r for r in found if (not project or r.project.slug == project)
                                     and (not status or r.status is status)])
    if as_json:
        _print_json(listed)
        return
    _print_table("Egress requests", ["id", "project", "author", "status", "waiting on", "files", "title"],
                 [(r.id, r.project, r.author, r.status.value, r.waiting_on or "", r.files, r.title) for r in listed])


@app.command("inbox")
def egress_inbox(ctx: typer.Context, as_json: bool = _JSON) -> None:
    """What waits on you: reviews, requests returned to you, releases to download, requests to release."""
    from enclave.egress.inbox import inbox

    with _acting(ctx) as (session, actor):
        box = inbox(session, actor)
        counts = box.counts
        items = {name: [(r.id, r.project.slug, r.title) for r in getattr(box, name)] for name in counts}
    if as_json:
        _print_json({"total": sum(counts.values()), "counts": counts,
                     "requests": {k: [i[0] for i in v] for k, v in items.items()}})
        return
    _print_table("Inbox", ["waiting", "count", "requests"],
                 [(name.replace("_", " "), counts[name], ", ".join(f"#{i} {t or p}" for i, p, t in items[name]))
                  for name in counts])


def _evidence_text(evidence: "dict | None") -> str:
    """The evidence status in words: reproduced, or why it was checked as a plain file."""
    if not evidence:
        return ""
    if evidence.get("status") == "reproduced":
        return "evidence reproduced"
    if evidence.get("status") == "absent":
        return "no evidence"
    return f"not reproducible ({evidence.get('reason', '')}), checked as a plain file"


@app.command("show")
def egress_show(ctx: typer.Context, request_id: int, as_json: bool = _JSON) -> None:
    """Show a request: groups, files, check results and the votes you may see."""
    from enclave.egress.schemas import request_detail

    env = _egress_env()
    from enclave.jobs.service import get_run_provenance

    with _acting(ctx) as (session, actor):
        detail = request_detail(session, actor, env, request_id)
        cited = [get_run_provenance(session, actor, run_id) for run_id in detail.cited_runs]
    if as_json:
        _print_json(detail)
        return
    typer.echo(f"request {detail.id} ({detail.project}) by {detail.author}: {detail.status.value}"
               f" (round {detail.round}, {detail.reviews_required} reviews needed) {detail.title}")
    if detail.exception_justification:
        typer.echo(f"exception asked: {detail.exception_justification}")
    for g in detail.groups:
        typer.echo(f"group {g.name}: context: {g.context or '(missing)'}; controls: {g.controls or '(missing)'}")
    _print_table("Files", ["path", "group", "size", "check", "evidence", "findings", "votes", "outcome"], [
        (f.path, f.group, f.size, f.check_status or "", _evidence_text(f.evidence),
         "; ".join(x.get("message", "") for x in f.findings),
         "; ".join(f"{v.reviewer}: {v.decision.value} {v.comment}".strip() for v in f.votes)
         + (f" (+{f.hidden_votes} hidden until you vote)" if f.hidden_votes else ""),
         f.outcome.value if f.outcome else "") for f in detail.file_list])
    for run in cited:
        typer.echo(f"cited run {run.run_id}: {run.status.value} {run.notebook} (sha256 {run.notebook_sha256[:12]}) "
                   f"parameters {run.parameters} finished {run.finished_at or '-'}; see 'enclave job show {run.run_id}'")
    for f in detail.file_list:
        for r in f.replies:
            typer.echo(f"reply on {f.path} (round {r.round}) by {r.author}: {r.message}")
    if detail.project_history:
        _print_table("Earlier requests of this project", ["id", "status", "files"], [
            (h.id, h.status.value, ", ".join(f"{x['path']} ({(x['sha256'] or '')[:12]})" for x in h.files))
            for h in detail.project_history])


@app.command("reply")
def egress_reply(
    ctx: typer.Context,
    request_id: int,
    path: str = typer.Argument(..., help="The file whose comments you answer (its path in the outbox)."),
    message: str = typer.Option(..., "--message", help="What you changed, or why the output is safe as it is."),
) -> None:
    """Answer the reviewers' comments on a file of a request returned for changes."""
    from enclave.egress import service

    env = _egress_env()
    with _acting(ctx) as (session, actor):
        service.reply_to_comment(session, actor, env, request_id, path, message)
    typer.echo(f"request {request_id}: reply recorded on {path}; resubmit with 'enclave egress submit {request_id}'")


@app.command("download")
def egress_download(
    ctx: typer.Context, request_id: int,
    to: _Path = typer.Option(..., "--to", help="An empty folder to receive files/ and release.json."),
) -> None:
    """Download a released request's files and its signed record (author and project members)."""
    from enclave.egress import release

    env = _egress_env()
    with _acting(ctx) as (session, actor):
        written = release.download_release(session, actor, env, request_id, to)
    typer.echo(f"downloaded {len(written) - 1} file(s) and release.json to {to}")


@app.command("verify")
def egress_verify(
    record: _Path = typer.Argument(..., help="A release.json (files/ beside it are checked too)."),
    public_key: _Optional[_Path] = typer.Option(None, "--public-key", help="The enclave's egress-signing.pub."),
    keyring: _Optional[_Path] = typer.Option(None, "--keyring", help="The enclave's keyring.json (every key it ever signed with)."),
) -> None:
    """Verify a release record's signature (and the released files beside it); exit 1 if it fails."""
    from enclave.egress.release import verify_release
    from enclave.egress.signing import site_verifier

    if public_key and keyring:
        raise _InvalidInput("give --public-key or --keyring, not both")
    key = keyring or public_key or site_verifier(_settings().keys_dir)
    report = verify_release(record, key)
    if not report.ok:
        raise _InvalidInput(f"release record NOT verified: {'; '.join(report.problems)}")
    rec = report.record
    typer.echo(f"release record verified: request {rec['request']['id']} of project {rec['project']['slug']}, "
               f"{len(rec['files'])} file(s), {report.files_checked} checked against their sha256")
