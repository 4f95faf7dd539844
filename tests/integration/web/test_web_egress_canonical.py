"""The reviewer's page (and the researcher's preview) show each file exactly as it would leave:
its canonical form, every notebook cell with its metadata and every output, nothing rendered
that could run or hide, long files in parts that are all reachable."""

from __future__ import annotations

import base64
import html
import io
import json
import re

from fastapi.testclient import TestClient
from PIL import Image

from enclave.web.auth import SESSION_COOKIE
from tests.integration.web.world import PREFIX

API = PREFIX + "/api/egress"


def h(token: str) -> dict[str, str]:
    return {"Authorization": f"token {token}"}


def _png(colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (3, 2), colour).save(out, format="PNG")
    return out.getvalue()


def _in_review(client: TestClient, world, files: dict[str, bytes]) -> int:  # type: ignore[no-untyped-def]
    outbox = world.workspaces_dir / "asthma" / "outbox"
    for relpath, data in files.items():
        (outbox / relpath).parent.mkdir(parents=True, exist_ok=True)
        (outbox / relpath).write_bytes(data)
    rid = client.post(API + "/requests", headers=h("t-rob"), json={"project": "asthma"}).json()["id"]
    added = client.post(API + f"/requests/{rid}/files", headers=h("t-rob"),
                        json={"paths": list(files), "group": "g", "context": "c", "controls": "c"})
    assert added.status_code == 200, added.text
    done = client.post(API + f"/requests/{rid}/submit", headers=h("t-rob"), json={"exception": "checked by hand"})
    assert done.json()["status"] == "in_review", done.text
    return rid


def _content(page: str) -> str:
    found = re.search(r'<section class="panel review-content" aria-label="File content">(.*?)</section>', page, re.S)
    assert found is not None
    return found.group(1)


def _notebook() -> dict:
    return {"nbformat": 4, "nbformat_minor": 5,
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Kernel-On-Show"}, "hidden": "NOT-SHOWN-META"},
            "cells": [
                {"cell_type": "markdown", "metadata": {"tags": ["TAG-ON-SHOW"]},
                 "source": "# Heading-One\n\n<script>alert('md')</script>\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n[ref]: http://REF-DEF-ON-SHOW\n",
                 "attachments": {"x.png": {"image/png": base64.b64encode(_png((1, 2, 3))).decode()}}},
                {"cell_type": "code", "execution_count": 7, "metadata": {"jupyter": {"outputs_hidden": True}},
                 "source": "print('SRC-ON-SHOW')",
                 "outputs": [
                     {"output_type": "stream", "name": "stdout", "text": "STDOUT-ON-SHOW\n"},
                     {"output_type": "stream", "name": "stderr", "text": "STDERR-ON-SHOW\n"},
                     {"output_type": "execute_result", "execution_count": 7, "metadata": {},
                      "data": {"text/plain": "PLAIN-ON-SHOW",
                               "text/html": "<table><tr><td>HTML-ON-SHOW</td></tr></table><img src=x onerror=alert(1)>",
                               "application/x-rows": "VENDOR-NOT-SHOWN"}},
                     {"output_type": "display_data", "metadata": {},
                      "data": {"image/png": base64.b64encode(_png((200, 10, 10)) + b"AFTER-IEND").decode()}},
                     {"output_type": "error", "ename": "ValueError", "evalue": "EVALUE-ON-SHOW", "traceback": ["TB-ON-SHOW"]},
                 ]},
                {"cell_type": "raw", "metadata": {}, "source": "RAW-ON-SHOW"},
            ]}


