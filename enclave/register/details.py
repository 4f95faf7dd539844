"""The register's fields of a project application, validated, and their public wording."""

from __future__ import annotations

import re
from collections.abc import Iterable
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from enclave.enums import ConfidentialityBasis, GdprArticle6, GdprArticle9
from enclave.errors import InvalidInput

# One address, no display name: a mailbox the public may write to.
EMAIL_RE = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                      r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$")

ARTICLE6_WORDING: dict[GdprArticle6, str] = {
    GdprArticle6.CONSENT: "Article 6(1)(a): the people concerned consented",
    GdprArticle6.CONTRACT: "Article 6(1)(b): a contract with the people concerned",
    GdprArticle6.LEGAL_OBLIGATION: "Article 6(1)(c): a legal obligation",
    GdprArticle6.VITAL_INTERESTS: "Article 6(1)(d): to protect someone's life",
    GdprArticle6.PUBLIC_TASK: "Article 6(1)(e): a task in the public interest",
    GdprArticle6.LEGITIMATE_INTERESTS: "Article 6(1)(f): legitimate interests",
}
ARTICLE9_WORDING: dict[GdprArticle9, str] = {
    GdprArticle9.EXPLICIT_CONSENT: "Article 9(2)(a): explicit consent",
    GdprArticle9.EMPLOYMENT: "Article 9(2)(b): employment and social security law",
    GdprArticle9.VITAL_INTERESTS: "Article 9(2)(c): to protect someone's life",
    GdprArticle9.NOT_FOR_PROFIT_BODY: "Article 9(2)(d): a not-for-profit body's own members",
    GdprArticle9.MADE_PUBLIC: "Article 9(2)(e): made public by the person",
    GdprArticle9.LEGAL_CLAIMS: "Article 9(2)(f): legal claims",
    GdprArticle9.SUBSTANTIAL_PUBLIC_INTEREST: "Article 9(2)(g): substantial public interest",
    GdprArticle9.HEALTH_OR_SOCIAL_CARE: "Article 9(2)(h): health or social care",
    GdprArticle9.PUBLIC_HEALTH: "Article 9(2)(i): public health",
    GdprArticle9.RESEARCH_AND_STATISTICS: "Article 9(2)(j): research and statistics in the public interest",
}
CONFIDENTIALITY_WORDING: dict[ConfidentialityBasis, str] = {
    ConfidentialityBasis.CONSENT: "The patients agreed to their information being used",
    ConfidentialityBasis.SECTION_251: "Support under section 251 of the NHS Act 2006, on the advice of the "
                                      "Confidentiality Advisory Group",
    ConfidentialityBasis.LEGAL_REQUIREMENT: "The law requires it (a statute or a court order)",
    ConfidentialityBasis.NOT_CONFIDENTIAL: "The data are de-identified, so the duty of confidentiality does not apply",
    ConfidentialityBasis.PUBLIC_INTEREST: "An overriding public interest",
}


_CHOICES: dict[str | None, type[StrEnum]] = {"gdpr_article6": GdprArticle6, "gdpr_article9": GdprArticle9,
                                             "confidentiality_basis": ConfidentialityBasis}


