"""The data dictionary: what each table and column of a dataset is.

A dictionary is a YAML file that declares, for every table of a dataset, every column:
its type, a description, and its identifier kind. Ingest validates the data against it
and refuses any undeclared column (an undeclared column might identify someone).

    description: Hospital admissions, synthetic
    tier: tier2
    tables:
      patients:
        description: One row per patient
        primary_key: [patient_id]
        columns:
          patient_id: {type: string, identifier: direct, key: patient, description: ...}
          sex: {type: string, identifier: quasi, values: [F, M, U], description: ...}

``key`` names an identifier domain: views replace such a column with a per-project
pseudonym instead of dropping it, so that tables stay joinable inside one project only.
The domain ``patient`` marks the column that opt-outs are matched against.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import polars as pl
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from enclave.errors import InvalidInput

PATIENT_DOMAIN = "patient"
NAME_RE = r"^[a-z][a-z0-9_]{0,62}$"


class ColumnType(StrEnum):
    STRING = "string"
    INTEGER = "integer"
    FLOAT = "float"
    BOOLEAN = "boolean"
    DATE = "date"
    DATETIME = "datetime"

    @property
    def polars(self) -> pl.DataType:
        """The polars type a column of this kind is stored as."""
        return {
            ColumnType.STRING: pl.String(),
            ColumnType.INTEGER: pl.Int64(),
            ColumnType.FLOAT: pl.Float64(),
            ColumnType.BOOLEAN: pl.Boolean(),
            ColumnType.DATE: pl.Date(),
            ColumnType.DATETIME: pl.Datetime("us"),
        }[self]


class IdentifierKind(StrEnum):
    DIRECT = "direct"  # names, NHS numbers, addresses: never in a view (unless a key)
    QUASI = "quasi"  # age, sex, postcode district: kept, but the disclosure rules watch them
    NONE = "none"


class ColumnSpec(BaseModel):
    """One column: its type, meaning and how identifying it is."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: ColumnType
    description: str = Field(min_length=1)
    identifier: IdentifierKind
    key: Annotated[str, Field(pattern=NAME_RE)] | None = None
    nullable: bool = True
    values: list[str] | None = None
    # Opt-out lists may name patients by this column (e.g. NHS number) instead of the key.
    optout: bool = False

    @model_validator(mode="after")
    def _check(self) -> ColumnSpec:
        if self.key is not None and self.identifier is IdentifierKind.NONE:
            raise ValueError("a key column identifies something: declare identifier: direct or quasi")
        if self.values is not None and self.type is not ColumnType.STRING:
            raise ValueError("values: lists the allowed codes of a string column only")
        return self


class TableSpec(BaseModel):
    """One table: its columns in file order, and the columns that must be unique."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = Field(min_length=1)
    primary_key: list[str] = Field(default_factory=list)
    columns: dict[Annotated[str, Field(pattern=NAME_RE)], ColumnSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> TableSpec:
        unknown = [c for c in self.primary_key if c not in self.columns]
        if unknown:
            raise ValueError(f"primary_key names undeclared columns: {', '.join(unknown)}")
        patient = [n for n, c in self.columns.items() if c.key == PATIENT_DOMAIN]
        if len(patient) > 1:
            raise ValueError(f"more than one column has key: patient ({', '.join(patient)})")
        if not patient and any(c.optout for c in self.columns.values()):
            raise ValueError("optout: true needs a column with key: patient in the same table")
        return self

    @property
    def optout_columns(self) -> list[str]:
        """Columns other than the patient key that opt-out lists may use."""
        return [n for n, c in self.columns.items() if c.optout]

    @property
    def schema(self) -> dict[str, pl.DataType]:
        return {name: col.type.polars for name, col in self.columns.items()}

    @property
    def patient_column(self) -> str | None:
        """The column that identifies the patient (matched against opt-outs), if any."""
        return next((n for n, c in self.columns.items() if c.key == PATIENT_DOMAIN), None)


class DataDictionary(BaseModel):
    """A dataset's dictionary: a description, a tier and its tables."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = Field(min_length=1)
    tier: str = Field(default="tier2", min_length=1, max_length=32)
    tables: dict[Annotated[str, Field(pattern=NAME_RE)], TableSpec] = Field(min_length=1)

    def table(self, name: str) -> TableSpec:
        try:
            return self.tables[name]
        except KeyError:
            raise InvalidInput(
                f"the dictionary has no table {name!r} (it has {', '.join(self.tables)}): "
                "name the file after a table or fix the dictionary"
            ) from None

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


def parse_dictionary(data: Any, source: str = "dictionary") -> DataDictionary:
    """Validate a loaded YAML/JSON object; errors become one line naming the bad field."""
    try:
        return DataDictionary.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "top level"
        more = f" (and {exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
        msg = re.sub(r"^Value error, ", "", first["msg"])
        raise InvalidInput(f"{source}: {where}: {msg}{more}: fix the data dictionary") from None


def load_dictionary(path: Path) -> DataDictionary:
    """Read and validate a data dictionary YAML file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInput(f"data dictionary {path} does not exist: give the path of its YAML file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read data dictionary {path} ({exc}): check the file") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f" at line {line + 1}" if line is not None else ""
        raise InvalidInput(f"data dictionary {path} is not valid YAML{where}: fix its syntax") from None
    return parse_dictionary(data, str(path))
