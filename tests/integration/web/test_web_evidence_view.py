"""The reviewer's view of one file: every cell with its count and rule outcomes, suppressed
cells marked as such, the evidence's provenance, the researchers' context, controls and
exception, and the project's earlier outputs (with the most similar table) on one page."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from enclave.web.auth import SESSION_COOKIE
from enclave.web.readmodels import TableShape, similarity
from tests.integration.web.evidence_steps import approve_and_release, save_tables, submit
from tests.integration.web.world import PREFIX

CONTEXT = "Patients by deprivation decile and sex, whole cohort"
CONTROLS = "cells below 10 and zeros suppressed by enclave.safe"
EXCEPTION = "none needed: every failing cell is suppressed"


@pytest.fixture
def requests(world, client: TestClient, monkeypatch) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """An earlier request released, and a new one in review; the tables carry reproduced
    evidence, the new one with cells below 10 and zeros that the library suppressed."""
    save_tables(world, monkeypatch, {
        "earlier.csv": {"index": "deprivation_decile", "columns": "sex"},
        "by_decile.csv": {"index": "deprivation_decile", "columns": "sex", "margins": True},
        "unrelated.csv": {"index": "ethnicity", "columns": "sex", "young": True},
    })
    earlier = submit(world, "rob", "First tables", ["earlier.csv", "unrelated.csv"], CONTEXT, CONTROLS,
                     exception="first release")
    approve_and_release(client, earlier, ["earlier.csv", "unrelated.csv"])
    current = submit(world, "rob", "Tables by decile", ["by_decile.csv"], CONTEXT, CONTROLS, exception=EXCEPTION)
    return {"earlier": earlier, "current": current}


def page(client: TestClient, token: str, url: str) -> str:
    client.cookies.set(SESSION_COOKIE, token)
    response = client.get(PREFIX + url)
    assert response.status_code == 200, response.text[:400]
    return response.text


def test_review_file_marks_suppressed_cells_with_reason_and_count(client: TestClient, requests: dict[str, int]):
    html = page(client, "t-rita", f"/review/{requests['current']}/file?path=by_decile.csv")
    assert 'data-evidence="reproduced"' in html
    suppressed = re.findall(r'<td class="cell-suppressed" title="([^"]*)" data-cell="[^"]*suppressed">'
                            r'<span class="suppressed-mark">suppressed</span><span class="cell-why">([^<]*)</span>'
                            r'<span class="cell-n">n=(\d+)</span>', html)
    assert suppressed, "no suppressed cell is marked"
    for why, rules, n in suppressed:
        if "secondary" in why:
            assert rules == "protects others"
        elif int(n) == 0:
            assert rules == "zeros" and "zeros: n=0" in why
        else:
            assert "threshold" in rules and f"threshold: n={n} &lt; 10" in why
            assert 0 < int(n) < 10
    # a missing value stays blank; a shown cell carries its count
    assert re.search(r'<td class="" title="passes every rule" data-cell="pass">(\d+)<span class="cell-n">n=\1</span>', html)


def summary_of(html: str) -> str:
    return re.search(r"data-check-summary><b>Checks:</b> ([^<]*)</p>", html).group(1)


def test_review_file_summary_names_failing_cells_instead_of_pass(world, client: TestClient, monkeypatch):
    save_tables(world, monkeypatch, {"by_decile.csv": {"index": "deprivation_decile", "columns": "sex", "margins": True}})
    rid = submit(world, "rob", "Only table", ["by_decile.csv"], CONTEXT, CONTROLS)
    html = page(client, "t-rita", f"/review/{rid}/file?path=by_decile.csv")
    assert '<span class="badge badge-pass">pass</span>' in html  # the file passes: all failing cells are hidden
    summary = summary_of(html)
    assert re.fullmatch(r"\d+ cells? failed in the raw table \(\d+ cells below 10[^)]*\); all suppressed; "
                        r"the saved table passes\.", summary), summary
    assert "No findings" not in html.split("<h2>Findings</h2>")[0]


def test_review_file_summary_names_the_other_checks_that_decide_the_verdict(client: TestClient, requests: dict[str, int]):
    detail = client.get(f"{PREFIX}/api/egress/requests/{requests['current']}", headers={"Authorization": "token t-rita"}).json()
    file = detail["file_list"][0]
    others = {f["rule"].replace("_", " ") for f in file["findings"]
              if f["status"] != "pass" and f["rule"] not in ("evidence", "threshold", "zeros")}
    summary = summary_of(page(client, "t-rita", f"/review/{requests['current']}/file?path=by_decile.csv"))
    assert summary.endswith({"pass": "the saved table passes.", "review": "the saved table needs a reviewer.",
                             "fail": "the saved table fails."}[file["check_status"]])
    for rule in others:  # e.g. differencing against the released table: named, not hidden behind the cells
        assert rule in summary.split("other checks:")[1], summary


def test_review_file_shows_context_controls_exception_and_earlier_outputs(client: TestClient, requests: dict[str, int]):
    html = page(client, "t-rita", f"/review/{requests['current']}/file?path=by_decile.csv")
    assert f"<dd class=\"prewrap\" data-context>{CONTEXT}</dd>" in html
    assert f"<dd class=\"prewrap\" data-controls>{CONTROLS}</dd>" in html
    assert "data-exception>none needed: every failing cell is suppressed</dd>" in html
    earlier = requests["earlier"]
    links = re.findall(rf'href="{PREFIX}/review/{requests["current"]}/earlier/{earlier}/file\?path=([^"]+)"', html)
    assert {"earlier.csv", "unrelated.csv"} <= set(links)
    similar = html.split("data-similar>")[1].split("</section>")[0]
    assert "<code>earlier.csv</code>" in similar  # same columns and rows: the differencing risk
    opened = page(client, "t-rita", f"/review/{requests['current']}/earlier/{earlier}/file?path=earlier.csv")
    assert "these are the bytes that left" in opened and "deprivation_decile" in opened


def test_review_earlier_file_refuses_what_is_not_a_released_output_of_the_project(client: TestClient, requests: dict[str, int]):
    client.cookies.set(SESSION_COOKIE, "t-rita")
    current = requests["current"]
    for url in (f"/review/{current}/earlier/{current}/file?path=by_decile.csv",    # not released
                f"/review/{current}/earlier/{requests['earlier']}/file?path=by_decile.csv"):  # not in it
        response = client.get(PREFIX + url)
        assert response.status_code == 404 and "earlier outputs" in response.text
    client.cookies.set(SESSION_COOKIE, "t-rob")  # the author is no reviewer of their own request
    assert client.get(PREFIX + f"/review/{current}/earlier/{requests['earlier']}/file?path=earlier.csv").status_code == 403


def test_researcher_file_page_marks_suppressed_cells_without_their_counts(client: TestClient, requests: dict[str, int]):
    html = page(client, "t-rob", f"/egress/{requests['current']}/file?path=by_decile.csv")
    assert '<span class="suppressed-mark">suppressed</span>' in html
    assert 'class="cell-n"' not in html and "n=" not in html  # the exact figures stay inside
    assert re.search(r"data-check-summary><b>Checks:</b> \d+ cells? failed in the raw table", html)
    assert f"data-context>{CONTEXT}</dd>" in html


def test_similarity_prefers_the_table_with_the_same_columns_and_rows():
    current = TableShape(header=("decile", "F", "M", "All"), labels=tuple("123456"), rows=6)
    same = TableShape(header=("decile", "F", "M"), labels=tuple("12345"), rows=5)
    other = TableShape(header=("ethnicity", "F", "M"), labels=("a", "b"), rows=2)
    unrelated = TableShape(header=("term", "coef"), labels=("x",), rows=1)
    assert similarity(current, current) == 1.0
    assert similarity(current, same) > similarity(current, other) > similarity(current, unrelated)
    assert similarity(current, unrelated) < 0.4


def test_review_file_never_shows_figures_of_evidence_that_was_not_reproduced(world, client: TestClient, monkeypatch):
    import json

    from enclave.disclosure.evidence import sidecar_path
    from enclave.egress.quarantine import outbox_dir

    save_tables(world, monkeypatch, {"forged.csv": {"index": "deprivation_decile", "columns": "sex"}})
    sidecar = sidecar_path(outbox_dir(world, "asthma") / "forged.csv")
    claimed = json.loads(sidecar.read_text())
    for cell in claimed["cells"]:  # the researcher claims every cell is large and passes
        cell.update(n=777, status="pass", verdicts={k: "pass" for k in cell["verdicts"]})
    sidecar.write_text(json.dumps(claimed))
    rid = submit(world, "rob", "Forged", ["forged.csv"], CONTEXT, CONTROLS, exception="trust me")
    html = page(client, "t-rita", f"/review/{rid}/file?path=forged.csv")
    assert 'data-evidence="not_reproducible"' in html and "could not be reproduced" in html
    assert "class=\"cell-n\"" not in html and "data-evidence-cells" not in html and "cell-suppressed" not in html
    summary = re.search(r"data-check-summary><b>Checks:</b> ([^<]*)</p>", html).group(1)
    assert summary.startswith("Evidence not reproducible, so the file was checked as a plain file")


def test_request_page_gives_each_file_its_check_summary(client: TestClient, requests: dict[str, int]):
    html = page(client, "t-rob", f"/egress/{requests['current']}")
    summary = re.search(r'<p class="small check-summary" data-check-summary><b>Checks:</b> ([^<]*)</p>', html).group(1)
    assert re.match(r"\d+ cells? failed in the raw table \(", summary) and "all suppressed" in summary, summary


def test_reviewer_request_page_gives_each_file_its_check_summary(client: TestClient, requests: dict[str, int]):
    html = page(client, "t-rita", f"/review/{requests['current']}")
    summary = re.search(r'<div class="small" data-check-summary>([^<]*)</div>', html).group(1)
    assert re.match(r"\d+ cells? failed in the raw table \(", summary) and "all suppressed" in summary, summary


def test_review_earlier_file_refuses_another_projects_release(world, client: TestClient, requests: dict[str, int]):
    from enclave.egress.quarantine import outbox_dir

    outbox = outbox_dir(world, "diabetes")
    outbox.mkdir(parents=True, exist_ok=True)
    (outbox / "other.txt").write_text("Another team's released note.\n")
    api, eve = PREFIX + "/api/egress", {"Authorization": "token t-eve"}
    rid = client.post(api + "/requests", headers=eve, json={"project": "diabetes", "title": "Note"}).json()["id"]
    client.post(api + f"/requests/{rid}/files", headers=eve,
                json={"paths": ["other.txt"], "group": "g", "context": "a note", "controls": "none"})
    assert client.post(api + f"/requests/{rid}/submit", headers=eve, json={}).json()["status"] == "in_review"
    approve_and_release(client, rid, ["other.txt"])
    client.cookies.set(SESSION_COOKIE, "t-rita")
    response = client.get(PREFIX + f"/review/{requests['current']}/earlier/{rid}/file?path=other.txt")
    assert response.status_code == 404 and "Another team" not in response.text
    listed = page(client, "t-rita", f"/review/{requests['current']}/file?path=by_decile.csv")
    assert "other.txt" not in listed
