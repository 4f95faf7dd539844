"""The register's fields of an application: what is accepted, and the one line otherwise."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from enclave.enums import ConfidentialityBasis, GdprArticle6, GdprArticle9
from enclave.errors import InvalidInput
from enclave.register.details import (
    ARTICLE6_WORDING,
    ARTICLE9_WORDING,
    CONFIDENTIALITY_WORDING,
    RegisterDetails,
    details_from_options,
)

GOOD = dict(public_benefit="Better care.", gdpr_article6="public_task", gdpr_article9="research_and_statistics",
            confidentiality_basis="section_251", data_controller="City NHS Trust",
            contact_email="Research.Office@City.example")


def test_details_every_basis_has_public_wording():
    assert set(ARTICLE6_WORDING) == set(GdprArticle6) and set(ARTICLE9_WORDING) == set(GdprArticle9)
    assert set(CONFIDENTIALITY_WORDING) == set(ConfidentialityBasis)


def test_details_accept_one_mailbox_and_the_listed_bases():
    details = RegisterDetails(**GOOD)
    assert details.contact_email == "research.office@city.example" and details.funders == ""
    assert details.gdpr_article9 is GdprArticle9.RESEARCH_AND_STATISTICS


@pytest.mark.parametrize("email", ["", "a", "two@a.example, three@b.example", "Name <x@y.example>", "x@localhost",
                                   "x y@z.example", "x@-bad.example", "x@y.example\nz@w.example"])
def test_details_refuse_anything_but_one_address(email: str):
    with pytest.raises(ValidationError):
        RegisterDetails(**{**GOOD, "contact_email": email})


@pytest.mark.parametrize("value", ["6(1)(e)", "", None, 5, ["public_task"], {"a": 1}, "PUBLIC_TASK"])
def test_details_refuse_an_unlisted_basis_of_any_type(value: object):
    with pytest.raises(ValidationError, match="choose one of: consent, contract"):
        RegisterDetails(**{**GOOD, "gdpr_article6": value})


def test_details_from_options_go_together_and_say_which_option_is_wrong():
    assert details_from_options(public_benefit=None, contact_email=None) is None
    with pytest.raises(InvalidInput, match="^--gdpr-article6 is missing"):
        details_from_options(public_benefit="x")
    with pytest.raises(InvalidInput, match="^--contact-email: give one email address"):
        details_from_options(**{**GOOD, "contact_email": "nope"})
    assert details_from_options(**GOOD) == RegisterDetails(**GOOD)