def test_web_reviewer_page_shows_every_cell_and_output_of_the_canonical_notebook(client: TestClient, world) -> None:  # type: ignore[no-untyped-def]
    rid = _in_review(client, world, {"analysis.ipynb": json.dumps(_notebook()).encode()})
    client.cookies.set(SESSION_COOKIE, "t-rita")
    page = client.get(PREFIX + f"/review/{rid}/file", params={"path": "analysis.ipynb"})
    assert page.status_code == 200
    content = _content(page.text)  # the file itself (the findings beside it may quote what was left out)
    text = html.unescape(content)
    assert len(re.findall(r'<div class="nb-cell[ "]', content)) == 4  # the notebook's metadata + 3 cells
    for shown in ("Kernel-On-Show", "TAG-ON-SHOW", "SRC-ON-SHOW", "STDOUT-ON-SHOW", "STDERR-ON-SHOW", "PLAIN-ON-SHOW",
                  "HTML-ON-SHOW", "EVALUE-ON-SHOW", "TB-ON-SHOW", "RAW-ON-SHOW", "REF-DEF-ON-SHOW", "[7]"):
        assert shown in text, shown
    # Outside the policy's allowlists: left out of the canonical form, so neither shown nor released.
    for gone in ("NOT-SHOWN-META", "VENDOR-NOT-SHOWN", "attachments"):
        assert gone not in text, gone
    # Markdown rendered (heading, table) with raw HTML shown as text; HTML outputs as their source.
    assert "<h1>Heading-One</h1>" in page.text and "<td>1</td>" in page.text
    assert "<script>alert('md')</script>" not in page.text and "&lt;script&gt;alert(&#39;md&#39;)" in page.text
    assert "<img src=x onerror" not in page.text and "&lt;img src=x onerror=alert(1)&gt;" in page.text
    # The image output comes from its re-encoded pixels: nothing after its end chunk.
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page.text)
    assert len(images) == 1
    shown_png = base64.b64decode(images[0])
    assert shown_png.endswith(b"IEND\xaeB`\x82") and b"AFTER-IEND" not in shown_png
    assert Image.open(io.BytesIO(shown_png)).convert("RGB").getpixel((0, 0)) == (200, 10, 10)
    # The researcher's preview is the same canonical content.
    client.cookies.set(SESSION_COOKIE, "t-rob")
    preview = client.get(PREFIX + f"/egress/{rid}/file", params={"path": "analysis.ipynb"})
    assert preview.status_code == 200
    assert re.findall(r'src="data:image/png;base64,([^"]+)"', preview.text) == images
    assert _content(preview.text) == content
    request_page = client.get(PREFIX + f"/egress/{rid}")
    assert f"/egress/{rid}/file?path=analysis.ipynb" in request_page.text
    # Outsiders see nothing.
    client.cookies.set(SESSION_COOKIE, "t-eve")
    assert client.get(PREFIX + f"/egress/{rid}/file", params={"path": "analysis.ipynb"}).status_code == 403


def test_web_page_shows_text_as_released_and_long_tables_in_parts(client: TestClient, world) -> None:  # type: ignore[no-untyped-def]
    rows = "".join(f"r{i},{100 + i}\r\n" for i in range(1200))
    rid = _in_review(client, world, {"long.csv": b"\xef\xbb\xbfgroup,count\r\n" + rows.encode(),
                                     "notes.md": b"# Notes\r\n\r\n<b>bold</b> text\r\n"})
    client.cookies.set(SESSION_COOKIE, "t-rita")
    first = client.get(PREFIX + f"/review/{rid}/file", params={"path": "long.csv"})
    assert "Part 1 of 3" in first.text and ">group</th>" in first.text  # no BOM in the header
    seen = set()
    for part in range(3):
        page = client.get(PREFIX + f"/review/{rid}/file", params={"path": "long.csv", "part": part})
        assert page.status_code == 200
        seen |= set(re.findall(r"<td class=\"\">(r\d+)</td>", page.text))
    assert seen == {f"r{i}" for i in range(1200)}  # every row reachable
    assert client.get(PREFIX + f"/review/{rid}/file", params={"path": "long.csv", "part": 3}).status_code == 404
    notes = client.get(PREFIX + f"/review/{rid}/file", params={"path": "notes.md"})
    assert "<h1>Notes</h1>" in notes.text and "&lt;b&gt;bold&lt;/b&gt;" in notes.text and "<b>bold</b>" not in notes.text


def test_web_page_says_why_a_file_cannot_be_released(client: TestClient, world) -> None:  # type: ignore[no-untyped-def]
    rid = _in_review(client, world, {"broken.png": b"\x89PNG\r\n\x1a\n" + b"row,1\n" * 20})
    client.cookies.set(SESSION_COOKIE, "t-rita")
    page = client.get(PREFIX + f"/review/{rid}/file", params={"path": "broken.png"})
    assert page.status_code == 200
    assert "This file cannot be released" in page.text and "not a decodable PNG image" in page.text
    assert "data:image/png" not in page.text


def test_web_page_marks_what_a_reader_could_not_see(client: TestClient, world) -> None:  # type: ignore[no-untyped-def]
    # Zero-width and format characters, odd spaces, controls and whitespace at line or cell
    # ends can carry bits past a reviewer's eyes; each is shown as a visible mark instead.
    note = "total\u200b\u200c visits\u00a0120  \nmethod\u202e text\t\nbell\x07\n".encode()
    table = b"group,count\nnorth ,120\n  south,85\n"
    rid = _in_review(client, world, {"note.txt": note, "t.csv": table})
    client.cookies.set(SESSION_COOKIE, "t-rita")
    text = _content(client.get(PREFIX + f"/review/{rid}/file", params={"path": "note.txt"}).text)
    for code in ("200B", "200C", "00A0", "202E", "0007"):
        assert f"⟨U+{code}⟩" in text, code
    assert text.count('title="space at a line end"') == 2 and text.count('title="tab at a line end"') == 1
    assert "\u200b" not in text and "\u202e" not in text
    cells = _content(client.get(PREFIX + f"/review/{rid}/file", params={"path": "t.csv"}).text)
    assert 'north<span class="unseen" title="space at a line end">␠</span></td>' in cells
    assert '<span class="unseen" title="space at the start">␠␠</span>south</td>' in cells
