"""Taking a text apart: every table inside it, whatever its shape, and the text itself.

A table may sit in a text as CSV/TSV/semicolon/pipe-delimited lines, a markdown pipe table,
an HTML table (also inside markdown, or an SVG's text), JSON (records, columns, lists of
lists nested anywhere, bare arrays of numbers), a Python literal in code, or a printed,
whitespace-aligned frame. Each is returned as a table part so that the same checks run
on it as on a CSV file. What cannot be read as anything is still checked as text.
"""

from __future__ import annotations

import ast
import csv
import json
import re
import urllib.parse
from html.parser import HTMLParser
from typing import Any

import yaml

from enclave.disclosure.checker.registry import Part, PartKind
from enclave.disclosure.checker.tables import frame_of
from enclave.disclosure.findings import Finding, excerpt
from enclave.disclosure.policy import DisclosurePolicy
from enclave.disclosure.verdict import Verdict

MAX_DEPTH = 4
MAX_FRAGMENTS = 5000
MAX_STRUCTURED = 20 * 1024 * 1024
# Lines of a YAML list of records ("- key: value") or nested mappings ("key:" then indented).
_YAMLISH = re.compile(r"^\s*- +[^\s:][^:\n]*: |^[^\s#][^:\n]*:\s*\n\s+\S", re.MULTILINE)
_OPEN = re.compile(r"[\[{]")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")
_HTML = re.compile(r"<\s*(?:table|svg|html|body|div|tr|td|text|pre|span|p|img|g|desc|metadata|title|!--)\b", re.IGNORECASE)
_MD_RULE = re.compile(r"^\s*\|?\s*:?-{3,}")
_NUMPY = re.compile(r"\[\s*(?:[+\-]?\d+(?:\.\d*)?(?:[eE][+\-]?\d+)?[\s,]+){4,}[+\-]?\d+(?:\.\d*)?(?:[eE][+\-]?\d+)?\s*\]"
                    # or 20 and more numbers in a row on one line, bracketed or not
                    r"|(?:[+\-]?\d+(?:\.\d+)?[ \t]*[,;]?[ \t]+){19,}[+\-]?\d+(?:\.\d+)?")


