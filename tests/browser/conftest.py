"""The web app served by uvicorn on a loopback port, and Debian's Chromium driven by
Playwright (never a downloaded browser)."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from enclave.web.app import create_app
from tests.integration.web.world import authenticator, build_world
from tests.ports import free_port

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--no-first-run"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import uvicorn

    settings = build_world(tmp_path_factory.mktemp("browser") / "home")
    port = free_port()
    config = uvicorn.Config(create_app(settings, authenticator()), host="127.0.0.1", port=port, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the web app did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield b
        b.close()


@pytest.fixture
def as_user(browser, server):  # type: ignore[no-untyped-def]
    """A fresh browser context signed in as the owner of a test token (None: signed out)."""
    contexts = []

    def make(token: str | None):  # type: ignore[no-untyped-def]
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        if token:
            context.add_cookies([{"name": "enclave-session", "value": token, "url": server}])
        contexts.append(context)
        page = context.new_page()
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        return page

    errors: list[str] = []
    make.console_errors = errors  # type: ignore[attr-defined]
    yield make
    for context in contexts:
        context.close()
