"""Small datasets written into tmp_path for the catalogue's unit tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from enclave.catalog.dictionary import DataDictionary, parse_dictionary

DICTIONARY = {
    "description": "Test admissions",
    "tier": "tier2",
    "tables": {
        "patients": {
            "description": "One row per patient",
            "primary_key": ["patient_id"],
            "columns": {
                "patient_id": {"type": "string", "identifier": "direct", "key": "patient", "nullable": False, "description": "id"},
                "name": {"type": "string", "identifier": "direct", "description": "full name"},
                "age": {"type": "integer", "identifier": "quasi", "nullable": False, "description": "age in years"},
                "sex": {"type": "string", "identifier": "quasi", "values": ["F", "M"], "description": "sex"},
                "weight": {"type": "float", "identifier": "none", "description": "kg"},
                "smoker": {"type": "boolean", "identifier": "none", "description": "smokes"},
                "registered": {"type": "date", "identifier": "quasi", "description": "registration date"},
            },
        },
        "admissions": {
            "description": "One row per admission",
            "primary_key": ["admission_id"],
            "columns": {
                "admission_id": {"type": "integer", "identifier": "quasi", "key": "admission", "nullable": False, "description": "id"},
                "patient_id": {"type": "string", "identifier": "direct", "key": "patient", "nullable": False, "description": "patient"},
                "admitted_at": {"type": "datetime", "identifier": "quasi", "description": "admission time"},
                "ward": {"type": "string", "identifier": "none", "description": "ward"},
            },
        },
    },
}

PATIENTS_CSV = (
    "patient_id,name,age,sex,weight,smoker,registered\n"
    "p1,Ann Smith,34,F,61.5,false,2019-03-01\n"
    "p2,Bob Jones,71,M,80.0,true,2018-07-15\n"
    "p3,Cat Brown,52,F,,false,2020-01-31\n"
    "p4,Dan Green,19,M,70.2,true,2021-11-02\n"
)
ADMISSIONS_CSV = (
    "admission_id,patient_id,admitted_at,ward\n"
    "10,p1,2022-01-01 10:00:00,A\n"
    "11,p1,2022-03-04 08:30:00,B\n"
    "12,p2,2022-02-02 12:00:00,A\n"
    "13,p3,2022-05-05 23:59:59,C\n"
    "14,p4,2022-06-06 00:00:00,A\n"
)



def fhir_resources() -> dict[str, list[dict]]:
    """A tiny FHIR bulk export: two patients with an encounter, diagnosis, test, prescription each."""
    out: dict[str, list[dict]] = {t: [] for t in ["Patient", "Encounter", "Condition", "Observation", "MedicationRequest"]}
    for n, (gender, born) in enumerate([("female", "1980-02-03"), ("male", "1955-12-30")], start=1):
        pid = f"pat-{n}"
        out["Patient"].append({
            "resourceType": "Patient", "id": pid, "gender": gender, "birthDate": born,
            "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": f"94345678{n}0"}],
            "name": [{"family": f"Family{n}", "given": [f"Given{n}"]}],
            "address": [{"postalCode": f"LS{n} 4AB"}],
        })
        out["Encounter"].append({
            "resourceType": "Encounter", "id": f"enc-{n}", "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
            "subject": {"reference": f"Patient/{pid}"},
            "period": {"start": "2023-01-0%dT10:00:00+01:00" % n, "end": "2023-01-1%dT09:00:00Z" % n},
        })
        out["Condition"].append({
            "resourceType": "Condition", "id": f"cond-{n}", "subject": {"reference": f"Patient/{pid}"},
            "encounter": {"reference": f"Encounter/enc-{n}"},
            "clinicalStatus": {"coding": [{"code": "active"}]},
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "I21.9", "display": "Acute myocardial infarction"}]},
            "onsetDateTime": "2023-01-01T08:00:00Z",
        })
        out["Observation"].append({
            "resourceType": "Observation", "id": f"obs-{n}", "status": "final",
            "category": [{"coding": [{"code": "laboratory"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7", "display": "Glucose"}]},
            "subject": {"reference": f"Patient/{pid}"}, "encounter": {"reference": f"Encounter/enc-{n}"},
            "effectiveDateTime": "2023-01-02T07:30:00Z", "valueQuantity": {"value": 5.5 + n, "unit": "mmol/L"},
        })
        out["MedicationRequest"].append({
            "resourceType": "MedicationRequest", "id": f"med-{n}", "status": "active", "intent": "order",
            "subject": {"reference": f"Patient/{pid}"},
            "medicationCodeableConcept": {"coding": [{"system": "https://dmd.nhs.uk", "code": "123", "display": "Aspirin 75mg"}]},
            "authoredOn": "2023-01-03", "dosageInstruction": [{"text": "one daily"}],
        })
    return out


def write_fhir_export(directory, resources=None) -> None:
    import json

    directory.mkdir(parents=True, exist_ok=True)
    for kind, items in (resources or fhir_resources()).items():
        (directory / f"{kind}.ndjson").write_text("".join(json.dumps(r) + "\n" for r in items))


@pytest.fixture
def dictionary_data() -> dict:
    return json.loads(json.dumps(DICTIONARY))


@pytest.fixture
def fhir_export(tmp_path: Path) -> Path:
    export = tmp_path / "export"
    write_fhir_export(export)
    return export


@pytest.fixture
def dictionary() -> DataDictionary:
    return parse_dictionary(json.loads(json.dumps(DICTIONARY)))


@pytest.fixture
def csv_source(tmp_path: Path) -> Path:
    src = tmp_path / "raw"
    src.mkdir()
    (src / "patients.csv").write_text(PATIENTS_CSV)
    (src / "admissions.csv").write_text(ADMISSIONS_CSV)
    return src


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    path = tmp_path / "catalog" / "v1"
    path.mkdir(parents=True)
    return path
