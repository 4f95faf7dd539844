"""``enclave project``: applications, lifecycle and members."""

from __future__ import annotations

from typing import Optional

import typer

from enclave.cli.common import JSON_OPTION, acting, ok, parse_date, print_json, print_table, settings
from enclave.enums import ProjectStatus
from enclave.projects.tiers import load_tiers
from enclave.projects import retention, service
from enclave.projects.lifecycle import ProjectAction
from enclave.register.details import FIELD_WORDS, changes_from_options, details_from_options, missing_fields
from enclave.register.policy import load_register_policy
from enclave.schemas import ProjectOut

app = typer.Typer(help="Propose, approve, activate, suspend and close projects; manage members.", no_args_is_help=True)


@app.command("create")
def create(
    ctx: typer.Context,
    slug: str = typer.Argument(..., help="Short name: lower-case letters, digits, '-'."),
    title: str = typer.Option(..., "--title"),
    pi: str = typer.Option(..., "--pi", help="User name of the principal investigator (a researcher)."),
    lay_summary: str = typer.Option(..., "--lay-summary", help="Plain-language summary for the public register."),
    end_date: str = typer.Option(..., "--end-date", help="YYYY-MM-DD"),
    start_date: Optional[str] = typer.Option(None, "--start-date", help="YYYY-MM-DD (default today)"),
    purpose: str = typer.Option("", "--purpose"),
    lawful_basis: str = typer.Option("", "--lawful-basis"),
    organisation: str = typer.Option("", "--organisation"),
    tier: Optional[str] = typer.Option(None, "--tier", help="A tier from policies/tiers.yaml."),
    public_benefit: Optional[str] = typer.Option(None, "--public-benefit", help="Public benefit statement (register)."),
    gdpr_article6: Optional[str] = typer.Option(
        None, "--gdpr-article6", help="UK GDPR Art 6(1) basis: consent, contract, legal_obligation, vital_interests, "
                                      "public_task, legitimate_interests."),
    gdpr_article9: Optional[str] = typer.Option(
        None, "--gdpr-article9", help="UK GDPR Art 9(2) condition, e.g. research_and_statistics, "
                                      "health_or_social_care, public_health, explicit_consent."),
    confidentiality_basis: Optional[str] = typer.Option(
        None, "--confidentiality-basis", help="Common law duty of confidentiality: consent, section_251, "
                                              "legal_requirement, not_confidential, public_interest."),
    data_controller: Optional[str] = typer.Option(None, "--data-controller", help="The data controller (register)."),
    contact_email: Optional[str] = typer.Option(None, "--contact-email", help="A team mailbox the register publishes."),
    funders: Optional[str] = typer.Option(None, "--funders", help="Funders and sponsors, separated by ';'."),
) -> None:
    """Propose a project; it starts as 'proposed' with the PI as its first member.

    The register options go together; without them the project cannot be approved until
    they are added with 'enclave project register-details' (policies/register.yaml says which)."""
    end = parse_date(end_date, "--end-date")
    start = parse_date(start_date, "--start-date")
    tiers = load_tiers(settings().policies_dir)
    register = details_from_options(
        public_benefit=public_benefit, gdpr_article6=gdpr_article6, gdpr_article9=gdpr_article9,
        confidentiality_basis=confidentiality_basis, data_controller=data_controller, contact_email=contact_email,
        funders=funders)
    with acting(ctx) as (session, actor):
        project = service.create_project(
            session, actor, tiers, slug=slug, title=title, pi=pi, lay_summary=lay_summary, end_date=end,
            start_date=start, purpose=purpose, lawful_basis=lawful_basis, organisation=organisation, tier=tier,
            register=register,
        )
        ok(f"proposed project {project.slug} (tier {project.tier}); an admin who is not a member approves it")


@app.command("register-details")
def register_details(
    ctx: typer.Context,
    slug: str = typer.Argument(..., help="The proposed project."),
    public_benefit: Optional[str] = typer.Option(None, "--public-benefit", help="Public benefit statement."),
    gdpr_article6: Optional[str] = typer.Option(None, "--gdpr-article6", help="UK GDPR Art 6(1) basis."),
    gdpr_article9: Optional[str] = typer.Option(None, "--gdpr-article9", help="UK GDPR Art 9(2) condition."),
    confidentiality_basis: Optional[str] = typer.Option(
        None, "--confidentiality-basis", help="Common law duty of confidentiality basis."),
    data_controller: Optional[str] = typer.Option(None, "--data-controller", help="The data controller."),
    contact_email: Optional[str] = typer.Option(None, "--contact-email", help="A team mailbox the register publishes."),
    funders: Optional[str] = typer.Option(None, "--funders", help="Funders and sponsors, separated by ';'."),
) -> None:
    """Add or change what the public register will publish of a proposed project (its PI,
    its proposer or an admin); the options left out keep their values."""
    changes = changes_from_options(
        public_benefit=public_benefit, gdpr_article6=gdpr_article6, gdpr_article9=gdpr_article9,
        confidentiality_basis=confidentiality_basis, data_controller=data_controller, contact_email=contact_email,
        funders=funders)
    with acting(ctx) as (session, actor):
        service.amend_register(session, actor, slug, changes)
    ok(f"the register details of {slug} were updated")