class Parts:
    """Collects the parts of one file, and findings about its structure."""

    def __init__(self, policy: DisclosurePolicy) -> None:
        self.policy = policy
        self.parts: list[Part] = []
        self.findings: list[Finding] = []

    def table(self, header: list[Any], rows: list[list[Any]], where: str, origin: str) -> None:
        if not rows and not header:
            return
        frame = frame_of([str(h) for h in header], [[_scalar(v) for v in r] for r in rows])
        part = Part(PartKind.TABLE, where, frame=frame, origin=origin,
                    locate=lambda row, column, w=where: f"{w} row {row + 1}, column {column!r}")
        if origin == "json":  # the key a JSON table sits under says what its numbers are ("ci_95")
            part.cache["context_words"] = set(re.findall(r"[a-z]+|\d+", where.rsplit(".", 1)[-1].lower()))
        self.parts.append(part)

    def add_text(self, text: str, where: str, depth: int = 0) -> None:
        """The text itself and every table found in it."""
        if not text.strip():
            return
        if depth > MAX_DEPTH:
            self.parts.append(Part(PartKind.TEXT, where, text=text))
            return
        value = _structured(text)
        if value is not None:
            self.add_json(value, where, depth + 1)
            if isinstance(value, (list, dict)) and text.lstrip()[:1] in "[{(":
                return  # the whole text was JSON or a literal: its strings are checked as text
        decoded = _unescape(text)
        if decoded is not None:  # a URL's percent-encoded query, \u or \x escapes: what they spell is checked too
            self.add_text(decoded, f"{where} (decoded)", depth + 1)
        if _HTML.search(text) or text.lstrip().startswith("<"):
            text = self._html(text, where, depth)
        self.parts.append(Part(PartKind.TEXT, where, text=text))
        lines = text.splitlines()
        used = self._markdown(lines, where)
        used |= self._delimited(lines, where, used)
        self._fixed_width(lines, where, used)
        self._fragments(text, where, depth)

    # -- HTML and SVG --------------------------------------------------------------------

    def _html(self, text: str, where: str, depth: int) -> str:
        parser = _HTMLTables()
        try:
            parser.feed(text)
            parser.close()
        except Exception:  # noqa: BLE001 - HTMLParser is lenient; anything else is unreadable
            self.findings.append(Finding("unreadable", Verdict.FAIL, f"{where}: HTML that cannot be read; export it as a table or text",
                                         locations=[f"{where}: {excerpt(text)}"]))
            return text
        for k, table in enumerate(t for t in parser.tables if t):
            header, body = _html_header(table)
            self.table(header, body, f"{where} HTML table {k + 1}", "html")
        if parser.svg:
            self.findings.append(Finding("image", Verdict.REVIEW,
                                         f"{where}: an SVG drawing; its text and numbers are checked, but a reviewer must look at the picture",
                                         locations=[f"{where}: {excerpt(' '.join(parser.text), 80)}"]))
        for value in parser.attributes:
            if len(value) > 40 or "\n" in value:
                self.add_text(value, f"{where} (attribute)", depth + 1)
        return "\n".join(parser.text + parser.attributes)

    # -- markdown pipe tables -------------------------------------------------------------

    def _markdown(self, lines: list[str], where: str) -> set[int]:
        used: set[int] = set()
        i = 0
        while i < len(lines) - 1:
            if "|" in lines[i] and _MD_RULE.match(lines[i + 1]) and "|" in lines[i + 1] + lines[i]:
                rows, j = [], i + 2
                while j < len(lines) and "|" in lines[j]:
                    rows.append(_pipe_cells(lines[j]))
                    j += 1
                self.table(_pipe_cells(lines[i]), rows, f"{where} table at line {i + 1}", "markdown")
                used.update(range(i, j))
                i = j
            else:
                i += 1
        return used

    # -- delimited blocks (CSV/TSV/semicolon/pipe anywhere in a text) --------------------

    def _delimited(self, lines: list[str], where: str, used: set[int]) -> set[int]:
        taken: set[int] = set()
        for delimiter in ("\t", ",", ";", "|", "&"):
            # a comma inside a number (1,000) separates nothing
            counts = [(_THOUSANDS.sub("", line) if delimiter == "," else line).count(delimiter)
                      if i not in used and i not in taken else -1 for i, line in enumerate(lines)]
            i = 0
            while i < len(lines):
                k = counts[i]
                if k <= 0:
                    i += 1
                    continue
                j = i
                while j < len(lines) and counts[j] == k:
                    j += 1
                if j - i >= (3 if k == 1 else 2):
                    block = lines[i:j]
                    if delimiter == "|":
                        rows = [_pipe_cells(b) for b in block]
                    elif delimiter == "&":  # LaTeX tabular rows end in \\ (and maybe \hline)
                        rows = [[c.strip() for c in re.sub(r"\\\\\s*(\\hline)?\s*$", "", b).split("&")] for b in block]
                    else:
                        rows = list(csv.reader(block, delimiter=delimiter))
                    if _cell_like(rows):
                        self.table(rows[0], rows[1:], f"{where} table at line {i + 1}", "delimited")
                        taken.update(range(i, j))
                i = j
        return taken

    # -- printed, whitespace-aligned tables ----------------------------------------------

    def _fixed_width(self, lines: list[str], where: str, used: set[int]) -> None:
        block: list[tuple[int, list[str]]] = []
        for number, line in enumerate(lines + [""]):
            tokens = line.split()
            if number not in used and len(tokens) >= 2 and not set(line.strip()) <= set("-=+|: "):
                block.append((number, tokens))
                continue
            if len(block) >= 3:
                self._printed(block, where)
            block = []

    def _printed(self, block: list[tuple[int, list[str]]], where: str) -> None:
        if sum(any(t.endswith(":") for t in tokens) for _, tokens in block) * 2 >= len(block):
            return  # "key: value" listings (a model summary's header) are not tables
        tokens = [t for _, line in block[1:] for t in line]
        if sum(any(c.isdigit() for c in t) for t in tokens) * 4 < len(tokens):
            return  # words, not values: prose that happens to line up
        widths = [len(tokens) for _, tokens in block[1:]]
        width = max(set(widths), key=widths.count)
        rows = [tokens for _, tokens in block[1:] if len(tokens) == width]
        header = block[0][1]
        if len(header) == width - 1:
            header = [""] + header
        elif len(header) != width:
            rows = [tokens for _, tokens in block if len(tokens) == width]
            header = [f"column {i + 1}" for i in range(width)]
        if len(rows) >= 2:
            self.table(header, rows, f"{where} printed table at line {block[0][0] + 1}", "fixed-width")

    # -- JSON and literals inside a text -------------------------------------------------

    def _fragments(self, text: str, where: str, depth: int) -> None:
        decoder = json.JSONDecoder()
        position, tries = 0, 0
        records: list[dict] = []
        while tries < MAX_FRAGMENTS:
            match = _OPEN.search(text, position)
            if match is None:
                break
            tries += 1
            try:
                value, end = decoder.raw_decode(text, match.start())
            except (json.JSONDecodeError, RecursionError):
                position = match.start() + 1
                continue
            if isinstance(value, dict) and value and all(not isinstance(v, (dict, list)) for v in value.values()):
                records.append(value)  # one record of many (JSON Lines): together they are a table
            elif isinstance(value, (list, dict)) and len(value) >= 2:
                self.add_json(value, f"{where} line {text.count(chr(10), 0, match.start()) + 1}", depth + 1, strings=False)
            position = end
        if len(records) >= 2:
            self.add_json(records, f"{where} (records)", depth + 1, strings=False)
        elif records:
            self.add_json(records[0], where, depth + 1, strings=False)
        for match in _NUMPY.finditer(text):
            numbers = re.findall(r"[+\-]?\d+(?:\.\d*)?(?:[eE][+\-]?\d+)?", match.group(0))
            self._bare(numbers, f"{where} line {text.count(chr(10), 0, match.start()) + 1}")

    def add_python(self, source: str, where: str) -> None:
        """Literal lists, tuples, sets and dicts in code, as JSON would be."""
        code = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())
        try:
            tree = ast.parse(code)
        except (SyntaxError, ValueError, RecursionError):
            return
        seen: set[int] = set()
        for node in ast.walk(tree):
            if id(node) in seen or not isinstance(node, (ast.List, ast.Tuple, ast.Set, ast.Dict)):
                continue
            try:
                value = ast.literal_eval(node)
            except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
                continue
            seen.update(id(n) for n in ast.walk(node))
            if isinstance(value, (set, frozenset)):
                value = sorted(value, key=str)
            if isinstance(value, (list, tuple, dict)) and len(value) >= 2:
                self.add_json(_jsonable(value), f"{where} line {node.lineno}", 1, strings=False)

    def add_json(self, value: Any, where: str, depth: int = 0, *, strings: bool = True) -> None:
        """Tables in a JSON value (records, columns, lists of lists, bare arrays) and its text."""
        texts: list[str] = []
        self._walk(value, where, "$", depth, texts)
        if strings and texts:
            self.parts.append(Part(PartKind.TEXT, where, text="\n".join(texts)))

    def _walk(self, value: Any, where: str, path: str, depth: int, texts: list[str]) -> None:
        at = f"{where} {path}"
        if isinstance(value, str):
            if "\n" in value or len(value) > 200:
                self.add_text(value, at, depth + 1)
            else:
                texts.append(value)
            return
        if isinstance(value, dict):
            texts.extend(str(k) for k in value)
            if self._dict_table(value, at):
                for key, item in value.items():
                    self._strings_only(item, at, depth, texts)
                return
            for key, item in value.items():
                self._walk(item, where, f"{path}.{key}", depth, texts)
            return
        if isinstance(value, list):
            if value and all(isinstance(r, dict) for r in value):
                keys = list(dict.fromkeys(str(k) for r in value for k in r))
                self.table(keys, [[r.get(k) for k in keys] for r in value], at, "json")
                for r in value:
                    for item in r.values():
                        self._strings_only(item, at, depth, texts)
                return
            if value and all(isinstance(r, list) for r in value) and all(not isinstance(c, (dict, list)) for r in value for c in r):
                width = max(len(r) for r in value)
                first = value[0]
                if len(value) >= 2 and all(isinstance(c, str) for c in first) and not all(isinstance(c, str) for r in value[1:] for c in r):
                    self.table(first, value[1:], at, "json")
                else:
                    self.table([f"column {i + 1}" for i in range(width)], value, at, "headerless")
                return
            if value and all(_is_number(v) for v in value):
                self._bare([str(v) for v in value], at)
                return
            if len(value) >= self.policy.row_level.min_rows and all(isinstance(v, str) for v in value):
                self.table(["value"], [[v] for v in value], at, "list")
            for i, item in enumerate(value):
                self._walk(item, where, f"{path}[{i}]", depth, texts)

    def _strings_only(self, value: Any, at: str, depth: int, texts: list[str]) -> None:
        if isinstance(value, str) and ("\n" in value or len(value) > 200):
            self.add_text(value, at, depth + 1)
        elif isinstance(value, (list, dict)):
            self._walk(value, at, "", depth, texts)

    def _dict_table(self, value: dict, at: str) -> bool:
        """Column-oriented JSON ({"col": [..]}, {"col": {"row": v}}) or one row of key: number."""
        items = list(value.values())
        if len(items) >= 1 and all(isinstance(v, list) and all(not isinstance(c, (dict, list)) for c in v) for v in items):
            lengths = {len(v) for v in items}
            if len(lengths) == 1 and lengths != {0} and (len(items) >= 2 or len(items[0]) >= self.policy.row_level.min_bare_numbers):
                n = lengths.pop()
                self.table(list(value), [[col[i] for col in items] for i in range(n)], at, "json")
                return True
        if len(items) >= 1 and all(isinstance(v, dict) and v and all(not isinstance(c, (dict, list)) for c in v.values()) for v in items):
            rows = list(dict.fromkeys(str(k) for v in items for k in v))
            if len(rows) >= 2:
                self.table([""] + [str(k) for k in value], [[r] + [v.get(r) for v in items] for r in rows], at, "json")
                return True
        numbers = {k: v for k, v in value.items() if _is_number(v)}
        if numbers:
            self.table(list(numbers), [list(numbers.values())], at, "keyvalue")
        return False

    def _bare(self, numbers: list[str], at: str) -> None:
        values = [float(v) for v in numbers]
        policy = self.policy.row_level
        monotonic = all(a < b for a, b in zip(values, values[1:])) or all(a > b for a, b in zip(values, values[1:]))
        if len(values) < policy.min_bare_numbers or (monotonic and len(values) <= 12):
            return  # a short, ordered list: bin edges, thresholds, figure sizes
        self.table(["value"], [[v] for v in numbers], at, "bare")


