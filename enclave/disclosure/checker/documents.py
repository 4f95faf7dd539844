"""Rules for text-like outputs: plain text, markdown, JSON and Jupyter notebooks.

Tables inside them (markdown pipe tables, HTML tables, lists of JSON records) go through
the same table rules as CSV files; text is searched for identifiers, encoded blobs and
regression summaries with too few residual degrees of freedom.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

import polars as pl

from enclave.disclosure.checker.identifiers import find_identifiers, mask
from enclave.disclosure.checker.tables import _finding, check_cells, check_values
from enclave.disclosure.findings import Finding, evaluate
from enclave.disclosure.policy import DisclosurePolicy
from enclave.disclosure.verdict import Verdict

DOF_LINE = re.compile(r"Df Residuals:\s+(\d+)")
NUMBER_TOKEN = re.compile(r"^[+\-]?\d+$")


def _blob_pattern(policy: DisclosurePolicy) -> re.Pattern[str]:
    return re.compile(r"[A-Za-z0-9+/_\-]{%d,}={0,2}" % policy.checker.max_encoded_run)


def check_text(text: str, policy: DisclosurePolicy, where: str, *, tables: bool = True) -> list[Finding]:
    """Identifiers, encoded blobs, regression dof and (optionally) tables in ``text``."""
    findings: list[Finding] = []
    by_kind: dict[str, list[str]] = {}
    for kind, value in find_identifiers(text):
        line = text.count("\n", 0, text.find(value)) + 1
        by_kind.setdefault(kind, []).append(f"{where} line {line} ({mask(value)})")
    for kind, locations in by_kind.items():
        findings.append(_finding("direct_identifier", Verdict.FAIL, f"{len(locations)} {kind}(s) found; remove every direct identifier", locations))
    blobs = list(_blob_pattern(policy).finditer(text))
    if blobs:
        findings.append(_finding("encoded_blob", Verdict.FAIL,
                                 f"{len(blobs)} run(s) of {policy.checker.max_encoded_run}+ encoded characters (base64/hex) could hide data; remove them",
                                 [f"{where} line {text.count(chr(10), 0, m.start()) + 1}" for m in blobs]))
    dofs = [int(m.group(1)) for m in DOF_LINE.finditer(text)]
    if dofs:
        evaluation = evaluate(pl.DataFrame({"dof": dofs}), policy, ["dof"], [f"{where} model {i + 1}" for i in range(len(dofs))])
        findings += evaluation.findings
    if tables:
        for k, (header, rows) in enumerate(markdown_tables(text)):
            findings += check_rows(header, rows, policy, f"{where} table {k + 1}")
        findings += _text_tables(text, policy, where)
    return findings


def check_rows(header: list[str], rows: list[list[str]], policy: DisclosurePolicy, where: str) -> list[Finding]:
    """Apply the table rules to a small table given as lists of strings."""
    names = _unique_names(header)
    width = len(names)
    rows = [(r + [""] * width)[:width] for r in rows]
    frame = pl.DataFrame({name: [r[i] for r in rows] for i, name in enumerate(names)}, schema={n: pl.String for n in names})

    def locate(row: int, column: str) -> str:
        return f"{where} row {row + 1}, column {column!r}"

    return check_cells(frame, policy, locate) + check_values(frame, policy, locate)


def _unique_names(header: list[str]) -> list[str]:
    names, seen = [], {}
    for i, name in enumerate(header):
        name = name.strip() or f"column {i + 1}"
        if name in seen:
            seen[name] += 1
            name = f"{name} ({seen[name]})"
        else:
            seen[name] = 1
        names.append(name)
    return names


def markdown_tables(text: str) -> list[tuple[list[str], list[list[str]]]]:
    """Pipe tables: a header row, a |---| separator, then rows."""
    tables = []
    lines = text.splitlines()
    i = 0
    while i < len(lines) - 1:
        if "|" in lines[i] and re.match(r"^\s*\|?\s*:?-{3,}", lines[i + 1]):
            header = _pipe_cells(lines[i])
            rows = []
            j = i + 2
            while j < len(lines) and "|" in lines[j]:
                rows.append(_pipe_cells(lines[j]))
                j += 1
            tables.append((header, rows))
            i = j
        else:
            i += 1
    return tables


def _pipe_cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _text_tables(text: str, policy: DisclosurePolicy, where: str) -> list[Finding]:
    """Whitespace-aligned tables (a printed DataFrame): small whole numbers need a reviewer.

    Printed tables cannot be parsed reliably, so this never fails an output, only sends it
    to review.
    """
    locations = []
    block: list[tuple[int, list[str]]] = []
    for number, line in enumerate(text.splitlines() + [""], start=1):
        tokens = line.split()
        if len(tokens) >= 2 and not line.lstrip().startswith("|"):
            block.append((number, tokens))
            continue
        if len(block) >= 3:
            for line_no, tokens in block[1:]:
                for token in tokens[1:]:
                    if NUMBER_TOKEN.match(token) and (0 < int(token) < policy.threshold or (int(token) == 0 and policy.zeros_disclosive)):
                        locations.append(f"{where} line {line_no} ({token})")
        block = []
    if not locations:
        return []
    return [_finding("threshold", Verdict.REVIEW,
                     f"{len(locations)} small number(s) in a printed table; a reviewer must check them (use enclave.safe for checked tables)",
                     locations)]


class _HTMLTables(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: list[list[list[str]]] = []
        self.text: list[str] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._row is not None and self._cell is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None and self.tables:
            self.tables[-1].append(self._row)
            self._row = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def check_html(html: str, policy: DisclosurePolicy, where: str) -> list[Finding]:
    parser = _HTMLTables()
    parser.feed(html)
    findings = check_text("\n".join(parser.text), policy, where, tables=False)
    for k, table in enumerate(t for t in parser.tables if len(t) >= 2):
        header, body = _html_header(table)
        findings += check_rows(header, body, policy, f"{where} table {k + 1}")
    return findings


def _html_header(table: list[list[str]]) -> tuple[list[str], list[list[str]]]:
    """pandas writes the column labels and the index name on two header rows; merge them."""
    width = max(len(r) for r in table)
    header = table[0]
    body = table[1:]
    if body and all(not c for c in body[0][1:]) and body[0] and body[0][0]:
        header = [body[0][0]] + header[1:]
        body = body[1:]
    return (header + [""] * width)[:width], body


def check_json_value(value: Any, policy: DisclosurePolicy, where: str) -> list[Finding]:
    """Records (a list of objects) are tables; every string is text."""
    findings: list[Finding] = []
    strings: list[str] = []
    for path, item in _walk(value, "$"):
        if isinstance(item, list) and item and all(isinstance(r, dict) for r in item):
            keys = list(dict.fromkeys(k for r in item for k in r))
            rows = [["" if r.get(k) is None else str(r.get(k)) for k in keys] for r in item]
            findings += check_rows(keys, rows, policy, f"{where} {path}")
        elif isinstance(item, str):
            strings.append(item)
        elif isinstance(item, dict):
            strings.extend(str(k) for k in item)
    if strings:
        findings += check_text("\n".join(strings), policy, where, tables=False)
    return findings


def _walk(value: Any, path: str):
    yield path, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, f"{path}.{key}")
    elif isinstance(value, list) and not (value and all(isinstance(r, dict) for r in value)):
        for i, item in enumerate(value):
            yield from _walk(item, f"{path}[{i}]")


def check_notebook(notebook: dict, policy: DisclosurePolicy) -> list[Finding]:
    """Every output of every cell (and the sources) through the text, HTML and JSON rules."""
    findings: list[Finding] = []
    images: list[str] = []
    unknown: list[str] = []
    cells = notebook.get("cells") if isinstance(notebook.get("cells"), list) else []
    for c, cell in enumerate(cells, start=1):
        if not isinstance(cell, dict):
            continue
        where = f"cell {c}"
        findings += check_text(_joined(cell.get("source", "")), policy, f"{where} source", tables=False)
        for name in (cell.get("attachments") or {}):
            images.append(f"{where} attachment {name}")
        for o, output in enumerate(cell.get("outputs") or [], start=1):
            at = f"{where} output {o}"
            kind = output.get("output_type") if isinstance(output, dict) else None
            if kind == "stream":
                findings += check_text(_joined(output.get("text", "")), policy, f"{at} ({output.get('name', 'stream')})")
            elif kind == "error":
                text = "\n".join([str(output.get("ename", "")), str(output.get("evalue", ""))] + [str(t) for t in output.get("traceback", [])])
                findings += check_text(_strip_ansi(text), policy, f"{at} (error)")
            elif kind in ("execute_result", "display_data"):
                for mime, content in (output.get("data") or {}).items():
                    if mime.startswith("image/"):
                        images.append(f"{at} ({mime})")
                    elif mime == "text/html":
                        findings += check_html(_joined(content), policy, at)
                    elif mime == "text/plain" or mime == "text/markdown" or mime == "text/latex":
                        findings += check_text(_joined(content), policy, at)
                    elif mime.endswith("json"):
                        findings += check_json_value(content, policy, at)
                    else:
                        unknown.append(f"{at} ({mime})")
            else:
                unknown.append(f"{at} ({kind})")
    if images:
        findings.append(_finding("image", Verdict.REVIEW, f"{len(images)} embedded image(s); a reviewer needs the table behind each", images))
    if unknown:
        findings.append(_finding("unknown_output", Verdict.REVIEW, f"{len(unknown)} output(s) of a kind the checker cannot read; a reviewer must look", unknown))
    return findings


def _joined(value: Any) -> str:
    if isinstance(value, list):
        return "".join(str(v) for v in value)
    return str(value)


def _strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)

