import pytest

from enclave.catalog.dictionary import ColumnType, load_dictionary, parse_dictionary
from enclave.errors import InvalidInput



def test_dictionary_parses_tables_keys_and_types(dictionary):
    assert list(dictionary.tables) == ["patients", "admissions"]
    assert dictionary.tables["patients"].patient_column == "patient_id"
    assert dictionary.tables["admissions"].columns["admitted_at"].type is ColumnType.DATETIME


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda d: d["tables"]["patients"]["columns"]["age"].update(colour="red"), "colour"),
        (lambda d: d["tables"]["patients"]["columns"]["age"].pop("identifier"), "identifier"),
        (lambda d: d["tables"]["patients"]["columns"]["age"].update(type="number"), "type"),
        (lambda d: d["tables"]["patients"].update(primary_key=["nope"]), "undeclared columns: nope"),
        (lambda d: d["tables"]["patients"]["columns"]["weight"].update(key="x"), "declare identifier"),
        (lambda d: d["tables"]["patients"]["columns"]["age"].update(values=["1"]), "string column"),
        (lambda d: (d["tables"]["patients"]["columns"]["patient_id"].pop("key"),
                    d["tables"]["patients"]["columns"]["name"].update(optout=True)), "needs a column with key: patient"),
    ],
)
def test_dictionary_refuses_bad_declarations_with_one_line(change, expected, dictionary_data):
    data = dictionary_data
    change(data)
    with pytest.raises(InvalidInput) as err:
        parse_dictionary(data, "dict.yaml")
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_dictionary_load_reports_yaml_syntax_line(tmp_path):
    path = tmp_path / "d.yaml"
    path.write_text("description: x\ntables: [\n")
    with pytest.raises(InvalidInput, match="not valid YAML"):
        load_dictionary(path)
    with pytest.raises(InvalidInput, match="does not exist"):
        load_dictionary(tmp_path / "missing.yaml")
