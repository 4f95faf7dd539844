"""What a researcher reads in the browser (the example notebooks, the job and console
pages) never tells them to run a command: the console does everything."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
TEMPLATES = REPO / "enclave" / "web" / "templates"
# "enclave egress ...", "enclave --as ...", "papermill ...", "-p name=value" and the like.
CLI = re.compile(r"\benclave\s+(--as|egress|job|project|dataset|grant|user|demo|hub|audit)\b|\bpapermill\s+-|(^|\s)-p\s+\w+=")

PAGES = [*sorted((TEMPLATES / "jobs").glob("*.html")),
         *(TEMPLATES / "researcher" / name for name in ("projects.html", "project.html", "_server.html",
                                                        "outbox_file.html"))]


@pytest.mark.parametrize("notebook", sorted((REPO / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_no_cli_example_notebooks_point_at_the_console(notebook: Path):
    cells = json.loads(notebook.read_text())["cells"]
    for index, cell in enumerate(cells, start=1):
        text = "".join(cell["source"])
        assert not CLI.search(text), f"{notebook.name} cell {index} gives a command: {CLI.search(text).group(0)!r}"
    last_words = "".join(cells[-1]["source"]) if notebook.name == "quickstart.ipynb" else ""
    assert notebook.name != "quickstart.ipynb" or "enclave console" in last_words


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_no_cli_console_pages(page: Path):
    found = CLI.search(page.read_text())
    assert found is None, f"{page.name} gives a command: {found.group(0)!r}"
