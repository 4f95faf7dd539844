"""The public register over HTTP: pages without sign-in, server-side search, the HDR UK
Data Use Register feeds (JSON against the OpenAPI schema, CSV columns), the application
form's register fields, and no researcher's name anywhere."""

from __future__ import annotations

import csv
import html
import io
import re

import jsonschema
from fastapi.testclient import TestClient

from enclave.config import Settings
from enclave.db.session import unit_of_work
from enclave.projects import service as projects
from enclave.projects.lifecycle import ProjectAction
from enclave.register.feed import FIELDS
from enclave.users import get_user
from tests.integration.web.world import PREFIX, TOKENS

API = PREFIX + "/api/register"


def _rows(client: TestClient) -> list[dict[str, str]]:
    response = client.get(API + "/data-use.csv")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(response.text)))


def test_register_feed_json_follows_its_openapi_schema_and_the_hdr_uk_fields(client: TestClient):
    spec = client.get(PREFIX + "/api/openapi.json")
    spec = spec if spec.status_code == 200 else client.get(PREFIX + "/openapi.json")
    document = spec.json()
    operation = next(p for path, p in document["paths"].items() if path.endswith("/register/data-use.json"))["get"]
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    rows = client.get(API + "/data-use.json").json()
    jsonschema.validate(rows, {**schema, "components": document["components"]})
    assert [list(r) for r in rows] == [[key for key, _ in FIELDS]] * len(rows)
    asthma = next(r for r in rows if r["projectIdText"] == "asthma")
    assert asthma["legalBasisForData"] == ("UK GDPR Article 6(1)(e): a task in the public interest; "
                                           "Article 9(2)(j): research and statistics in the public interest")
    assert asthma["nationalDataOptOut"] == "Yes" and asthma["applicantNames"] == [] and asthma["applicantId"] == ""
    assert asthma["datasetTitles"] == ["hospital-episodes"]
    assert asthma["confidentialDataDescription"] == "hospital-episodes: Synthetic hospital episodes"
    assert asthma["publicBenefitStatement"] == "Fewer children admitted to hospital with asthma."
    assert asthma["otherApprovalCommittees"] == ["REC 24/AB/0001"]
    diabetes = next(r for r in rows if r["projectIdText"] == "diabetes")
    assert diabetes["legalBasisForData"] == "Not stated" and diabetes["dutyOfConfidentiality"] == "Not stated"
    assert {r["projectIdText"] for r in rows} == {"asthma", "diabetes"}  # copd is only proposed


def test_register_feed_csv_has_the_hdr_uk_columns_one_row_per_project(client: TestClient):
    response = client.get(API + "/data-use.csv")
    assert next(csv.reader(io.StringIO(response.text))) == [title for _, title in FIELDS]
    assert 'filename="data-use-register.csv"' in response.headers["content-disposition"]
    rows = {r["Project ID"]: r for r in _rows(client)}
    json_rows = {r["projectIdText"]: r for r in client.get(API + "/data-use.json").json()}
    assert set(rows) == set(json_rows)
    asthma = rows["asthma"]
    assert asthma["Project Title"] == "Asthma outcomes in children"
    assert asthma["Funders/Sponsors"] == "Asthma Research Charity"
    assert asthma["National Data Opt-Out Applied"] == "Yes" and asthma["Applicant Name(s)"] == ""
    assert asthma["Contact"] == "asthma-study@hospital.example"
    for key, title in FIELDS:  # every cell is the JSON value, lists joined by '; '
        value = json_rows["asthma"][key]
        expected = "; ".join(value) if isinstance(value, list) else ("" if value is None else str(value))
        assert asthma[title] == expected, title


def test_register_feed_csv_keeps_formula_like_cells_as_text(client: TestClient, world: Settings):
    with unit_of_work(world) as s:  # as if typed into an application
        projects.get_project(s, "diabetes").title = '=HYPERLINK("http://evil.example","x")'
        projects.get_project(s, "diabetes").organisation = "@SUM(A1)"
    rows = {r["Project ID"]: r for r in _rows(client)}
    assert rows["diabetes"]["Project Title"] == "'=HYPERLINK(\"http://evil.example\",\"x\")"
    assert rows["diabetes"]["Organisation Name"] == "'@SUM(A1)"
    assert {r["projectTitle"] for r in client.get(API + "/data-use.json").json()} >= {'=HYPERLINK("http://evil.example","x")'}


def test_register_search_and_status_filter_work_server_side_without_sign_in(client: TestClient):
    page = client.get(PREFIX + "/register", params={"q": "kidney"})
    assert page.status_code == 200
    assert 'id="reg-diabetes"' in page.text and 'id="reg-asthma"' not in page.text
    assert "1 project found for “kidney”" in page.text
    assert [e["slug"] for e in client.get(API, params={"q": "hospital-episodes"}).json()] == ["asthma"]
    assert [e["slug"] for e in client.get(API, params={"q": "University Hospital"}).json()] == ["asthma", "diabetes"]
    assert client.get(API, params={"status": "proposed"}).status_code == 400
    assert client.get(API, params={"q": "x" * 300}).json()["detail"].startswith("the search is longer")
    assert client.get(PREFIX + "/register", params={"q": "x" * 300}).status_code == 400
    assert client.get(API + "/data-use.csv", params={"q": "kidney"}).text.count("\r\n") == 2  # header + 1 row
    for query in ({"q": "kidney"}, {"status": "active"}, {"q": "kidney disease", "status": "active"}):
        page = client.get(PREFIX + "/register", params=query).text
        feeds = re.findall(r'href="([^"]*/data-use\.(?:csv|json)[^"]*)"', page)  # the page's download links
        assert len(feeds) == 2 and all("?" in f for f in feeds), feeds
        for feed in feeds:
            assert client.get(html.unescape(feed)).status_code == 200, feed


