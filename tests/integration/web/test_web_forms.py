"""Forms validate in the page: the message beside the field, in the web's words, with what
was typed kept; and no page or error a browser gets gives a command-line instruction."""

from __future__ import annotations

import datetime as dt
import html
import re
from html.parser import HTMLParser

import pytest
from fastapi.testclient import TestClient

from enclave.web.wording import has_cli_text
from tests.integration.web.test_web_pages_security import signed_in, xsrf_of
from tests.integration.web.world import PREFIX, REGISTER

LATER = (dt.date.today() + dt.timedelta(days=200)).isoformat()


class _Text(HTMLParser):
    """The text a person sees (and attribute values they may see: titles, placeholders)."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):  # type: ignore[no-untyped-def]
        if tag in ("script", "style"):
            self._skip += 1
        for name, value in attrs:
            if name in ("title", "placeholder", "aria-label", "value", "alt") and value:
                self.parts.append(value)

    def handle_endtag(self, tag):  # type: ignore[no-untyped-def]
        if tag in ("script", "style"):
            self._skip -= 1

    def handle_data(self, data):  # type: ignore[no-untyped-def]
        if not self._skip:
            self.parts.append(data)


def visible_text(page: str) -> str:
    parser = _Text()
    parser.feed(page)
    return " ".join(" ".join(parser.parts).split())


def field_error(page: str, field: str) -> str | None:
    """The message shown beside ``field`` (its element with id ``<field>-error``)."""
    found = re.search(rf'<p class="field-error" id="{re.escape(field.replace(".", "-"))}-error">(.*?)</p>', page, re.S)
    return html.unescape(found.group(1)).strip() if found else None


def application(token: str, **changes: str) -> dict[str, str]:
    form = {"_xsrf": token, "slug": "sepsis-early", "title": "Early sepsis", "purpose": "Earlier recognition.",
            "lay_summary": "Spotting sepsis sooner.", "lawful_basis": "REC 24/AB/0001",
            "organisation": "Royal Infirmary", "team": "ria", "datasets_wanted": "hospital-episodes",
            "end_date": LATER, **{k: str(v) for k, v in REGISTER.model_dump().items()}}
    form.update(changes)
    return form


@pytest.mark.parametrize(("field", "value", "words"), [
    ("end_date", "not-a-date", "give a date"),
    ("end_date", "2001-01-01", "in the past"),
    ("slug", "Bad Slug!", "is not allowed"),
    ("slug", "asthma", "already exists"),
    ("team", "ria\nnobody-here", "no enclave user named 'nobody-here'"),
    ("title", "", "this is needed"),
    ("contact_email", "not an address", "email address"),
])
def test_forms_apply_error_shown_beside_its_field_with_typed_values_kept(client: TestClient, field, value, words):
    signed_in(client, "t-rob")
    form = application(xsrf_of(client, "/apply"), **{field: value})
    response = client.post(PREFIX + "/apply", data=form, follow_redirects=False)
    assert response.status_code == 400
    page = response.text
    message = field_error(page, field)
    assert message is not None and words in message, (field, message)
    assert f'id="{field}"' in page and 'aria-invalid="true"' in page
    # Only that field is marked, and everything typed is still there.
    assert len(re.findall(r'class="field-error"', page)) == 1
    for name in ("title", "purpose", "lay_summary", "organisation", "data_controller", "public_benefit"):
        if name != field:
            assert html.escape(form[name], quote=True) in page, name
    assert 'value="public_task" selected' in page.replace("\n", " ")
    assert not has_cli_text(visible_text(page))


def test_forms_apply_with_nothing_wrong_is_recorded(client: TestClient):
    signed_in(client, "t-rob")
    response = client.post(PREFIX + "/apply", data=application(xsrf_of(client, "/apply")), follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].endswith("/projects/sepsis-early?done=applied")


def test_forms_reject_without_reason_is_shown_beside_the_reason(client: TestClient):
    signed_in(client, "t-ada")
    token = xsrf_of(client, "/admin/applications")
    response = client.post(PREFIX + "/admin/projects/copd/transition",
                           data={"_xsrf": token, "action": "reject", "reason": "  ", "back": "applications"})
    assert response.status_code == 400
    assert field_error(response.text, "reason") == "give a reason: reject needs a reason, which is recorded"
    assert "Application queue" in response.text  # the same page, not an error page
    # A move the lifecycle does not allow is said above the form, on the project's page.
    wrong = client.post(PREFIX + "/admin/projects/copd/transition", data={"_xsrf": token, "action": "suspend",
                                                                         "reason": "lapsed agreement"})
    assert wrong.status_code == 400 and "it cannot be suspended" in html.unescape(wrong.text)
    assert 'value="lapsed agreement"' not in wrong.text or "Lifecycle" in wrong.text


def test_forms_grant_errors_beside_each_field_and_choices_kept(client: TestClient):
    signed_in(client, "t-ada")
    token = xsrf_of(client, "/admin/datasets/hospital-episodes")
    url = PREFIX + "/admin/datasets/hospital-episodes/grants"
    base = {"_xsrf": token, "project": "diabetes", "version": "1", "expires": LATER}

    nothing = client.post(url, data=base)
    assert nothing.status_code == 400
    assert "choose at least one column" in field_error(nothing.text, "columns")

    picked = ["admissions.admission_id", "admissions.specialty", "patients.sex"]
    bad_filter = client.post(url, data={**base, "columns": picked, "filter.admissions": "specialty >>> 3"})
    assert bad_filter.status_code == 400
    assert "not a SQL expression" in field_error(bad_filter.text, "filter.admissions")
    for column in picked:  # the ticks are kept
        assert f'value="{column}" checked' in bad_filter.text
    assert 'value="specialty &gt;&gt;&gt; 3"' in bad_filter.text
    assert '<option selected>diabetes</option>' in bad_filter.text

    unknown_column = client.post(url, data={**base, "columns": picked, "filter.patients": "shoe_size > 3"})
    assert "unknown column(s) shoe_size" in field_error(unknown_column.text, "filter.patients")

    direct = client.post(url, data={**base, "columns": ["patients.nhs_number"]})
    assert "direct identifier" in field_error(direct.text, "columns")

    too_late = (dt.date.today() + dt.timedelta(days=400)).isoformat()
    late = client.post(url, data={**base, "expires": too_late, "columns": picked})
    message = field_error(late.text, "expires")
    assert message and "after the project ends" in message and "--" not in message
    assert f'value="{too_late}"' in late.text

    not_a_date = client.post(url, data={**base, "expires": "soon", "columns": picked})
    assert field_error(not_a_date.text, "expires") == "give the last day of access as a date"

    # Nothing was granted by any of these.
    grants = client.get(PREFIX + "/api/grants", params={"project": "diabetes"},
                        headers={"Authorization": "token t-ada"}).json()
    assert grants == []


def test_forms_add_member_error_beside_the_choice(client: TestClient):
    signed_in(client, "t-ada")
    token = xsrf_of(client, "/admin/projects/asthma")
    response = client.post(PREFIX + "/admin/projects/asthma/members", data={"_xsrf": token, "user": "ria"})
    assert response.status_code == 400
    assert field_error(response.text, "user") == "ria is already a member of asthma"


# --- no command-line instructions anywhere a browser goes ----------------------------------

GET_PAGES = ["/", "/projects", "/projects/asthma", "/apply", "/catalogue", "/catalogue/hospital-episodes",
             "/egress", "/review", "/admin", "/admin/applications", "/admin/projects", "/admin/projects/copd",
             "/admin/projects/asthma", "/admin/datasets", "/admin/datasets/hospital-episodes", "/admin/audit",
             "/admin/incidents", "/register",
             # refusals and mistakes
             "/projects/diabetes", "/projects/no-such-project", "/catalogue/no-such-dataset",
             "/admin/datasets/no-such-dataset", "/admin/datasets/hospital-episodes?version=9",
             "/admin/projects/no-such-project", "/admin/audit?since=yesterday", "/no/such/page",
             "/egress/999999", "/review/999999", "/jobs/999999", "/projects/asthma/jobs"]


def _posts(client: TestClient, token: str) -> list[tuple[str, dict]]:
    soon = (dt.date.today() + dt.timedelta(days=30)).isoformat()
    return [
        ("/admin/datasets/hospital-episodes/grants", {"project": "asthma", "expires": soon, "columns": ["admissions.specialty"]}),
        ("/admin/datasets/hospital-episodes/grants", {"project": "copd", "expires": soon, "columns": ["admissions.specialty"]}),
        ("/admin/datasets/hospital-episodes/grants", {"project": "nowhere", "expires": soon}),
        ("/admin/datasets/hospital-episodes/grants", {"project": "diabetes", "expires": "2001-01-01"}),
        ("/admin/datasets/no-such/grants", {"project": "diabetes", "expires": soon}),
        ("/admin/grants/999999/revoke", {"reason": "x"}),
        ("/admin/projects/copd/transition", {"action": "activate"}),
        ("/admin/projects/copd/transition", {"action": "fly"}),
        ("/admin/projects/asthma/transition", {"action": "suspend"}),
        ("/admin/projects/asthma/members", {"user": "nobody-here"}),
        ("/admin/projects/asthma/members/nobody/remove", {}),
        ("/admin/projects/asthma/members/rob/remove", {}),
        ("/admin/incidents/999999/clear", {"note": "n"}),
        ("/apply", {"slug": "x"}),
    ]


@pytest.mark.parametrize("caller", ["t-ada", "t-rob", "t-rita", "t-mal", "t-nick"])
def test_forms_no_page_or_error_gives_a_command_line_instruction(client: TestClient, caller: str):
    signed_in(client, caller)
    seen = 0
    for path in GET_PAGES:
        response = client.get(PREFIX + path, follow_redirects=False)
        if response.status_code in (301, 302, 303, 307, 401):
            continue
        assert "text/html" in response.headers["content-type"], path
        text = visible_text(response.text)
        assert not has_cli_text(text), (caller, path, re.findall(r".{60}(?:--|enclave ).{40}", text))
        seen += 1
    token_page = "/admin/applications" if caller == "t-ada" else "/apply"
    token_response = client.get(PREFIX + token_page)
    found = re.search(r'name="_xsrf" value="([0-9a-f]+)"', token_response.text)
    if found:
        for path, data in _posts(client, found.group(1)):
            response = client.post(PREFIX + path, data={"_xsrf": found.group(1), **data}, follow_redirects=False)
            if response.status_code == 303:
                continue
            text = visible_text(response.text)
            assert not has_cli_text(text), (caller, path, response.status_code, text[-400:])
            seen += 1
    assert seen > 10


def test_forms_error_page_links_back_only_to_the_apps_own_pages(client: TestClient):
    signed_in(client, "t-rob")
    own = client.get(PREFIX + "/projects/diabetes", headers={"Referer": "http://testserver" + PREFIX + "/projects"})
    assert own.status_code == 403 and f'href="{PREFIX}/projects">Back to the page you came from' in own.text
    for elsewhere in ("http://evil.example/services/enclave/projects", "http://testserver/hub/admin", "javascript:x"):
        page = client.get(PREFIX + "/projects/diabetes", headers={"Referer": elsewhere}).text
        assert "Back to the page you came from" not in page and "Go to the start page" in page
