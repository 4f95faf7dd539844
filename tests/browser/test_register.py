"""A member of the public, in Chromium, searches the register and opens a project: no
sign-in, and what they read answers "what are my data used for"."""

from __future__ import annotations

import re

import pytest

from tests.browser.test_web_consoles import PREFIX, shot

pytestmark = pytest.mark.browser


def test_browser_public_searches_the_register_and_opens_a_project(as_user, server):
    page = as_user(None)  # signed out: a member of the public
    page.goto(server + PREFIX + "/register")
    assert page.get_by_role("heading", name="Transparency register").is_visible()
    assert page.get_by_role("heading", name="Your choice: opting out").is_visible()
    assert page.get_by_text("COPD admissions").count() == 0  # proposed: not public
    shot(page, "register")

    page.get_by_label("Search the register").fill("asthma")
    page.get_by_role("button", name="Search").click()
    page.wait_for_url(re.compile(r".*/register\?q=asthma.*"))
    assert page.get_by_role("status").inner_text().startswith("1 project found for “asthma”")
    assert page.get_by_role("heading", name="Type 2 diabetes and kidney disease").count() == 0

    page.get_by_role("link", name="Asthma outcomes in children", exact=True).click()
    page.wait_for_url(server + PREFIX + "/register/asthma")
    assert page.get_by_role("heading", name="Asthma outcomes in children", level=1).is_visible()
    law = page.locator("section", has=page.get_by_role("heading", name="Why the law allows it"))
    assert law.get_by_text("Article 6(1)(e): a task in the public interest").is_visible()
    assert law.get_by_text("section 251 of the NHS Act 2006", exact=False).is_visible()
    who = page.locator("section", has=page.get_by_role("heading", name="Who is responsible"))
    assert who.get_by_text("University Hospital NHS Trust").is_visible()
    assert who.get_by_role("link", name="asthma-study@hospital.example").get_attribute("href") == \
        "mailto:asthma-study@hospital.example"
    data = page.locator("section", has=page.get_by_role("heading", name="What data it uses"))
    assert data.get_by_text("Synthetic hospital episodes", exact=False).is_visible()
    assert page.get_by_text("Fewer children admitted to hospital with asthma.").is_visible()
    for name in ("rob", "ria"):  # the researchers on the project are never named
        assert page.get_by_text(re.compile(rf"\b{name}\b", re.I)).count() == 0
    shot(page, "register-project")
    page.get_by_role("link", name="Transparency register").first.click()
    assert page.get_by_role("heading", name="Transparency register").is_visible()
    assert as_user.console_errors == []  # e.g. no CSP violations
