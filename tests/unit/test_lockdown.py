"""enclave.hub.lockdown without a server: which URLs its handlers shadow."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("tornado")

from enclave.hub.lockdown import (  # noqa: E402
    TERMINAL_REFUSAL,
    RefusedHandler,
    TerminalRefusedHandler,
    refused_handlers,
)


def _refused(base_url: str, path: str) -> bool:
    # tornado anchors handler patterns at both ends.
    return any(re.fullmatch(pattern, path) for pattern, _ in refused_handlers(base_url))


@pytest.mark.parametrize("base_url", ["/", "/user/alice/project-x/", "/user/alice/project-x"])
@pytest.mark.parametrize(
    "path, refused",
    [
        ("files/data.csv", True),
        ("files/outbox/table.csv", True),
        ("files", True),
        ("view/report.html", True),
        ("nbconvert/html/analysis.ipynb", True),
        ("nbconvert/html", True),
        ("api/contents/data.csv", False),
        ("api/nbconvert", False),
        ("lab", False),
        ("lab/tree/files/x", False),
        ("filesystem", False),
    ],
)
def test_lockdown_patterns_cover_download_endpoints_only(base_url: str, path: str, refused: bool):
    prefix = "/" + base_url.strip("/") + "/" if base_url.strip("/") else "/"
    assert _refused(base_url, prefix + path) is refused
    assert all(handler is RefusedHandler for _, handler in refused_handlers(base_url))


@pytest.mark.parametrize(
    "path, refused_without_terminals",
    [
        ("terminals/websocket/1", True),
        ("terminals", True),
        ("api/terminals", True),
        ("api/terminals/1", True),
        ("api/contents/terminals.txt", False),
        ("lab", False),
    ],
)
def test_lockdown_refuses_terminals_only_at_a_tier_without_them(path: str, refused_without_terminals: bool):
    base = "/user/alice/project-x/"
    without = [p for p, h in refused_handlers(base, terminals=False) if h is TerminalRefusedHandler]
    assert any(re.fullmatch(p, base + path) for p in without) is refused_without_terminals
    assert not any(h is TerminalRefusedHandler for _, h in refused_handlers(base, terminals=True))
    assert TerminalRefusedHandler.reason == TERMINAL_REFUSAL
