"""Reproducible queries: a table's input described as data, so the enclave can re-run it.

A researcher builds the frame a safe table is computed from with :func:`query` instead of
``pl.scan_parquet``::

    from enclave.safe import query, crosstab
    patients = query("demo", "patients").filter(pl.col("age") >= 18)
    crosstab(patients, index="deprivation_decile", columns="sex").save("project/outbox/t.csv")

The query is a record of plain data (dataset, table, steps; each polars expression in its
JSON form), saved in the table's evidence. On submit the enclave re-runs it in a fresh job
container over the project's views and trusts the evidence only if the table comes out
the same (``enclave.egress.replay``). The record is never evaluated on the host.

What a query may do is chosen so that every row it yields is one distinct record of its
base table: steps add columns computed row by row, drop rows or columns, or join a table
that must hold at most one row per key (``validate="m:1"``), never repeat or invent rows.
Expressions are checked against an allowlist of element-wise operations: no aggregation,
window, sort, shift, explode or Python function, and no literal series except the value
lists of ``is_in``, ``replace`` and ``cut``. Anything else is refused with a one-line error.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator

from enclave.errors import InvalidInput

DATA_ROOT_ENV = "ENCLAVE_DATA_ROOT"
DEFAULT_DATA_ROOT = "/data"
# A dataset is a directory under /data and a table one Parquet file in it: plain names only.
Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")]
ColumnName = Annotated[str, StringConstraints(min_length=1, max_length=200)]

MAX_STEPS = 100
# The base table's patient key, carried through every step when the replay asks for it.
CARRIED = "__enclave_patient__"
MAX_JOIN_DEPTH = 4
MAX_EXPR_NODES = 2000

# Element-wise functions a derived column or a filter may use, by their name in polars'
# JSON form of an expression ("Function": {"function": ...}). Everything else is refused.
_PLAIN = {"Abs", "Ceil", "Floor", "Round", "Coalesce", "FillNull", "Clip", "Log", "Sign", "Pow",
          "MaxHorizontal", "MinHorizontal", "Replace", "ReplaceStrict", "Cut"}
_GROUPED = {
    "StringExpr": {"ConcatHorizontal", "Contains", "EndsWith", "StartsWith", "LenChars", "LenBytes", "Lowercase",
                   "Uppercase", "Replace", "Slice", "Head", "Tail", "StripChars", "StripCharsStart", "StripCharsEnd",
                   "Strptime", "ToInteger", "ZFill", "Format"},
    "TemporalExpr": {"Year", "IsoYear", "Month", "Day", "Quarter", "Week", "WeekDay", "OrdinalDay", "Hour", "Minute",
                     "TotalDays", "TotalHours", "TotalMinutes", "TotalSeconds", "Truncate", "Date", "ToString",
                     "OffsetBy", "MonthStart", "MonthEnd"},
    "Boolean": {"IsNull", "IsNotNull", "IsBetween", "IsIn", "Not", "IsNan", "IsNotNan", "IsFinite",
                "AnyHorizontal", "AllHorizontal"},
}
# Functions whose later inputs may be literal lists of values (the values to look for or map).
_VALUE_LISTS = {"IsIn", "Replace", "ReplaceStrict", "Cut"}
_SCALARS = {"Int", "Float", "Str", "String", "Boolean", "Null", "Date", "Datetime", "Duration", "Time",
            "Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64", "Float32", "Float64"}


def _function_name(spec: Any) -> tuple[str, str]:
    if isinstance(spec, str):
        return spec, ""
    if isinstance(spec, dict) and len(spec) == 1:
        (group, inner), = spec.items()
        if group in _GROUPED:
            variant = inner if isinstance(inner, str) else next(iter(inner), "") if isinstance(inner, dict) else ""
            return group, str(variant)
        return group, ""
    raise InvalidInput("an expression holds a function polars did not describe by name; use plain polars expressions")


def check_expression(node: Any, where: str) -> int:
    """Refuse (InvalidInput, one line) anything in a polars JSON expression that is not an
    element-wise operation of the allowlist; return the number of nodes."""
    count = 0

    def visit(item: Any, value_list: bool = False) -> None:
        nonlocal count
        count += 1
        if count > MAX_EXPR_NODES:
            raise InvalidInput(f"{where}: the expression is too large (over {MAX_EXPR_NODES} parts); simplify it")
        if not isinstance(item, dict) or len(item) != 1:
            raise InvalidInput(f"{where}: not a polars expression; build it with pl.col(...) and friends")
        (kind, body), = item.items()
        match kind:
            case "Column":
                if not isinstance(body, str):
                    raise InvalidInput(f"{where}: select columns by name (pl.col('name')), not by pattern or type")
            case "Literal":
                if not isinstance(body, dict) or len(body) != 1:
                    raise InvalidInput(f"{where}: an unreadable literal value")
                (lit_kind, value), = body.items()
                scalar = lit_kind == "Dyn" or (lit_kind == "Scalar" and isinstance(value, dict)
                                               and set(value) <= _SCALARS)
                listed = lit_kind in ("Series", "Scalar") and value_list
                if not (scalar or listed):
                    raise InvalidInput(f"{where}: literal series or lists are only allowed as the values of "
                                       "is_in, replace or cut; a query may not bring its own data")
            case "BinaryExpr":
                visit(body.get("left")), visit(body.get("right"))
            case "Cast":
                visit(body.get("expr"))
            case "Ternary":
                for part in ("predicate", "truthy", "falsy"):
                    visit(body.get(part))
            case "Alias":
                visit(body[0] if isinstance(body, list) and body else None)
            case "Function":
                group, variant = _function_name(body.get("function"))
                allowed = group in _PLAIN if group not in _GROUPED else variant in _GROUPED[group]
                if not allowed:
                    shown = f"{group}.{variant}" if variant else group
                    raise InvalidInput(f"{where}: {shown} is not element-wise (or not allowed) in a reproducible "
                                       "query; aggregate with enclave.safe, not inside the query")
                inputs = body.get("input")
                if not isinstance(inputs, list):
                    raise InvalidInput(f"{where}: an unreadable function call")
                lists = (variant or group) in _VALUE_LISTS
                for i, part in enumerate(inputs):
                    visit(part, value_list=lists and i > 0)
            case _:
                raise InvalidInput(f"{where}: {kind} is not element-wise (aggregations, windows, sorts, "
                                   "Python functions ...) and is not allowed in a reproducible query")

    try:
        visit(node)
    except (AttributeError, TypeError, KeyError, IndexError, ValueError):
        # A hand-made record of the wrong shape: refuse it, whatever it is.
        raise InvalidInput(f"{where}: not a polars expression; build it with pl.col(...) and friends") from None
    return count


def expression_json(expr: pl.Expr, where: str) -> dict[str, Any]:
    """A polars expression as checked JSON data."""
    if not isinstance(expr, pl.Expr):
        raise InvalidInput(f"{where}: expected a polars expression (e.g. pl.col('age') >= 18), got {type(expr).__name__}")
    try:
        data = json.loads(expr.meta.serialize(format="json"))
    except Exception as exc:  # polars refuses e.g. Python functions it cannot serialise
        raise InvalidInput(f"{where}: this expression cannot be recorded ({str(exc).splitlines()[0][:120]}); "
                           "use polars expressions without Python functions") from None
    check_expression(data, where)
    return data


def _expr(data: dict[str, Any]) -> pl.Expr:
    return pl.Expr.deserialize(io.StringIO(json.dumps(data)), format="json")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WithColumns(_Strict):
    op: Literal["with_columns"] = "with_columns"
    columns: dict[ColumnName, dict[str, Any]]

    @field_validator("columns")
    @classmethod
    def _checked(cls, columns: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for name, expr in columns.items():
            check_expression(expr, f"column {name!r}")
        return columns


class Filter(_Strict):
    op: Literal["filter"] = "filter"
    predicate: dict[str, Any]

    @field_validator("predicate")
    @classmethod
    def _checked(cls, predicate: dict[str, Any]) -> dict[str, Any]:
        check_expression(predicate, "filter")
        return predicate


class Select(_Strict):
    op: Literal["select"] = "select"
    columns: list[ColumnName] = Field(min_length=1)


class Join(_Strict):
    op: Literal["join"] = "join"
    other: Query
    on: list[ColumnName] = Field(min_length=1)
    how: Literal["inner", "left"] = "inner"


Step = Annotated[WithColumns | Filter | Select | Join, Field(discriminator="op")]


class Query(_Strict):
    """A reproducible description of a frame: one table of a dataset and steps over it."""

    dataset: Name
    table: Name
    steps: list[Step] = Field(default_factory=list, max_length=MAX_STEPS)

    @field_validator("steps")
    @classmethod
    def _shallow(cls, steps: list[Any]) -> list[Any]:
        if _depth(steps) > MAX_JOIN_DEPTH:
            raise ValueError(f"joins nest more than {MAX_JOIN_DEPTH} deep")
        return steps

    # --- building (each returns a new query) ---------------------------------------------

    def _then(self, step: Any) -> Query:
        if len(self.steps) >= MAX_STEPS:
            raise InvalidInput(f"a query may have at most {MAX_STEPS} steps; combine them")
        return Query(dataset=self.dataset, table=self.table, steps=[*self.steps, step])

    def with_columns(self, **columns: pl.Expr) -> Query:
        """Add (or replace) columns computed row by row, e.g. ``age=(...).cast(pl.Int64)``."""
        if not columns:
            raise InvalidInput("with_columns needs at least one name=expression")
        return self._then(WithColumns(columns={n: expression_json(e, f"column {n!r}") for n, e in columns.items()}))

    def filter(self, predicate: pl.Expr) -> Query:
        """Keep the rows where ``predicate`` is true."""
        return self._then(Filter(predicate=expression_json(predicate, "filter")))

    def select(self, *columns: str) -> Query:
        """Keep only these columns (by name)."""
        return self._then(Select(columns=list(columns)))

    def join(self, other: Query, on: str | Sequence[str], how: Literal["inner", "left"] = "inner") -> Query:
        """Join ``other`` (another query, at most one row per ``on`` key) to each row."""
        if not isinstance(other, Query):
            raise InvalidInput("join another enclave.safe.query(...), not a data frame: a query may not bring its own data")
        keys = [on] if isinstance(on, str) else list(on)
        try:
            return self._then(Join(other=other, on=keys, how=how))
        except ValidationError as exc:
            raise InvalidInput(f"cannot join: {exc.errors()[0]['msg']}") from None

    # --- running ---------------------------------------------------------------------------

    def datasets(self) -> set[str]:
        """Every dataset the query reads (its own and those of joined queries)."""
        found = {self.dataset}
        for step in self.steps:
            if isinstance(step, Join):
                found |= step.other.datasets()
        return found

    def lazy(self, root: str | os.PathLike[str] | None = None, carry: str | None = None) -> pl.LazyFrame:
        """The query as a polars LazyFrame over the views under ``root`` (default /data).

        ``carry`` names a column of the base table to keep, whatever the steps select, as
        :data:`CARRIED` (the replay carries the patient key so it can say who is in each cell).
        """
        base = Path(root if root is not None else data_root())
        frame = pl.scan_parquet(base / self.dataset / f"{self.table}.parquet")
        if carry is not None:
            frame = frame.with_columns(pl.col(carry).alias(CARRIED))
        for step in self.steps:
            if isinstance(step, WithColumns):
                if carry is not None and CARRIED in step.columns:
                    raise InvalidInput(f"a query may not define a column named {CARRIED}")
                frame = frame.with_columns(**{n: _expr(e) for n, e in step.columns.items()})
            elif isinstance(step, Filter):
                frame = frame.filter(_expr(step.predicate))
            elif isinstance(step, Select):
                kept = step.columns + ([CARRIED] if carry is not None and CARRIED not in step.columns else [])
                frame = frame.select(kept)
            else:
                frame = frame.join(step.other.lazy(base), on=step.on, how=step.how, validate="m:1")
        return frame

    def collect(self, root: str | os.PathLike[str] | None = None) -> pl.DataFrame:
        """Run the query here (in the researcher's own container)."""
        try:
            return self.lazy(root).collect()
        except pl.exceptions.PolarsError as exc:
            raise InvalidInput(f"the query cannot run: {str(exc).splitlines()[0][:200]}") from None

    def record(self) -> dict[str, Any]:
        """The query as plain JSON data (what the evidence sidecar holds)."""
        return self.model_dump(mode="json")


def _depth(steps: list[Any]) -> int:
    joins = [s for s in steps if isinstance(s, Join)]
    return 1 + max((_depth(j.other.steps) for j in joins), default=0) if joins else 0


def data_root() -> Path:
    """Where the views are mounted: /data (``$ENCLAVE_DATA_ROOT`` when set, for tests)."""
    return Path(os.environ.get(DATA_ROOT_ENV) or DEFAULT_DATA_ROOT)


def query(dataset: str, table: str) -> Query:
    """A reproducible query over ``/data/<dataset>/<table>.parquet``."""
    try:
        return Query(dataset=dataset, table=table)
    except ValidationError:
        raise InvalidInput(f"dataset {dataset!r} and table {table!r} must be plain names "
                           "(the folder under /data and the Parquet file's name without .parquet)") from None


def parse_query(record: Any) -> Query:
    """A query record (e.g. from an evidence sidecar) validated as data; InvalidInput if not."""
    try:
        return Query.model_validate(record)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"]) or "query"
        raise InvalidInput(f"not a valid query record ({key}: {first['msg'][:160]})") from None
    except InvalidInput as exc:
        raise InvalidInput(f"not a valid query record ({exc})") from None


Join.model_rebuild()
Query.model_rebuild()
