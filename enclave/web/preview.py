"""One file of an egress request shown as it would leave: its canonical form, in full.

Reviewers and the project's members see the same page, built from the canonical bytes in
the quarantine (``enclave.egress.canonical``), never from what was submitted: every table
row, every notebook cell with its source, metadata and every output, images from their
re-encoded pixels. Long files come in parts, each reachable, so nothing that leaves is out
of sight. Markdown is rendered with raw HTML disabled and shown beside its source (a
rendering hides reference definitions); HTML outputs are shown as their source.
Characters a reader cannot see (controls, zero-width and other format characters, unusual
spaces, whitespace at the end of a line or a cell) are shown as visible marks, so they
cannot carry data past the reviewer's eyes.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import re
from dataclasses import dataclass, field
from typing import Any

from markdown_it import MarkdownIt
from markupsafe import Markup, escape
from sqlalchemy.orm import Session

from enclave.db.models import User
from enclave.egress.canonical import kind_of, problem_of
from enclave.egress.policy import EgressEnv
from enclave.egress.quarantine import normalise_relpath, read_object
from enclave.egress.service import view_request
from enclave.errors import InvalidInput, NotFound

ROWS_PER_PART = 500
CHARS_PER_PART = 200_000
IMAGE_MIME = {"png": "image/png", "jpeg": "image/jpeg"}
_CELL = re.compile(r"line (\d+), column '((?:[^'\\]|\\.)*)'")
_COLUMN = re.compile(r"^column '((?:[^'\\]|\\.)*)'$")


# Anything but printable ASCII is looked at (a printable letter such as é is kept as it is).
_SUSPECT = re.compile(r"(?P<end>[ \t]+)(?=\n|$)|[^\x20-\x7e\n]")


def _mark(found: re.Match[str]) -> str:
    text = found.group(0)
    if found.group("end") is None and (text == "\t" or (text.isprintable() and not text.isspace())):
        return text
    if found.group("end") is not None:  # whitespace at the end of a line
        return "".join('<span class="unseen" title="space at a line end">␠</span>' if c == " "
                       else '<span class="unseen" title="tab at a line end">⇥</span>' for c in text)
    return f'<span class="unseen" title="an invisible character">⟨U+{ord(text):04X}⟩</span>'


def visible(text: Any, edges: bool = False) -> Markup:
    """``text`` escaped for HTML, with every character a reader could not see shown as a mark;
    ``edges`` also marks spaces at the start (as in a table cell)."""
    text = "" if text is None else str(text)
    lead = len(text) - len(text.lstrip(" \t")) if edges else 0
    head = "".join("␠" if c == " " else "⇥" for c in text[:lead])
    body = _SUSPECT.sub(_mark, str(escape(text[lead:])))
    return Markup((f'<span class="unseen" title="space at the start">{head}</span>' if head else "") + body)


def markdown_html(text: str) -> str:
    """Markdown rendered without raw HTML (shown as text) and without images (shown as links)."""
    return MarkdownIt("commonmark", {"html": False}).enable("table").disable("image").render(text)


@dataclass
class FileView:
    """One file of a request as the review and request pages show it."""

    path: str
    kind: str  # table | notebook | image | text | markdown | refused | pending
    findings: list[dict[str, Any]]
    check_status: str | None
    submitted_sha256: str | None = None
    canonical_sha256: str | None = None
    canonical_size: int | None = None
    problem: str | None = None
    part: int = 0
    parts: int = 1
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    first_line: int = 2  # the file line of rows[0]
    flagged: set[tuple[int, str]] = field(default_factory=set)  # (file line, column)
    flagged_columns: set[str] = field(default_factory=set)
    cells: list[dict[str, Any]] = field(default_factory=list)
    notebook_metadata: str = ""
    flagged_notebook_cells: set[int] = field(default_factory=set)
    image_data: str | None = None
    text: str | None = None
    html: str | None = None


def file_view(session: Session, actor: User, env: EgressEnv, request_id: int, relpath: str, part: int = 0) -> FileView:
    """A file of a request in its canonical form, for its reviewers and its project's members."""
    request = view_request(session, actor, request_id)
    relpath = normalise_relpath(relpath)
    file = next((f for f in request.files if f.relpath == relpath), None)
    if file is None:
        raise NotFound(f"egress request {request.id} has no file {relpath}")
    if part < 0:
        raise InvalidInput("part must be 0 or more")
    view = FileView(path=relpath, kind="pending", findings=list((file.check_json or {}).get("findings", [])),
                    check_status=file.check_status, submitted_sha256=file.sha256,
                    canonical_sha256=file.canonical_sha256, canonical_size=file.canonical_size, part=part)
    if not file.sha256:
        return view  # a draft: nothing is quarantined yet
    if not file.canonical_sha256:
        view.kind = "refused"
        view.problem = problem_of(file.check_json) or "it was submitted before releases were put in canonical form; it must be resubmitted"
        return view
    data = read_object(env.settings, file.canonical_sha256).read_bytes()
    kind = kind_of(relpath, data)
    if kind in IMAGE_MIME:
        view.kind = "image"
        view.image_data = f"data:{IMAGE_MIME[kind]};base64,{base64.b64encode(data).decode()}"
    elif kind == "ipynb":
        _notebook(view, json.loads(data.decode("utf-8")))
    elif kind in ("csv", "tsv"):
        _table(view, data.decode("utf-8"), "\t" if kind == "tsv" else ",")
    else:
        _text(view, data.decode("utf-8"), markdown=kind == "md")
    if view.part >= view.parts:
        raise NotFound(f"{relpath} has {view.parts} part(s): choose a part from 0 to {view.parts - 1}")
    return view


