"""Two reviewers decide a file from its one page, in Chromium: the table with suppressed
cells marked (and why), each cell's count, the evidence's provenance, the researchers'
context, controls and exception, and the project's earlier outputs one click away."""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from enclave.web.app import create_app
from tests.integration.web.evidence_steps import approve_and_release, save_tables, submit
from tests.integration.web.world import PREFIX, authenticator, build_world
from tests.ports import free_port

pytestmark = pytest.mark.browser

SHOTS = Path(os.environ.get("ENCLAVE_SCREENSHOTS") or tempfile.mkdtemp(prefix="enclave-shots-"))
CONTEXT = "Patients by ethnicity, whole cohort, 2020-2024"
CONTROLS = "Counts below 10 and zeros suppressed by enclave.safe; margins protected"
EXCEPTION = "No exception needed: the library suppressed every failing cell"


@pytest.fixture(scope="module")
def review_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int, int]]:
    """The web app over a world where asthma released a table before and now submits a
    like one, both with reproduced evidence."""
    import uvicorn

    settings = build_world(tmp_path_factory.mktemp("review") / "home")
    with pytest.MonkeyPatch.context() as monkeypatch:
        save_tables(settings, monkeypatch, {
            "ethnicity_2023.csv": {"index": "ethnicity", "columns": "sex"},
            "ethnicity.csv": {"index": "ethnicity", "columns": "sex", "margins": True},
        })
    app = create_app(settings, authenticator())
    earlier = submit(settings, "rob", "Cohort 2023", ["ethnicity_2023.csv"], CONTEXT, CONTROLS, exception="first")
    approve_and_release(TestClient(app), earlier, ["ethnicity_2023.csv"])
    current = submit(settings, "rob", "Cohort by ethnicity", ["ethnicity.csv"], CONTEXT, CONTROLS, exception=EXCEPTION)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the web app did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", earlier, current
    server.should_exit = True
    thread.join(timeout=10)


def _signed_in(browser, url: str, token: str):  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.add_cookies([{"name": "enclave-session", "value": token, "url": url}])
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.console_errors = errors  # type: ignore[attr-defined]
    return page


def test_browser_two_reviewers_decide_a_file_from_its_evidence_view(browser, review_server):
    url, earlier, current = review_server
    for token, name in (("t-rita", "rita"), ("t-rudy", "rudy")):
        page = _signed_in(browser, url, token)
        page.goto(url + PREFIX + "/review")
        page.get_by_role("link", name="Cohort by ethnicity").click()
        page.get_by_role("link", name="ethnicity.csv").click()

        summary = page.locator("[data-check-summary]").inner_text()
        assert "failed in the raw table" in summary and "all suppressed" in summary, summary
        verdict = page.locator(".page-head .badge").first.inner_text().lower()
        assert summary.endswith({"pass": "the saved table passes.", "review": "the saved table needs a reviewer.",
                                 "fail": "the saved table fails."}[verdict]), summary
        # Suppressed cells carry a mark and a reason, not a blank like a missing value.
        marked = page.locator("table.data td.cell-suppressed")
        assert marked.count() >= 1
        first = marked.first
        assert first.locator(".suppressed-mark").inner_text() == "suppressed"
        assert first.get_attribute("title").startswith("suppressed")
        assert first.locator(".cell-n").inner_text().startswith("n=")
        assert page.locator("[data-evidence='reproduced']").is_visible()
        assert page.get_by_text("re-ran the table's recorded query").is_visible()
        assert page.locator("[data-context]").inner_text() == CONTEXT
        assert page.locator("[data-controls]").inner_text() == CONTROLS
        assert page.locator("[data-exception]").inner_text() == EXCEPTION
        # The cells with their rules, and the most similar earlier table beside the current one.
        assert page.locator("table[data-evidence-cells] tbody tr").count() >= marked.count()
        similar = page.locator("[data-similar]")
        assert similar.get_by_text("ethnicity_2023.csv").is_visible()
        if name == "rita":
            SHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SHOTS / "reviewer-file.png"), full_page=True)

        # Each earlier released output opens in one click, as it left.
        page.locator("[data-earlier]").get_by_role("link", name="ethnicity_2023.csv").click()
        assert page.get_by_text("these are the bytes that left").is_visible()
        assert page.locator("table.data tbody tr").count() >= 2
        page.go_back()

        page.fill("#comment", f"{name}: every failing cell is suppressed; the margins do not reveal them.")
        page.get_by_role("button", name="Approve").click()
        page.wait_for_url(f"{url}{PREFIX}/review/{current}?done=voted", timeout=30_000)
        assert page.console_errors == []  # e.g. no CSP violations
        page.context.close()

    import httpx

    detail = httpx.get(f"{url}{PREFIX}/api/egress/requests/{current}", headers={"Authorization": "token t-rob"}).json()
    assert detail["status"] == "approved"
    assert {v["reviewer"] for v in detail["file_list"][0]["votes"]} == {"rita", "rudy"}