def _move(ctx: typer.Context, slug: str, action: ProjectAction, reason: str | None = None) -> None:
    with acting(ctx) as (session, actor):
        project = retention.move_project(session, actor, settings(), slug, action, reason)
        status = project.status.value
    if action is ProjectAction.CLOSE:
        retention.housekeeping(settings())  # the archived workspace goes once the close is committed
        ok(f"project {slug} is now closed: its views are deleted and its workspace archived until its "
           "retention period ends, then destroyed")
        return
    ok(f"project {slug} is now {status}")


@app.command("approve")
def approve(ctx: typer.Context, slug: str) -> None:
    """Approve a proposed project (an admin who is not a member)."""
    _move(ctx, slug, ProjectAction.APPROVE)


@app.command("reject")
def reject(ctx: typer.Context, slug: str, reason: str = typer.Option(..., "--reason")) -> None:
    """Reject a proposed project, saying why."""
    _move(ctx, slug, ProjectAction.REJECT, reason)


@app.command("activate")
def activate(ctx: typer.Context, slug: str) -> None:
    """Open an approved (or reinstate a suspended) project for work."""
    _move(ctx, slug, ProjectAction.ACTIVATE)


@app.command("suspend")
def suspend(ctx: typer.Context, slug: str, reason: str = typer.Option(..., "--reason")) -> None:
    """Suspend an active project at once, saying why."""
    _move(ctx, slug, ProjectAction.SUSPEND, reason)


@app.command("close")
def close(ctx: typer.Context, slug: str, reason: str = typer.Option(..., "--reason")) -> None:
    """Close a project for good, saying why (recorded in the audit log)."""
    _move(ctx, slug, ProjectAction.CLOSE, reason)


@app.command("add-member")
def add_member(ctx: typer.Context, slug: str, user: str) -> None:
    """Add a researcher with current training to a project (admins)."""
    with acting(ctx) as (session, actor):
        service.add_member(session, actor, slug, user)
    ok(f"{user} is now a member of {slug}")


@app.command("remove-member")
def remove_member(ctx: typer.Context, slug: str, user: str) -> None:
    """Remove a member from a project (admins)."""
    with acting(ctx) as (session, actor):
        service.remove_member(session, actor, slug, user)
    ok(f"{user} is no longer a member of {slug}")


@app.command("list")
def list_(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """List the projects you may see (admins and reviewers: all)."""
    with acting(ctx) as (session, actor):
        rows = [ProjectOut.of(p) for p in service.list_projects(session, actor)]
    if as_json:
        print_json(rows)
    else:
        print_table("Projects", ["slug", "status", "title", "PI", "tier", "ends", "members"],
                    [(p.slug, p.status, p.title, p.pi, p.tier, p.end_date, len(p.members)) for p in rows])


@app.command("show")
def show(ctx: typer.Context, slug: str, as_json: bool = JSON_OPTION) -> None:
    """Show one project."""
    with acting(ctx) as (session, actor):
        project = service.get_project(session, slug)
        service.check_can_view(actor, project)
        out = ProjectOut.of(project)
    required = service.required_at_approval(load_register_policy(settings().policies_dir))
    missing = [FIELD_WORDS[f] for f in missing_fields(out, required)] if out.status is ProjectStatus.PROPOSED else []
    if as_json:
        print_json(out)
    else:
        print_table(f"Project {out.slug}", ["field", "value"], [
            ("title", out.title), ("status", out.status + (f" ({out.status_reason})" if out.status_reason else "")),
            ("PI", out.pi), ("organisation", out.organisation), ("tier", out.tier),
            ("dates", f"{out.start_date} to {out.end_date}"), ("members", ", ".join(out.members)),
            ("lay summary", out.lay_summary), ("purpose", out.purpose), ("approvals", out.lawful_basis),
            ("public benefit", out.public_benefit), ("UK GDPR Art 6", out.gdpr_article6 or "not stated"),
            ("UK GDPR Art 9", out.gdpr_article9 or "not stated"),
            ("confidentiality", out.confidentiality_basis or "not stated"),
            ("data controller", out.data_controller), ("contact", out.contact_email), ("funders", out.funders),
            *([("approval needs", ", ".join(missing) + ": add with 'enclave project register-details'")]
              if missing else []),
        ])
