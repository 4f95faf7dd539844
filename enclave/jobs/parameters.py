"""A notebook's papermill parameters: read from its cell tagged ``parameters``, typed by
their literal defaults, and checked before a run is queued.

The cell is parsed, never executed: each top-level ``name = <literal>`` is a parameter of
the literal's kind (whole number, number, true/false, text, list, mapping); a default that
is not a literal (``date.today()``) gives a parameter of kind ``any`` that takes any JSON
value. The same checks apply to the web form, the API and the CLI.
"""

from __future__ import annotations

import ast
import json
import keyword
import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from enclave.errors import InvalidInput

PARAMETERS_TAG = "parameters"
MAX_PARAMETERS = 100


class ParamKind(StrEnum):
    """What a parameter takes, from its default's literal."""

    INTEGER = "integer"
    NUMBER = "number"
    BOOLEAN = "boolean"
    TEXT = "text"
    LIST = "list"
    MAPPING = "mapping"
    ANY = "any"  # a None default or an expression: any JSON value


# How each kind is asked for in one line, for error messages and form hints.
_EXPECTED = {
    ParamKind.INTEGER: "a whole number, e.g. 40",
    ParamKind.NUMBER: "a number, e.g. 2.5",
    ParamKind.BOOLEAN: "true or false",
    ParamKind.TEXT: "text",
    ParamKind.LIST: 'a JSON list, e.g. [1, 2] or ["a", "b"]',
    ParamKind.MAPPING: 'a JSON object, e.g. {"a": 1}',
    ParamKind.ANY: "a JSON value (a number, true/false, null, a list) or text",
}


@dataclass(frozen=True)
class NotebookParameter:
    """One parameter of a notebook: its name, kind, default (as JSON) and the comment beside it."""

    name: str
    kind: ParamKind
    default: Any
    default_text: str  # the default as written in the cell
    comment: str = ""

    @property
    def expected(self) -> str:
        return _EXPECTED[self.kind]

    def form_value(self) -> str:
        """The default as the web form shows it in its field."""
        if self.kind is ParamKind.TEXT:
            return str(self.default)
        if self.kind is ParamKind.BOOLEAN:
            return "true" if self.default else "false"
        if self.kind is ParamKind.ANY and self.default is None and self.default_text != "None":
            return ""
        return json.dumps(self.default)


def _kind_of(value: Any) -> ParamKind:
    if isinstance(value, bool):
        return ParamKind.BOOLEAN
    if isinstance(value, int):
        return ParamKind.INTEGER
    if isinstance(value, float):
        return ParamKind.NUMBER
    if isinstance(value, str):
        return ParamKind.TEXT
    if isinstance(value, (list, tuple)):
        return ParamKind.LIST
    if isinstance(value, dict):
        return ParamKind.MAPPING
    return ParamKind.ANY


def _jsonable(value: Any) -> Any:
    """The literal as a JSON value (tuples become lists); None when it has no JSON form."""
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError):
        return None


def parameters_cell(notebook: dict[str, Any]) -> str | None:
    """The source of the first code cell tagged ``parameters``, or None when there is none."""
    for cell in notebook.get("cells", []):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        tags = (cell.get("metadata") or {}).get("tags") or []
        if isinstance(tags, list) and PARAMETERS_TAG in tags:
            source = cell.get("source", "")
            return "".join(source) if isinstance(source, list) else str(source)
    return None


def read_parameters(notebook: dict[str, Any]) -> list[NotebookParameter] | None:
    """The parameters of a notebook (its ``parameters`` cell), in the cell's order; None
    when the notebook has no such cell. A cell that is not valid Python has none."""
    source = parameters_cell(notebook)
    if source is None:
        return None
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    lines = source.splitlines()
    found: dict[str, NotebookParameter] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name, value_node = node.targets[0].id, node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            name, value_node = node.target.id, node.value
        else:
            continue
        text = ast.get_source_segment(source, value_node) or ""
        try:
            literal = ast.literal_eval(value_node)
            kind, default = _kind_of(literal), _jsonable(literal)
            if default is None and literal is not None:
                kind = ParamKind.ANY
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            kind, default = ParamKind.ANY, None
        end = node.end_lineno or node.lineno
        tail = lines[end - 1][node.end_col_offset or 0:] if end - 1 < len(lines) else ""
        comment = tail.split("#", 1)[1].strip() if "#" in tail else ""
        found[name] = NotebookParameter(name, kind, default, text, comment)
        if len(found) >= MAX_PARAMETERS:
            break
    return list(found.values())


