"""Admin work through the pages: an application flagged and approved, its next steps to
activation and a minimised grant; the dashboard's service figures; the audit log paged,
filtered by event type and readable; the catalogue researchers browse before applying."""

from __future__ import annotations

import datetime as dt
import html
import re

import polars as pl
from fastapi.testclient import TestClient

from enclave.config import Settings
from enclave.db.session import unit_of_work
from enclave.users import get_user
from tests.integration.web.test_web_forms import visible_text
from tests.integration.web.test_web_pages_security import signed_in, xsrf_of
from tests.integration.web.world import PREFIX

ADMIN = {"Authorization": "token t-ada"}


def test_admin_application_flags_datasets_the_catalogue_lacks(client: TestClient):
    signed_in(client, "t-ada")
    page = client.get(PREFIX + "/admin/applications").text
    assert 'class="flag"' in page and "hes-apc: not in the catalogue" in page
    assert "names 1 dataset the catalogue does not hold" in visible_text(page)


def test_admin_approval_leads_to_activation_and_a_minimised_grant(client: TestClient, world: Settings):
    signed_in(client, "t-ada")
    token = xsrf_of(client, "/admin/applications")
    approved = client.post(PREFIX + "/admin/projects/copd/transition",
                           data={"_xsrf": token, "action": "approve", "back": "applications"}, follow_redirects=False)
    assert approved.status_code == 303 and approved.headers["location"].endswith("/admin/projects/copd?done=approve")
    page = client.get(approved.headers["location"]).text
    steps = visible_text(page[page.index("Next steps"):page.index("</section>", page.index("Next steps"))])
    assert "Activate the project" in steps and "Add rex, proposed in the application" in steps
    assert "hes-apc was asked for but is not in the catalogue" in steps

    assert client.post(PREFIX + "/admin/projects/copd/transition", data={"_xsrf": token, "action": "activate"},
                       follow_redirects=False).status_code == 303
    assert client.post(PREFIX + "/admin/projects/copd/members", data={"_xsrf": token, "user": "rex"},
                       follow_redirects=False).status_code == 303
    page = client.get(PREFIX + "/admin/projects/copd").text
    assert "Activate the project" not in page and "Add rex" not in page
    assert 'href="/services/enclave/admin/datasets">Open the catalogue' not in page  # one dataset was named

    # The grant form opens with the project chosen, and grants only what is ticked.
    form = client.get(PREFIX + "/admin/datasets/hospital-episodes", params={"project": "copd"}).text
    assert "<option selected>copd</option>" in form
    assert 'type="checkbox" disabled' in form  # direct identifiers cannot be ticked
    until = (dt.date.today() + dt.timedelta(days=90)).isoformat()
    granted = client.post(PREFIX + "/admin/datasets/hospital-episodes/grants", follow_redirects=False, data={
        "_xsrf": token, "project": "copd", "version": "1", "expires": until,
        "columns": ["admissions.admission_id", "admissions.patient_id", "admissions.specialty",
                    "admissions.length_of_stay_days"],
        "filter.admissions": "length_of_stay_days >= 2", "filter.patients": ""})
    assert granted.status_code == 303, visible_text(granted.text)[-300:]
    grant = next(g for g in client.get(PREFIX + "/api/grants", params={"project": "copd"}, headers=ADMIN).json())
    with unit_of_work(world) as s:
        from enclave.catalog import service as catalog

        row = catalog.get_grant(s, grant["id"])
        assert row.columns_json == ["admissions.admission_id", "admissions.patient_id", "admissions.specialty",
                                    "admissions.length_of_stay_days"]
        view = pl.read_parquet(f"{row.view_path}/admissions.parquet")
        files = sorted(p.name for p in __import__("pathlib").Path(row.view_path).glob("*.parquet"))
    assert files == ["admissions.parquet"]  # no other table
    assert view.columns == ["admission_id", "patient_id", "specialty", "length_of_stay_days"]
    assert view.height > 0 and view["length_of_stay_days"].min() >= 2
    audit = client.get(PREFIX + "/api/audit/events", params={"action": "grant.add", "project": "copd"},
                       headers=ADMIN).json()
    assert audit[-1]["details"]["filters"] == {"admissions": "length_of_stay_days >= 2"}


def test_admin_dashboard_shows_service_against_target(client: TestClient):
    signed_in(client, "t-ada")
    text = visible_text(client.get(PREFIX + "/admin").text)
    assert "Service against target" in text and "a decision within 5 working days" in text
    assert "waiting longer than 5 working days" in text
    assert "application copd" in text  # the waiting application, with its age
    assert "Project applications (custodian) Waiting now 1 Decided" in text
    assert "grants ending within 30 days" in text and "hospital-episodes v1" in text