def _table(view: FileView, text: str, delimiter: str) -> None:
    view.kind = "table"
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    view.header, body = (rows[0], rows[1:]) if rows else ([], [])
    view.parts = max(1, -(-len(body) // ROWS_PER_PART))
    start = view.part * ROWS_PER_PART
    view.rows = body[start:start + ROWS_PER_PART]
    view.first_line = start + 2
    for finding in view.findings:
        if finding.get("status") == "pass":
            continue
        for location in finding.get("locations", []):
            cell = _CELL.search(location)
            if cell:
                view.flagged.add((int(cell.group(1)), cell.group(2)))
            elif column := _COLUMN.match(location):
                view.flagged_columns.add(column.group(1))


def _text(view: FileView, text: str, markdown: bool) -> None:
    view.kind = "markdown" if markdown else "text"
    view.parts = max(1, -(-len(text) // CHARS_PER_PART))
    view.text = text[view.part * CHARS_PER_PART:(view.part + 1) * CHARS_PER_PART]
    if markdown and view.parts == 1:
        view.html = markdown_html(text)


def _joined(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def _output(out: dict[str, Any]) -> list[dict[str, Any]]:
    """Every representation in an output, each as shown: the page hides none of them."""
    kind = out.get("output_type")
    if kind == "stream":
        return [{"label": out.get("name", "stream"), "text": _joined(out.get("text", ""))}]
    if kind == "error":
        lines = [f"{out.get('ename', '')}: {out.get('evalue', '')}", *out.get("traceback", [])]
        return [{"label": "error", "text": "\n".join(lines)}]
    shown = []
    for mime, value in sorted(out.get("data", {}).items()):
        if mime in ("image/png", "image/jpeg"):
            shown.append({"label": mime, "image": f"data:{mime};base64,{_joined(value)}"})
        elif mime == "text/markdown":
            shown.append({"label": mime, "html": markdown_html(_joined(value)), "text": _joined(value)})
        elif mime == "image/svg+xml":
            svg = _joined(value)
            shown.append({"label": mime, "image": "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode(),
                          "text": svg})
        elif mime == "application/json" or mime.endswith("+json"):
            shown.append({"label": mime, "text": json.dumps(value, indent=1, ensure_ascii=False)})
        else:  # text/plain, text/html (as its source), and any other allowed text type
            shown.append({"label": mime if mime != "text/plain" else "", "text": _joined(value)})
    return shown


def _notebook(view: FileView, nb: dict[str, Any]) -> None:
    view.kind = "notebook"
    if nb.get("metadata"):
        view.notebook_metadata = json.dumps(nb["metadata"], indent=1, ensure_ascii=False, sort_keys=True)
    for index, cell in enumerate(nb.get("cells", [])):
        source = _joined(cell.get("source", ""))
        view.cells.append({
            "index": index, "type": cell.get("cell_type", "code"), "source": source,
            "html": markdown_html(source) if cell.get("cell_type") == "markdown" else None,
            "metadata": json.dumps(cell["metadata"], indent=1, ensure_ascii=False, sort_keys=True) if cell.get("metadata") else "",
            "execution_count": cell.get("execution_count"),
            "outputs": [_output(out) for out in cell.get("outputs", [])],
        })
    for finding in view.findings:
        if finding.get("status") == "pass":
            continue
        for location in finding.get("locations", []):
            for match in re.finditer(r"cell (\d+)", location):
                view.flagged_notebook_cells.add(int(match.group(1)) - 1)  # the checker counts from 1