def test_register_project_page_answers_what_the_data_are_used_for(client: TestClient):
    page = client.get(PREFIX + "/register/asthma")
    assert page.status_code == 200
    for text in ("Fewer children admitted to hospital with asthma.", "Article 6(1)(e): a task in the public interest",
                 "section 251 of the NHS Act 2006", "University Hospital NHS Trust", "mailto:asthma-study@hospital.example",
                 "Synthetic hospital episodes", "national data opt-out", "https://www.nhs.uk/your-nhs-data-matters/",
                 "Asthma Research Charity", "REC 24/AB/0001"):
        assert text in page.text, text
    assert client.get(PREFIX + "/register/copd").status_code == 404        # proposed: not public
    assert client.get(API + "/copd").status_code == 404
    assert client.get(API + "/asthma").json()["lawful_basis"]["article9"] == "research_and_statistics"
    about = client.get(API + "/about").json()
    assert about["opt_out"]["applied"] is True and about["contact_email"] == "transparency@enclave.example"


def test_register_suspended_and_finished_projects_are_marked_and_researchers_never_named(
        client: TestClient, world: Settings):
    with unit_of_work(world) as s:
        ada = get_user(s, "ada")
        projects.transition_project(s, ada, "diabetes", ProjectAction.SUSPEND, "eve shared her password with rob")
    listing = client.get(PREFIX + "/register").text
    assert re.search(r'id="reg-diabetes".*?>suspended<', listing, re.S)
    page = client.get(PREFIX + "/register/diabetes").text
    assert "This project is suspended" in page and "password" not in page
    with unit_of_work(world) as s:
        projects.transition_project(s, get_user(s, "ada"), "diabetes", ProjectAction.CLOSE, "eve left")
    assert "This project has finished" in client.get(PREFIX + "/register/diabetes").text
    published = "".join(client.get(PREFIX + path).text for path in (
        "/register", "/register/asthma", "/register/diabetes", "/register?q=asthma", "/api/register",
        "/api/register/asthma", "/api/register/diabetes", "/api/register/data-use.json", "/api/register/data-use.csv"))
    researchers = {name for name, _ in TOKENS.values()} - {"ada", "ann", "rita", "rudy", "nick"}
    assert researchers == {"rob", "ria", "eve", "mal"}
    leaked = [name for name in researchers | {"rex"} if re.search(rf"\b{name}\b", published, re.IGNORECASE)]
    assert leaked == [], leaked


def _form(client: TestClient, **changes: str) -> dict[str, str]:
    from tests.integration.web.test_web_pages_security import xsrf_of

    form = {"_xsrf": xsrf_of(client, "/apply"), "slug": "sepsis-news", "title": "Sepsis early warning",
            "purpose": "Test early warning scores.", "lay_summary": "Can bedside checks spot sepsis sooner?",
            "lawful_basis": "REC 25/XY/0001", "organisation": "Royal Infirmary", "end_date": "2099-01-01",
            "public_benefit": "Earlier treatment of sepsis.", "gdpr_article6": "public_task",
            "gdpr_article9": "health_or_social_care", "confidentiality_basis": "section_251",
            "data_controller": "Royal Infirmary NHS Trust", "contact_email": "sepsis@infirmary.example",
            "funders": "NIHR"}
    form.update(changes)
    return form


def test_register_fields_of_an_application_are_validated_beside_the_field(client: TestClient, world: Settings):
    client.cookies.set("enclave-session", "t-rob")
    for field, value, says in (("contact_email", "Rob <rob@x>", "give one email address"),
                               ("contact_email", "", "this is needed"),
                               ("gdpr_article6", "because", "choose one of: consent, contract"),
                               ("public_benefit", "", "this is needed")):
        response = client.post(PREFIX + "/apply", data=_form(client, **{field: value}), follow_redirects=False)
        assert response.status_code == 400, (field, value)
        assert f'id="{field}-error"' in response.text and says in response.text.lower(), (field, response.text[-3000:])
    with unit_of_work(world) as s:
        assert projects.list_projects(s, get_user(s, "ada"))[-1].slug != "sepsis-news"  # nothing half-written
    assert client.post(PREFIX + "/apply", data=_form(client), follow_redirects=False).status_code == 303
    with unit_of_work(world) as s:
        ada = get_user(s, "ada")
        projects.transition_project(s, ada, "sepsis-news", ProjectAction.APPROVE)
    entry = client.get(API + "/sepsis-news").json()
    assert entry["lawful_basis"]["confidentiality"] == "section_251" and entry["contact_email"] == "sepsis@infirmary.example"
    assert entry["status_text"] == "approved, not started" and entry["funders"] == "NIHR"


def test_register_fields_are_shown_to_the_admin_deciding_the_application(client: TestClient):
    queue = client.get(PREFIX + "/admin/applications", headers={"Authorization": "token t-ada"}).text
    copd = queue[queue.index('id="a-copd"'):]
    for text in ("For the public register", "Fewer children admitted to hospital with asthma.", "public task",
                 "research and statistics", "section 251", "University Hospital NHS Trust",
                 "asthma-study@hospital.example"):
        assert text in copd, text
