"""Reading a notebook's parameters cell and checking values by the defaults' kinds."""

import pytest

from enclave.errors import InvalidInput
from enclave.jobs.parameters import ParamKind, check_parameters, form_values, parse_value, read_parameters


def notebook(source: str, tags=("parameters",)) -> dict:
    return {"cells": [{"cell_type": "markdown", "source": "# title", "metadata": {}},
                      {"cell_type": "code", "source": source, "metadata": {"tags": list(tags)}, "outputs": []}]}


CELL = (
    'dataset = "demo"          # directory under /data\n'
    "min_age = 40\n"
    "ratio: float = 2.5\n"
    "strict = True\n"
    "bands = [0, 20, 40]\n"
    "opts = {'a': 1}\n"
    "nothing = None\n"
    "import datetime as dt\n"
    "start = dt.date.today()\n"
    "x, y = 1, 2\n"
)


def test_parameters_read_names_kinds_defaults_and_comments():
    found = read_parameters(notebook(CELL))
    assert [(p.name, p.kind) for p in found] == [
        ("dataset", ParamKind.TEXT), ("min_age", ParamKind.INTEGER), ("ratio", ParamKind.NUMBER),
        ("strict", ParamKind.BOOLEAN), ("bands", ParamKind.LIST), ("opts", ParamKind.MAPPING),
        ("nothing", ParamKind.ANY), ("start", ParamKind.ANY)]
    assert found[0].comment == "directory under /data" and found[0].default == "demo"
    assert found[7].default is None and found[7].default_text == "dt.date.today()" and found[7].form_value() == ""
    assert [p.form_value() for p in found[:6]] == ["demo", "40", "2.5", "true", "[0, 20, 40]", '{"a": 1}']


def test_parameters_none_without_a_tagged_cell_and_empty_for_invalid_python():
    assert read_parameters(notebook("x = 1", tags=())) is None
    assert read_parameters(notebook("x = = 1")) == []


def test_parameters_values_checked_by_kind():
    declared = read_parameters(notebook(CELL))
    ok = check_parameters(declared, "nb.ipynb", {"min_age": 50.0, "ratio": 3, "strict": False, "start": "2024-01-01"})
    assert ok == {"min_age": 50, "ratio": 3.0, "strict": False, "start": "2024-01-01"}
    assert type(ok["min_age"]) is int and type(ok["ratio"]) is float
    for bad in ({"min_age": True}, {"min_age": 2.5}, {"ratio": "x"}, {"strict": 1}, {"bands": "0,20"},
                {"dataset": 3}, {"opts": [1]}):
        with pytest.raises(InvalidInput, match="takes"):
            check_parameters(declared, "nb.ipynb", bad)
    with pytest.raises(InvalidInput, match="not a Python identifier"):
        check_parameters(declared, "nb.ipynb", {"class": 1})


def test_parameters_form_fields_parsed_with_one_error_per_field():
    declared = read_parameters(notebook(CELL))
    values, errors = form_values(declared, {"p_dataset": "demo", "p_min_age": "50", "p_ratio": "abc",
                                            "p_strict": "false", "p_bands": "[1, 2]", "p_start": ""})
    assert values == {"min_age": 50, "strict": False, "bands": [1, 2]}  # defaults left out, empty 'any' kept as is
    assert errors == {"ratio": "parameter ratio takes a number, e.g. 2.5, not 'abc'"}
    assert parse_value(declared[1], " 7 ") == 7
    with pytest.raises(InvalidInput, match="is empty"):
        parse_value(declared[1], "")
    assert parse_value(declared[7], "not json") == "not json"