def _wrong(param: NotebookParameter, given: Any) -> InvalidInput:
    shown = given if isinstance(given, str) else json.dumps(given)
    return InvalidInput(f"parameter {param.name} takes {param.expected}, not {shown!r}")


def check_value(param: NotebookParameter, value: Any) -> Any:
    """A typed value (from JSON, the API or the CLI) checked against the parameter's kind."""
    kind = param.kind
    if kind is ParamKind.ANY:
        return value
    if kind is ParamKind.BOOLEAN and isinstance(value, bool):
        return value
    if kind is ParamKind.INTEGER and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind is ParamKind.INTEGER and isinstance(value, float) and value.is_integer():
        return int(value)
    if kind is ParamKind.NUMBER and isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise _wrong(param, value)
        return float(value)
    if kind is ParamKind.TEXT and isinstance(value, str):
        return value
    if kind is ParamKind.LIST and isinstance(value, list):
        return value
    if kind is ParamKind.MAPPING and isinstance(value, dict):
        return value
    raise _wrong(param, value)


def parse_value(param: NotebookParameter, raw: str) -> Any:
    """What a person typed into the parameter's form field, read by its kind."""
    text = raw.strip()
    kind = param.kind
    if kind is ParamKind.TEXT:
        return raw
    if kind is ParamKind.BOOLEAN:
        lowered = text.lower()
        if lowered in ("true", "yes", "1", "on"):
            return True
        if lowered in ("false", "no", "0", "off", ""):
            return False
        raise _wrong(param, raw)
    if not text:
        raise InvalidInput(f"parameter {param.name} is empty: give {param.expected}")
    try:
        value = json.loads(text)
    except ValueError:
        if kind is ParamKind.ANY:
            return raw
        raise _wrong(param, raw) from None
    return check_value(param, value)


def check_parameters(declared: list[NotebookParameter] | None, notebook: str, given: dict[str, Any]) -> dict[str, Any]:
    """``given`` checked against the notebook's parameters: each name declared in its
    ``parameters`` cell, each value of its kind. A notebook without that cell takes none
    (papermill would put them where the notebook's own code overrides them)."""
    for key in given:
        if not isinstance(key, str) or not key.isidentifier() or keyword.iskeyword(key):
            raise InvalidInput(f"parameter name {key!r} is not a Python identifier")
    if not given:
        return {}
    if declared is None:
        raise InvalidInput(f"{notebook} has no cell tagged 'parameters', so it takes no parameters: "
                           "tag the cell that holds the defaults, or run it without parameters")
    by_name = {p.name: p for p in declared}
    checked: dict[str, Any] = {}
    for key, value in given.items():
        param = by_name.get(key)
        if param is None:
            names = ", ".join(by_name) or "none"
            raise InvalidInput(f"{notebook} has no parameter {key!r}: its parameters are {names}")
        checked[key] = check_value(param, value)
    return checked


def form_values(declared: list[NotebookParameter], fields: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The web form's fields (``p_<name>``) read by kind; returns the parameters that differ
    from the defaults and, per parameter name, a one-line error."""
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for param in declared:
        raw = fields.get(f"p_{param.name}")
        if raw is None or (param.kind is ParamKind.ANY and not raw.strip()):
            continue  # left as the notebook has it
        try:
            value = parse_value(param, raw)
        except InvalidInput as exc:
            errors[param.name] = str(exc)
            continue
        if value != param.default or param.kind is ParamKind.ANY:
            values[param.name] = value
    return values, errors
