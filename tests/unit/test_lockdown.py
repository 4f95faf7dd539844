"""enclave.hub.lockdown without a server: which URLs its handlers shadow."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("tornado")

from enclave.hub.lockdown import RefusedHandler, refused_handlers  # noqa: E402


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