class _HTMLTables(HTMLParser):
    """Tables, text outside tables, every attribute value and comment; notes SVG."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: list[list[list[str]]] = []
        self.text: list[str] = []
        self.attributes: list[str] = []
        self.svg = False
        self._open: list[list[list[str]]] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.attributes.extend(str(v) for _, v in attrs if v)
        if tag == "svg":
            self.svg = True
        if tag in ("style", "script"):
            self._skip += 1
        if tag == "table":
            self._open.append([])
        elif tag == "tr" and self._open:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
            span = next((v for k, v in attrs if k == "colspan"), None)
            self._span = int(span) if span and str(span).isdigit() and int(span) < 100 else 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script") and self._skip:
            self._skip -= 1
        if tag in ("td", "th") and self._row is not None and self._cell is not None:
            self._row.extend([" ".join("".join(self._cell).split())] * getattr(self, "_span", 1))
            self._cell = None
        elif tag == "tr" and self._row is not None and self._open:
            self._open[-1].append(self._row)
            self._row = None
        elif tag == "table" and self._open:
            self.tables.append(self._open.pop())

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        else:
            self.text.append(data)

    def handle_comment(self, data: str) -> None:
        self.text.append(data)

    def close(self) -> None:
        super().close()
        self.tables.extend(self._open)


_PERCENT = re.compile(r"%[0-9A-Fa-f]{2}")
_BACKSLASH = re.compile(r"\\u([0-9A-Fa-f]{4})|\\x([0-9A-Fa-f]{2})|\\U([0-9A-Fa-f]{8})")
MIN_ESCAPES = 8


def _unescape(text: str) -> str | None:
    """The text with percent-encoding (%2C, + in a query) and backslash escapes decoded, when it
    has enough of them to spell something; None when there is nothing to decode."""
    percent = len(_PERCENT.findall(text))
    backslash = len(_BACKSLASH.findall(text))
    if max(percent, backslash) < MIN_ESCAPES:
        return None
    decoded = text
    if backslash >= MIN_ESCAPES:
        def one(match: re.Match[str]) -> str:
            code = int(next(g for g in match.groups() if g), 16)
            return chr(code) if code <= 0x10FFFF else match.group(0)
        decoded = _BACKSLASH.sub(one, decoded)
    if percent >= MIN_ESCAPES:
        decoded = urllib.parse.unquote_plus(decoded, errors="replace") if "%20" not in decoded and "+" in decoded else urllib.parse.unquote(decoded, errors="replace")
    return decoded if decoded != text else None


def _cell_like(rows: list[list[str]]) -> bool:
    """Fields short enough to be table cells, not clauses of prose split at its commas."""
    cells = [c for r in rows for c in r if c.strip()]
    return bool(cells) and sum(len(c.split()) <= 4 for c in cells) * 2 >= len(cells)


def _structured(text: str) -> Any:
    """The text as data when it is JSON, a Python literal (a printed list or dict) or a
    YAML document of lists and mappings; else None."""
    stripped = text.strip()
    if len(stripped) > MAX_STRUCTURED:
        return None
    if stripped[:1] in "[{(":
        try:
            return json.loads(stripped)
        except (json.JSONDecodeError, RecursionError):
            pass
        try:
            return _jsonable(ast.literal_eval(stripped))
        except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
            return None
    if _YAMLISH.search(stripped):
        try:
            value = yaml.safe_load(stripped)
        except yaml.YAMLError:
            return None
        if isinstance(value, list) and len(value) >= 2 or isinstance(value, dict) and any(isinstance(v, (list, dict)) for v in value.values()):
            return _jsonable(value)
    return None


def _html_header(table: list[list[str]]) -> tuple[list[str], list[list[str]]]:
    """pandas writes the column labels and the index name on two header rows; merge them."""
    width = max(len(r) for r in table)
    header, body = table[0], table[1:]
    if body and body[0] and body[0][0] and all(not c for c in body[0][1:]):
        header = [body[0][0]] + header[1:]
        body = body[1:]
    return (header + [""] * width)[:width], body


def _pipe_cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _scalar(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value)[:1000]
    return str(value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (bytes, complex)):
        return str(value)
    return value

