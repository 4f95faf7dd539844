import json

import polars as pl

from enclave.catalog.dictionary import load_dictionary
from enclave.demo.synthetic import DICTIONARY_PATH, generate, write_csv, write_fhir


def test_synthetic_is_deterministic_and_seed_dependent(tmp_path):
    a, b, c = generate(300, seed=5), generate(300, seed=5), generate(300, seed=6)
    assert all(a.tables[t].equals(b.tables[t]) for t in a.tables)
    assert not a.tables["patients"].equals(c.tables["patients"])
    write_csv(a, tmp_path / "one")
    write_csv(b, tmp_path / "two")
    for name in ["patients.csv", "lab_results.csv", "dictionary.yaml"]:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()


def test_synthetic_tables_match_their_dictionary_and_link_up():
    data = generate(500, seed=1)
    dictionary = load_dictionary(DICTIONARY_PATH)
    assert list(data.tables) == list(dictionary.tables)
    for name, frame in data.tables.items():
        assert frame.columns == list(dictionary.tables[name].columns)
    patients = set(data.tables["patients"]["patient_id"])
    for name in ["admissions", "diagnoses", "prescriptions", "lab_results"]:
        assert set(data.tables[name]["patient_id"]) <= patients
    assert set(data.tables["diagnoses"]["admission_id"]) <= set(data.tables["admissions"]["admission_id"])
    assert data.tables["patients"]["nhs_number"].n_unique() == 500
    # Every admission has exactly one primary diagnosis.
    primary = data.tables["diagnoses"].filter(pl.col("position") == 1)
    assert primary.height == data.tables["admissions"].height


def test_synthetic_has_realistic_shape_and_rare_categories():
    data = generate(20000, seed=3)
    patients = data.tables["patients"]
    sex = dict(patients["sex"].value_counts().iter_rows())
    assert 0.45 < sex["F"] / 20000 < 0.56 and 0 < sex.get("U", 0) < 100
    ethnicity = dict(patients["ethnicity"].value_counts().iter_rows())
    assert ethnicity["White British"] > 10000
    assert 0 < ethnicity["White Gypsy or Irish Traveller"] < 40  # about 0.1%: a small cell for the disclosure rules
    codes = dict(data.tables["diagnoses"]["icd10_code"].value_counts().iter_rows())
    rare = [c for c in ["E84.9", "G12.2", "Q90.9", "A15.0", "D66", "E70.0"] if 0 < codes.get(c, 0) < 10]
    assert rare and codes["I10"] > 1000
    los = data.tables["admissions"]["length_of_stay_days"]
    assert los.median() <= 3 and los.max() > 20  # geometric: mostly short stays, a long tail


def test_synthetic_fhir_export_holds_the_same_records(tmp_path):
    data = generate(50, seed=2)
    write_fhir(data, tmp_path)
    lines = {kind: (tmp_path / f"{kind}.ndjson").read_text().splitlines()
             for kind in ["Patient", "Encounter", "Condition", "Observation", "MedicationRequest"]}
    assert len(lines["Patient"]) == 50
    assert len(lines["Condition"]) == data.tables["diagnoses"].height
    first = json.loads(lines["Patient"][0])
    assert first["resourceType"] == "Patient" and first["id"] == "P0000001"
    assert first["identifier"][0]["value"] == data.tables["patients"]["nhs_number"][0]