class RegisterDetails(BaseModel):
    """What the public register publishes about a project, beyond its title and lay summary.

    The contact is published: it must be a team or role mailbox, never a person's own."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    public_benefit: str = Field(min_length=1, max_length=5000,
                                description="Public benefit statement: who gains and how, in plain language")
    gdpr_article6: GdprArticle6 = Field(description="UK GDPR Article 6(1) lawful basis")
    gdpr_article9: GdprArticle9 = Field(description="UK GDPR Article 9(2) condition for health data")
    confidentiality_basis: ConfidentialityBasis = Field(
        description="Basis under the common law duty of confidentiality")
    data_controller: str = Field(min_length=1, max_length=200, description="The organisation that decides why "
                                                                           "and how the data are used")
    contact_email: str = Field(min_length=3, max_length=254, description="A team mailbox the public may write to")
    funders: str = Field(default="", max_length=500, description="Funders and sponsors, if any")

    @field_validator("contact_email")
    @classmethod
    def _one_mailbox(cls, value: str) -> str:
        return _mailbox(value)

    @field_validator("gdpr_article6", "gdpr_article9", "confidentiality_basis", mode="before")
    @classmethod
    def _one_of_the_choices(cls, value: object, info: ValidationInfo) -> object:
        return _choice(value, info.field_name)


def _mailbox(value: str) -> str:
    if not EMAIL_RE.fullmatch(value):
        raise PydanticCustomError("email", "give one email address, such as research-office@example.org")
    return value.lower()


def _choice(value: object, field_name: str | None) -> object:
    choices = _CHOICES[field_name]
    if not isinstance(value, str) or value not in {c.value for c in choices}:
        raise PydanticCustomError("choice", "choose one of: {choices}",
                                  {"choices": ", ".join(c.value for c in choices)})
    return value


class RegisterChanges(BaseModel):
    """Register details to add to or amend on a proposed project: a field left out (None)
    keeps its value; a given one is checked as in :class:`RegisterDetails`."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    public_benefit: str | None = Field(default=None, min_length=1, max_length=5000)
    gdpr_article6: GdprArticle6 | None = None
    gdpr_article9: GdprArticle9 | None = None
    confidentiality_basis: ConfidentialityBasis | None = None
    data_controller: str | None = Field(default=None, min_length=1, max_length=200)
    contact_email: str | None = Field(default=None, min_length=3, max_length=254)
    funders: str | None = Field(default=None, max_length=500)

    @field_validator("contact_email")
    @classmethod
    def _one_mailbox(cls, value: str | None) -> str | None:
        return None if value is None else _mailbox(value)

    @field_validator("gdpr_article6", "gdpr_article9", "confidentiality_basis", mode="before")
    @classmethod
    def _one_of_the_choices(cls, value: object, info: ValidationInfo) -> object:
        return None if value is None else _choice(value, info.field_name)

    def given(self) -> dict[str, object]:
        """The columns this changes, with their new values."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


# The columns the register's fields live in, in the order of the application form.
REGISTER_COLUMNS: tuple[str, ...] = ("public_benefit", "gdpr_article6", "gdpr_article9", "confidentiality_basis",
                                     "data_controller", "contact_email", "funders")


class RegisterField(StrEnum):
    """A part of the register entry a site may require before a project is approved
    (``policies/register.yaml``: ``required_at_approval``)."""

    PUBLIC_BENEFIT = "public_benefit"
    LAWFUL_BASIS = "lawful_basis"
    DATA_CONTROLLER = "data_controller"
    CONTACT = "contact"


# The project's columns behind each register field: all of them must be filled in.
FIELD_COLUMNS: dict[RegisterField, tuple[str, ...]] = {
    RegisterField.PUBLIC_BENEFIT: ("public_benefit",),
    RegisterField.LAWFUL_BASIS: ("gdpr_article6", "gdpr_article9", "confidentiality_basis"),
    RegisterField.DATA_CONTROLLER: ("data_controller",),
    RegisterField.CONTACT: ("contact_email",),
}
FIELD_WORDS: dict[RegisterField, str] = {
    RegisterField.PUBLIC_BENEFIT: "public benefit",
    RegisterField.LAWFUL_BASIS: "lawful basis",
    RegisterField.DATA_CONTROLLER: "data controller",
    RegisterField.CONTACT: "contact",
}


def missing_columns(project: object, required: Iterable[RegisterField]) -> list[str]:
    """The register columns of ``project`` (a Project or anything with its attributes) that
    ``required`` needs and that are empty, in the order of the form."""
    wanted = {column for f in required for column in FIELD_COLUMNS[f]}
    return [c for c in REGISTER_COLUMNS if c in wanted and not str(getattr(project, c) or "").strip()]


def missing_fields(project: object, required: Iterable[RegisterField]) -> list[RegisterField]:
    """The ``required`` register fields that ``project`` leaves empty (any of its columns)."""
    gaps = set(missing_columns(project, required))
    return [f for f in RegisterField if any(c in gaps for c in FIELD_COLUMNS[f])]


def option_of(column: str) -> str:
    """The command-line option that sets a register column, e.g. ``--contact-email``."""
    return "--" + column.replace("_", "-")


def register_choices() -> dict[str, list[tuple[str, str]]]:
    """The lawful bases an application form offers: (value, public wording) per enum."""
    return {"article6": [(k.value, v) for k, v in ARTICLE6_WORDING.items()],
            "article9": [(k.value, v) for k, v in ARTICLE9_WORDING.items()],
            "confidentiality": [(k.value, v) for k, v in CONFIDENTIALITY_WORDING.items()]}


def details_from_options(**options: str | None) -> RegisterDetails | None:
    """RegisterDetails from command-line options (None when none is given); a bad or
    missing one is one InvalidInput line naming its option."""
    given = {k: v for k, v in options.items() if v is not None}
    if not given:
        return None
    try:
        return RegisterDetails.model_validate(given)
    except ValidationError as exc:
        err = exc.errors()[0]
        option = "--" + str(err["loc"][0]).replace("_", "-") if err["loc"] else "the register options"
        if err["type"] == "missing":
            raise InvalidInput(f"{option} is missing: the register options go together (public benefit, both GDPR "
                               "bases, confidentiality basis, data controller, contact email)") from None
        raise InvalidInput(f"{option}: {err['msg']}") from None


def changes_from_options(**options: str | None) -> RegisterChanges:
    """RegisterChanges from command-line options; a bad one, or none at all, is one
    InvalidInput line naming the option."""
    given = {k: v for k, v in options.items() if v is not None}
    if not given:
        raise InvalidInput("give at least one register option to add or change: "
                           + ", ".join(option_of(c) for c in REGISTER_COLUMNS))
    try:
        return RegisterChanges.model_validate(given)
    except ValidationError as exc:
        err = exc.errors()[0]
        option = option_of(str(err["loc"][0])) if err["loc"] else "the register options"
        words = "give some text" if err["type"] == "string_too_short" else err["msg"]
        raise InvalidInput(f"{option}: {words}") from None
