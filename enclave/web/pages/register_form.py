"""The register details form of a proposed project, shared by the admin's project page
and the applicant's: what approval still needs, the form's values, and a post read into
:class:`RegisterChanges` (a field left empty keeps its value)."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from enclave.enums import ProjectStatus
from enclave.register.details import FIELD_WORDS, REGISTER_COLUMNS, RegisterChanges, RegisterField, missing_fields
from enclave.register.policy import load_register_policy
from enclave.web.context import web
from enclave.web.pages.forms import parse


def required(request: Request) -> list[RegisterField]:
    """What approval needs of the register, as the site's policy says now (read afresh)."""
    return load_register_policy(web(request).settings.policies_dir).required_at_approval


def missing_words(project: Any, needed: list[RegisterField]) -> list[str]:
    """The register fields (in words) a proposed project lacks, for which Approve refuses."""
    if project.status is not ProjectStatus.PROPOSED:
        return []
    return [FIELD_WORDS[f] for f in missing_fields(project, needed)]


def current_values(project: Any) -> dict[str, str]:
    """The form as it starts: what the project states now."""
    return {"form": "register", **{c: getattr(project, c) or "" for c in REGISTER_COLUMNS}}


def typed_values(data: dict[str, str]) -> dict[str, str]:
    return {"form": "register", **{c: data.get(c, "") for c in REGISTER_COLUMNS}}


def changes_of(typed: dict[str, str]) -> RegisterChanges:
    """The changes a post asks for; one InvalidInput naming the first bad field."""
    return parse(RegisterChanges, {c: typed[c] for c in REGISTER_COLUMNS if typed[c].strip()})


FIELDS = set(REGISTER_COLUMNS)
