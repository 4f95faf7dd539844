"""In Chromium: the reviewer's page shows a notebook's canonical form under the app's CSP, and
nothing in the file runs (an HTML output's handlers, a script in markdown), while image
outputs from their re-encoded pixels are drawn."""

from __future__ import annotations

import base64
import io
import json
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from enclave.web.app import create_app
from enclave.web.auth import SESSION_COOKIE
from tests.integration.web.world import PREFIX, authenticator, copy_world

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--no-first-run"]
API = PREFIX + "/api/egress"


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (40, 20), (30, 120, 200)).save(out, format="PNG")
    return out.getvalue() + b"hidden,rows\n1,2\n"


NOTEBOOK = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
    {"cell_type": "markdown", "metadata": {},
     "source": "# Shown\n\n<script>document.title='ran-md'</script>\n\n| a | b |\n|---|---|\n| 1 | 2 |\n"},
    {"cell_type": "code", "execution_count": 1, "metadata": {}, "source": "plot()", "outputs": [
        {"output_type": "display_data", "metadata": {},
         "data": {"text/html": "<img src=x onerror=\"document.title='ran-html'\"><script>alert(1)</script>",
                  "image/png": base64.b64encode(_png()).decode(), "text/plain": "<Figure>"}}]},
]}


@pytest.fixture
def reviewer_page_url(world_template, tmp_path: Path) -> Iterator[str]:  # type: ignore[no-untyped-def]
    import uvicorn

    settings = copy_world(world_template, tmp_path / "home")
    (settings.workspaces_dir / "asthma" / "outbox" / "analysis.ipynb").write_text(json.dumps(NOTEBOOK))
    client = TestClient(create_app(settings, authenticator()))
    auth = {"Authorization": "token t-rob"}
    rid = client.post(API + "/requests", headers=auth, json={"project": "asthma"}).json()["id"]
    client.post(API + f"/requests/{rid}/files", headers=auth,
                json={"paths": ["analysis.ipynb"], "group": "g", "context": "c", "controls": "c"})
    assert client.post(API + f"/requests/{rid}/submit", headers=auth,
                       json={"exception": "checked"}).json()["status"] == "in_review"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(settings, authenticator()), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the web app did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}{PREFIX}/review/{rid}/file?path=analysis.ipynb"
    server.should_exit = True
    thread.join(timeout=10)


def test_web_reviewer_page_in_chromium_runs_nothing_from_the_file_and_draws_its_images(reviewer_page_url: str) -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            context = browser.new_context()
            context.add_cookies([{"name": SESSION_COOKIE, "value": "t-rita", "url": reviewer_page_url}])
            page = context.new_page()
            dialogs: list[str] = []
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(reviewer_page_url)
            page.wait_for_load_state("load")
            assert page.get_by_role("heading", name="Shown").is_visible()
            assert page.locator(".nb-md table td", has_text="2").is_visible()  # markdown table rendered
            # The HTML output and the script in markdown are text on the page, not code.
            assert page.get_by_text("onerror=\"document.title='ran-html'\"", exact=False).is_visible()
            assert page.locator(".nb-md p", has_text="<script>document.title='ran-md'</script>").is_visible()
            page.wait_for_timeout(300)
            assert "ran-" not in page.title() and dialogs == []
            image = page.locator("img.nb-img")
            assert image.count() == 1
            assert image.evaluate("img => img.complete && img.naturalWidth") == 40  # drawn under the CSP
        finally:
            browser.close()