def test_admin_audit_log_is_paged_filtered_by_type_and_readable(client: TestClient, world: Settings):
    from enclave.audit import append_event

    with unit_of_work(world) as s:
        ada = get_user(s, "ada")
        for i in range(120):
            append_event(s, ada, "test.filler", target=f"thing {i}",
                         details={"columns": ["a.b", "a.c"], "filters": {"episodes": "age >= 18"}, "ok": True,
                                  "view_sha256": "f" * 64, "empty": None})
    signed_in(client, "t-ada")
    first = client.get(PREFIX + "/admin/audit").text
    total = int(re.search(r"Page 1 of (\d+) · (\d+) events", first).group(2))
    assert total > 120 and 'rel="next"' in first and 'rel="prev"' not in first
    assert first.count("<tr><td class=\"num\">") == 50
    seqs = [int(n) for n in re.findall(r'<tr><td class="num">(\d+)</td>', first)]
    assert seqs == sorted(seqs, reverse=True)  # newest first
    second = client.get(PREFIX + "/admin/audit", params={"page": 2}).text
    seqs2 = [int(n) for n in re.findall(r'<tr><td class="num">(\d+)</td>', second)]
    assert seqs2[0] == seqs[-1] - 1 and 'rel="prev"' in second
    last = client.get(PREFIX + "/admin/audit", params={"page": 10**6}).text  # past the end: the last page
    assert 'rel="next"' not in last and "No events match" not in last

    # The event types come from the log, as a list; choosing one filters exactly.
    options = re.findall(r'<option value="([^"]+)"', first[first.index('id="f-action"'):first.index("</select>")])
    assert {"project.create", "grant.add", "test.filler", "project."} <= set(options)
    only = client.get(PREFIX + "/admin/audit", params={"action": "grant.add"}).text
    assert "<code>grant.add</code>" in only and "<code>test.filler</code>" not in only
    assert '<option value="grant.add" selected>' in only

    # Details read as fields, not Python or JSON reprs.
    filler = client.get(PREFIX + "/admin/audit", params={"action": "test.filler"}).text
    cell = html.unescape(filler[filler.index('<td class="details">'):filler.index("</td>", filler.index('<td class="details">'))])
    assert "<dt>Columns</dt><dd>a.b, a.c</dd>" in cell and "<dt>Filters</dt><dd>episodes: age >= 18</dd>" in cell
    assert "<dt>Ok</dt><dd>yes</dd>" in cell and "<dt>View sha256</dt><dd>ffffffffffff…</dd>" in cell
    assert "Empty" not in cell and "[" not in cell and "{" not in cell and "'" not in cell
    # The CSV export keeps the filters but not the page.
    assert "/admin/audit.csv?action=test.filler" in filler


def test_catalogue_researchers_browse_descriptions_and_dictionaries_never_data(client: TestClient, world: Settings):
    signed_in(client, "t-eve")
    listing = client.get(PREFIX + "/catalogue")
    assert listing.status_code == 200 and "hospital-episodes" in listing.text
    assert "Synthetic hospital episodes" in listing.text and "/apply?dataset=hospital-episodes" in listing.text
    page = client.get(PREFIX + "/catalogue/hospital-episodes").text
    for shown in ("admissions", "length_of_stay_days", "Whole days in hospital", "direct", "Data dictionary"):
        assert shown in page
    # No value of the data reaches the page: not a patient's NHS number, name or postcode.
    from enclave.demo.synthetic import generate

    patients = generate(60, seed=5).tables["patients"]  # what the world ingested (deterministic)
    for column in ("nhs_number", "family_name", "postcode"):
        for value in patients[column].drop_nulls().cast(pl.Utf8).to_list()[:30]:
            assert value not in page, (column, value)
    assert client.get(PREFIX + "/catalogue/no-such").status_code == 404
    form = client.get(PREFIX + "/apply", params={"dataset": "hospital-episodes"}).text
    assert ">hospital-episodes</textarea>" in form


def _dictionary_section(page: str) -> str:
    found = re.findall(r'<section class="panel">\s*<h2>Data dictionary.*?</section>', page, re.S)
    assert len(found) == 1, page[-2000:]
    return found[0]


def test_catalogue_and_admin_pages_render_one_data_dictionary(client: TestClient, world: Settings):
    """The researchers' catalogue page and the admins' dataset page draw the dictionary with
    one macro: the same section, every table and column of the ingested version in it."""
    signed_in(client, "t-eve")
    researchers = _dictionary_section(client.get(PREFIX + "/catalogue/hospital-episodes").text)
    signed_in(client, "t-ada")
    admins = _dictionary_section(client.get(PREFIX + "/admin/datasets/hospital-episodes").text)
    assert researchers == admins
    with unit_of_work(world) as s:
        from enclave.catalog import service as catalog

        dictionary = catalog.version_dictionary(catalog.get_version(s, "hospital-episodes", None))
    columns = [(t, c) for t, spec in dictionary.tables.items() for c in spec.columns]
    assert re.findall(r"<h3>([^<]+)</h3>", admins) == list(dictionary.tables)
    assert len(re.findall(r"<tr><td><code>", admins)) == len(columns) > 0
    for _, column in columns:
        assert f"<code>{column}</code>" in admins


def test_admin_api_grant_takes_columns_and_row_filters_like_the_cli(client: TestClient, world: Settings):
    until = (dt.date.today() + dt.timedelta(days=60)).isoformat()
    body = {"project": "diabetes", "dataset": "hospital-episodes", "expires": until,
            "columns": ["patients.sex", "patients.ethnicity"], "where": ["patients: sex = 'F'"]}
    bad = client.post(PREFIX + "/api/grants", json={**body, "where": ["patients: shoe_size > 3"]}, headers=ADMIN)
    assert bad.status_code == 400 and "unknown column(s) shoe_size" in bad.json()["detail"]
    made = client.post(PREFIX + "/api/grants", json=body, headers=ADMIN)
    assert made.status_code == 201, made.text
    with unit_of_work(world) as s:
        from enclave.catalog import service as catalog

        row = catalog.get_grant(s, made.json()["id"])
        view = pl.read_parquet(f"{row.view_path}/patients.parquet")
    assert view.columns == ["sex", "ethnicity"] and set(view["sex"].unique()) == {"F"}
