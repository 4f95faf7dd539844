"""Before and while applying: the data catalogue a researcher browses (descriptions and
data dictionaries, never data), the Five Safes application form, and the register details
of a proposed project its applicant adds or changes before approval."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import RedirectResponse

from enclave.applications import ProjectApplication, apply_for_project
from enclave.catalog import service as catalog
from enclave.errors import EnclaveError
from enclave.projects.service import amend_register
from enclave.register.details import register_choices
from enclave.web.api.catalog import dataset_detail, dataset_out
from enclave.web.auth import Identity
from enclave.web import readmodels
from enclave.web.context import acting, render, signed_in, tiers, web
from enclave.web.pages import register_form
from enclave.web.pages.forms import FormState, correctable, done_message, failed, form_fields, lines, parse

router = APIRouter()

APPLY_FIELDS = ("slug", "title", "purpose", "lay_summary", "lawful_basis", "organisation", "team",
                "datasets_wanted", "end_date")
# What the public register publishes (enclave.register.details.RegisterDetails).
REGISTER_FIELDS = ("public_benefit", "gdpr_article6", "gdpr_article9", "confidentiality_basis",
                   "data_controller", "contact_email", "funders")


@router.get("/catalogue")
def catalogue(request: Request, ident: Identity = Depends(signed_in)):
    """Every dataset of the catalogue with its description (any enclave user)."""
    with acting(request, ident) as (session, actor):
        rows = [dataset_out(d) for d in catalog.list_datasets(session, actor)]
    return render(request, "researcher/catalogue.html", datasets=rows)


@router.get("/catalogue/{name}")
def catalogue_dataset(request: Request, name: str, version: int | None = Query(None, ge=1, le=2**31 - 1),
                      ident: Identity = Depends(signed_in)):
    """One dataset's description, versions and data dictionary: what its tables and
    columns mean, which are identifiers. No row of data is read."""
    with acting(request, ident) as (session, actor):
        detail = dataset_detail(session, actor, name, version)
    return render(request, "researcher/dataset.html", ds=detail)


def _apply_page(request: Request, ident: Identity, form: FormState, status: int = 200):  # type: ignore[no-untyped-def]
    with acting(request, ident) as (session, actor):
        names = [d.name for d in catalog.list_datasets(session, actor)]
    return render(request, "researcher/apply.html", status_code=status, form=form, catalogue=names,
                  register_choices=register_choices())


@router.get("/apply")
def apply_form(request: Request, dataset: str | None = Query(None, max_length=64),
               ident: Identity = Depends(signed_in)):
    """The Five Safes application form (a dataset from the catalogue may be filled in)."""
    return _apply_page(request, ident, FormState(values={"datasets_wanted": dataset or ""}))


@router.post("/apply")
async def apply(request: Request, ident: Identity = Depends(signed_in)):
    data = await form_fields(request)
    typed = {k: data.get(k, "") for k in APPLY_FIELDS + REGISTER_FIELDS}
    try:
        form = parse(ProjectApplication, {
            **{k: typed[k] for k in ("slug", "title", "purpose", "lay_summary", "lawful_basis", "organisation")},
            **{k: typed[k] for k in REGISTER_FIELDS if typed[k]},  # a field left empty is missing
            "datasets_wanted": lines(typed["datasets_wanted"]),
            "team": lines(typed["team"]),
            "end_date": typed["end_date"] or None,
        })
        policy = tiers(request)
        with acting(request, ident) as (session, actor):
            slug = apply_for_project(session, actor, policy, form).slug
    except EnclaveError as exc:
        if not correctable(exc):
            raise
        return _apply_page(request, ident, failed(typed, exc, set(APPLY_FIELDS + REGISTER_FIELDS)), status=400)
    return RedirectResponse(f"{web(request).prefix}/projects/{slug}?done=applied", status_code=303)


def _register_page(request: Request, ident: Identity, slug: str, form: FormState | None = None,
                   status: int = 200):  # type: ignore[no-untyped-def]
    with acting(request, ident) as (session, actor):
        project = readmodels.project_detail(session, actor, slug, web(request).hub_prefix)
    return render(request, "researcher/register_details.html", status_code=status, project=project,
                  missing=register_form.missing_words(project, register_form.required(request)),
                  form=form or FormState(values=register_form.current_values(project)),
                  register_choices=register_choices(), done=done_message(request))


@router.get("/projects/{slug}/register")
def register_details_form(request: Request, slug: str, ident: Identity = Depends(signed_in)):
    """What the public register will publish of my proposed project, and what approval still needs."""
    return _register_page(request, ident, slug)


@router.post("/projects/{slug}/register")
async def register_details(request: Request, slug: str, ident: Identity = Depends(signed_in)):
    typed = register_form.typed_values(await form_fields(request))
    try:
        changes = register_form.changes_of(typed)
        with acting(request, ident) as (session, actor):
            amend_register(session, actor, slug, changes)
    except EnclaveError as exc:
        if not correctable(exc):
            raise
        return _register_page(request, ident, slug, failed(typed, exc, register_form.FIELDS), status=400)
    return RedirectResponse(f"{web(request).prefix}/projects/{slug}/register?done=register_saved", status_code=303)
