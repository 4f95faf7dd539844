"""A deterministic synthetic health dataset: patients, admissions, diagnoses, prescriptions
and laboratory results, as CSV (with its data dictionary) and as a FHIR bulk export.

Nothing here describes a real person. Distributions follow published shapes (an
age pyramid, census ethnic groups, geometric lengths of stay, Zipf-like diagnosis
frequencies, log-normal laboratory values) and each categorical column has a few rare
categories (a rare ethnic group, a remote postcode district, rare diagnoses and
specialties) so that the disclosure rules have small cells to catch. The same
``seed`` and ``patients`` always give byte-identical files.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from rich.progress import Progress

DICTIONARY_PATH = Path(__file__).with_name("synthetic_dictionary.yaml")
# A fixed "today" so that output never depends on when it was generated.
REFERENCE_DATE = dt.date(2024, 12, 31)

# (lower age of a 5-year band, relative weight): roughly the England age pyramid.
AGE_BANDS = [(0, 5.4), (5, 6.0), (10, 6.0), (15, 5.6), (20, 6.0), (25, 6.6), (30, 6.8), (35, 6.6),
             (40, 6.3), (45, 6.5), (50, 6.9), (55, 6.7), (60, 5.9), (65, 5.1), (70, 4.9), (75, 3.7),
             (80, 2.6), (85, 1.6), (90, 0.8), (95, 0.2)]
SEX = [("F", 50.5), ("M", 49.3), ("U", 0.2)]
ETHNICITY = [
    ("White British", 73.5), ("White Irish", 0.9), ("White Gypsy or Irish Traveller", 0.1), ("White Roma", 0.2),
    ("Other White", 6.2), ("Mixed White and Black Caribbean", 0.9), ("Mixed White and Black African", 0.4),
    ("Mixed White and Asian", 0.8), ("Other Mixed", 0.9), ("Indian", 3.3), ("Pakistani", 2.7),
    ("Bangladeshi", 1.1), ("Chinese", 0.8), ("Other Asian", 1.6), ("African", 2.5), ("Caribbean", 1.1),
    ("Other Black", 0.5), ("Arab", 0.6), ("Any other ethnic group", 1.6), ("Not stated", 2.0),
]
DISTRICTS = [("LS6", 9), ("LS7", 8), ("LS8", 8), ("LS11", 7), ("LS12", 7), ("LS15", 6), ("LS17", 6), ("LS28", 5),
             ("BD1", 5), ("BD3", 5), ("BD7", 4), ("WF1", 4), ("WF10", 3), ("HX1", 3), ("HG1", 2), ("YO1", 2),
             ("ZE3", 0.02), ("KW17", 0.02)]
FAMILY = ["Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Patel", "Robinson",
          "Wright", "Thompson", "Evans", "Walker", "White", "Roberts", "Green", "Hall", "Khan", "Wood"]
GIVEN = {"F": ["Olivia", "Amelia", "Isla", "Ava", "Mia", "Grace", "Aisha", "Sophie", "Ruth", "Margaret"],
         "M": ["Oliver", "George", "Noah", "Arthur", "Harry", "Leo", "Mohammed", "Jack", "David", "John"],
         "U": ["Alex", "Sam", "Charlie", "Jordan"]}
METHODS = [("emergency", 55), ("elective", 35), ("maternity", 6), ("transfer", 4)]
SPECIALTIES = [("General Medicine", 22), ("General Surgery", 14), ("Trauma and Orthopaedics", 12),
               ("Cardiology", 9), ("Geriatric Medicine", 10), ("Obstetrics", 6), ("Paediatrics", 7),
               ("Respiratory Medicine", 7), ("Gastroenterology", 6), ("Urology", 5), ("Oncology", 4),
               ("Clinical Genetics", 0.05), ("Burns Care", 0.05), ("Transplant Surgery", 0.05)]
# (ICD-10 code, description, weight): common conditions with a long tail of rare ones.
DIAGNOSES = [
    ("I10", "Essential (primary) hypertension", 60), ("E11.9", "Type 2 diabetes mellitus without complications", 40),
    ("J44.1", "Chronic obstructive pulmonary disease with acute exacerbation", 25), ("I48.9", "Atrial fibrillation, unspecified", 22),
    ("N39.0", "Urinary tract infection, site not specified", 22), ("J18.9", "Pneumonia, unspecified", 20),
    ("I21.9", "Acute myocardial infarction, unspecified", 12), ("I50.9", "Heart failure, unspecified", 15),
    ("K35.8", "Acute appendicitis, other and unspecified", 8), ("S72.0", "Fracture of neck of femur", 10),
    ("F32.9", "Depressive episode, unspecified", 14), ("J45.9", "Asthma, unspecified", 14),
    ("E78.0", "Pure hypercholesterolaemia", 16), ("N18.3", "Chronic kidney disease, stage 3", 12),
    ("K80.2", "Calculus of gallbladder without cholecystitis", 8), ("I63.9", "Cerebral infarction, unspecified", 9),
    ("C34.9", "Malignant neoplasm of bronchus or lung, unspecified", 5), ("C50.9", "Malignant neoplasm of breast, unspecified", 5),
    ("O80", "Single spontaneous delivery", 8), ("R07.4", "Chest pain, unspecified", 18),
    ("E84.9", "Cystic fibrosis, unspecified", 0.05), ("G12.2", "Motor neuron disease", 0.05),
    ("Q90.9", "Down syndrome, unspecified", 0.08), ("A15.0", "Tuberculosis of lung", 0.05),
    ("D66", "Hereditary factor VIII deficiency", 0.03), ("E70.0", "Classical phenylketonuria", 0.02),
]
# (local code, LOINC, name, unit, typical value, spread, log-normal?, low, high)
LAB_TESTS = [
    ("HB", "718-7", "Haemoglobin", "g/L", 135.0, 16.0, False, 115.0, 165.0),
    ("WBC", "6690-2", "White cell count", "10*9/L", 7.0, 0.35, True, 4.0, 11.0),
    ("NA", "2951-2", "Sodium", "mmol/L", 139.0, 3.5, False, 133.0, 146.0),
    ("K", "2823-3", "Potassium", "mmol/L", 4.3, 0.5, False, 3.5, 5.3),
    ("CREA", "14682-9", "Creatinine", "umol/L", 80.0, 0.35, True, 45.0, 110.0),
    ("CRP", "1988-5", "C-reactive protein", "mg/L", 5.0, 1.3, True, 0.0, 10.0),
    ("HBA1C", "4548-4", "HbA1c", "mmol/mol", 42.0, 0.25, True, 20.0, 48.0),
    ("GLU", "2345-7", "Glucose", "mmol/L", 5.6, 0.25, True, 3.5, 7.8),
]
LAB_WEIGHTS = [18, 18, 16, 16, 14, 10, 4, 4]
# (code, name, usual dose in mg, weight)
DRUGS = [("0212000B0", "Atorvastatin", 20.0, 20), ("0205051R0", "Ramipril", 5.0, 14), ("0601022B0", "Metformin", 500.0, 16),
         ("0206020A0", "Amlodipine", 5.0, 14), ("0103050P0", "Omeprazole", 20.0, 15), ("0407010H0", "Paracetamol", 1000.0, 18),
         ("0209000A0", "Aspirin", 75.0, 10), ("0208020V0", "Apixaban", 5.0, 6), ("0501013B0", "Amoxicillin", 500.0, 10),
         ("0403030Q0", "Sertraline", 50.0, 7), ("0302000C0", "Salbutamol inhaler", 0.1, 8),
         ("0902021S0", "Sodium phenylbutyrate", 500.0, 0.03), ("0301020Q0", "Ivacaftor", 150.0, 0.03)]
TABLES = ["patients", "admissions", "diagnoses", "prescriptions", "lab_results"]


@dataclass(frozen=True)
class SyntheticData:
    """The generated tables, in memory."""

    tables: dict[str, pl.DataFrame]

    @property
    def rows(self) -> dict[str, int]:
        return {name: df.height for name, df in self.tables.items()}


def _pick(rng: np.random.Generator, table: list[tuple], n: int) -> np.ndarray:
    """``n`` indices into ``table`` drawn with the weights in each entry's last field."""
    weights = np.array([row[-1] for row in table], dtype=float)
    return rng.choice(len(table), size=n, p=weights / weights.sum())


def _nhs_numbers(rng: np.random.Generator, n: int) -> list[str]:
    """Ten-digit numbers with a valid modulus-11 check digit, from the 999 test range."""
    out: list[str] = []
    seen: set[str] = set()
    weights = np.arange(10, 1, -1)
    while len(out) < n:
        body = np.concatenate([[9, 9, 9], rng.integers(0, 10, size=6)])
        check = 11 - int((body * weights).sum() % 11)
        check = 0 if check == 11 else check
        if check == 10:
            continue
        number = "".join(map(str, body)) + str(check)
        if number not in seen:
            seen.add(number)
            out.append(number)
    return out


def _days(values: np.ndarray) -> list[dt.date]:
    return [REFERENCE_DATE - dt.timedelta(days=int(d)) for d in values]


def generate(patients: int, seed: int = 0) -> SyntheticData:
    """Generate ``patients`` patients and their records, deterministically from ``seed``."""
    if patients < 1:
        raise ValueError("patients must be at least 1")
    rng = np.random.default_rng(seed)
    n = patients
    pid = np.array([f"P{i:07d}" for i in range(1, n + 1)])
    band = np.array([b for b, _ in AGE_BANDS])[_pick(rng, AGE_BANDS, n)]
    age_days = (band * 365.25 + rng.uniform(0, 5 * 365.25, n)).astype(int)
    sex = np.array([s for s, _ in SEX])[_pick(rng, SEX, n)]
    district_idx = _pick(rng, DISTRICTS, n)
    district = np.array([d for d, _ in DISTRICTS])[district_idx]
    sector = rng.integers(1, 10, n)
    unit = [chr(65 + a) + chr(65 + b) for a, b in zip(rng.integers(0, 26, n), rng.integers(0, 26, n), strict=True)]
    postcode = [f"{d} {s}{u}" for d, s, u in zip(district, sector, unit, strict=True)]
    age_years = age_days / 365.25
    # Older people die more often within the window.
    died = rng.random(n) < np.clip((age_years - 60) / 400, 0.0, 0.12)
    death_days = np.where(died, rng.integers(0, 3 * 365, n), -1)
    given = [GIVEN[s][i % len(GIVEN[s])] for s, i in zip(sex, rng.integers(0, 1000, n), strict=True)]
    patients_df = pl.DataFrame({
        "patient_id": pid,
        "nhs_number": _nhs_numbers(rng, n),
        "family_name": np.array(FAMILY)[rng.integers(0, len(FAMILY), n)],
        "given_name": given,
        "date_of_birth": _days(age_days),
        "sex": sex,
        "ethnicity": np.array([e for e, _ in ETHNICITY])[_pick(rng, ETHNICITY, n)],
        "postcode": postcode,
        "postcode_district": district,
        "deprivation_decile": np.clip(np.round(rng.normal(5.5, 2.8, n)), 1, 10).astype(np.int64),
        "date_of_death": [REFERENCE_DATE - dt.timedelta(days=int(d)) if d >= 0 else None for d in death_days],
    })

    # Admissions: more for older patients.
    per_patient = rng.poisson(0.4 + age_years / 60)
    a_patient = np.repeat(np.arange(n), per_patient)
    m = len(a_patient)
    los = rng.geometric(0.25, m) - 1
    start_days = rng.integers(30, 5 * 365, m)
    admitted = [dt.datetime.combine(REFERENCE_DATE, dt.time()) - dt.timedelta(days=int(d), minutes=int(mi))
                for d, mi in zip(start_days, rng.integers(0, 24 * 60, m), strict=True)]
    discharged = [a + dt.timedelta(days=int(s), hours=int(h)) for a, s, h in zip(admitted, los, rng.integers(1, 12, m), strict=True)]
    admissions_df = pl.DataFrame({
        "admission_id": np.arange(1, m + 1, dtype=np.int64),
        "patient_id": pid[a_patient],
        "admitted_at": admitted,
        "discharged_at": discharged,
        "admission_method": np.array([x for x, _ in METHODS])[_pick(rng, METHODS, m)],
        "specialty": np.array([x for x, _ in SPECIALTIES])[_pick(rng, SPECIALTIES, m)],
        "length_of_stay_days": los.astype(np.int64),
    }, schema_overrides={"admitted_at": pl.Datetime("us"), "discharged_at": pl.Datetime("us")})

    # Diagnoses: one primary and a few secondary per admission.
    per_adm = 1 + rng.poisson(1.3, m)
    d_adm = np.repeat(np.arange(m), per_adm)
    position = np.concatenate([np.arange(1, k + 1) for k in per_adm]) if m else np.array([], dtype=int)
    code_idx = _pick(rng, DIAGNOSES, len(d_adm))
    diagnoses_df = pl.DataFrame({
        "diagnosis_id": np.arange(1, len(d_adm) + 1, dtype=np.int64),
        "admission_id": (d_adm + 1).astype(np.int64),
        "patient_id": pid[a_patient[d_adm]] if m else np.array([], dtype=str),
        "position": position.astype(np.int64),
        "icd10_code": np.array([c for c, _, _ in DIAGNOSES])[code_idx],
        "description": np.array([d for _, d, _ in DIAGNOSES])[code_idx],
    })

    # Prescriptions: community and inpatient.
    per_rx = rng.poisson(1.0 + age_years / 25)
    r_patient = np.repeat(np.arange(n), per_rx)
    k = len(r_patient)
    drug_idx = _pick(rng, DRUGS, k)
    dose_factor = rng.choice([0.5, 1.0, 1.0, 1.0, 2.0], size=k)
    prescriptions_df = pl.DataFrame({
        "prescription_id": np.arange(1, k + 1, dtype=np.int64),
        "patient_id": pid[r_patient],
        "bnf_code": np.array([d[0] for d in DRUGS])[drug_idx],
        "drug_name": np.array([d[1] for d in DRUGS])[drug_idx],
        "dose_mg": np.array([d[2] for d in DRUGS])[drug_idx] * dose_factor,
        "prescribed_on": _days(rng.integers(0, 5 * 365, k)),
        "days_supply": rng.choice([7, 14, 28, 28, 28, 56, 84], size=k).astype(np.int64),
    })

    # Laboratory results: typical values, some abnormal, heavier tails for CRP.
    per_lab = rng.poisson(2.0 + age_years / 10)
    l_patient = np.repeat(np.arange(n), per_lab)
    j = len(l_patient)
    weights = np.array(LAB_WEIGHTS, dtype=float)
    test_idx = rng.choice(len(LAB_TESTS), size=j, p=weights / weights.sum())
    centre = np.array([t[4] for t in LAB_TESTS])[test_idx]
    spread = np.array([t[5] for t in LAB_TESTS])[test_idx]
    lognormal = np.array([t[6] for t in LAB_TESTS])[test_idx]
    draw = rng.standard_normal(j)
    value = np.where(lognormal, centre * np.exp(spread * draw), centre + spread * draw)
    value = np.round(np.clip(value, 0.0, None), 1)
    low = np.array([t[7] for t in LAB_TESTS])[test_idx]
    high = np.array([t[8] for t in LAB_TESTS])[test_idx]
    taken = [dt.datetime.combine(REFERENCE_DATE, dt.time()) - dt.timedelta(minutes=int(x))
             for x in rng.integers(0, 5 * 365 * 24 * 60, j)]
    lab_df = pl.DataFrame({
        "result_id": np.arange(1, j + 1, dtype=np.int64),
        "patient_id": pid[l_patient],
        "test_code": np.array([t[0] for t in LAB_TESTS])[test_idx],
        "test_name": np.array([t[2] for t in LAB_TESTS])[test_idx],
        "value": value,
        "unit": np.array([t[3] for t in LAB_TESTS])[test_idx],
        "taken_at": taken,
        "abnormal_flag": np.where(value < low, "L", np.where(value > high, "H", "N")),
    }, schema_overrides={"taken_at": pl.Datetime("us")})
    return SyntheticData({
        "patients": patients_df, "admissions": admissions_df, "diagnoses": diagnoses_df,
        "prescriptions": prescriptions_df, "lab_results": lab_df,
    })


def write_csv(data: SyntheticData, out_dir: Path, progress: Progress | None = None) -> Path:
    """Write one CSV per table plus ``dictionary.yaml`` into ``out_dir``; returns it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    task = progress.add_task("writing CSV", total=len(data.tables)) if progress else None
    for name, df in data.tables.items():
        df.write_csv(out_dir / f"{name}.csv", datetime_format="%Y-%m-%d %H:%M:%S", date_format="%Y-%m-%d")
        if progress is not None and task is not None:
            progress.advance(task)
    shutil.copyfile(DICTIONARY_PATH, out_dir / "dictionary.yaml")
    return out_dir


_GENDER = {"F": "female", "M": "male", "U": "unknown"}
_CLASS = {"emergency": "EMER", "elective": "IMP", "maternity": "IMP", "transfer": "IMP"}


def _iso(value: dt.datetime | dt.date | None) -> str | None:
    return None if value is None else value.isoformat() + ("Z" if isinstance(value, dt.datetime) else "")


def write_fhir(data: SyntheticData, out_dir: Path, progress: Progress | None = None) -> Path:
    """Write the same records as a FHIR R4 bulk export (one NDJSON file per type)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    t = data.tables
    task = progress.add_task("writing FHIR", total=sum(df.height for df in t.values())) if progress else None

    def emit(name: str, resources) -> None:  # type: ignore[no-untyped-def]
        with open(out_dir / f"{name}.ndjson", "w", encoding="utf-8") as fh:
            for resource in resources:
                fh.write(json.dumps(resource, separators=(",", ":")) + "\n")
                if progress is not None and task is not None:
                    progress.advance(task)

    emit("Patient", (
        {"resourceType": "Patient", "id": r["patient_id"],
         "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": r["nhs_number"]}],
         "name": [{"family": r["family_name"], "given": [r["given_name"]]}],
         "gender": _GENDER[r["sex"]], "birthDate": r["date_of_birth"].isoformat(),
         **({"deceasedDateTime": r["date_of_death"].isoformat() + "T00:00:00Z"} if r["date_of_death"] else {}),
         "address": [{"postalCode": r["postcode"]}]}
        for r in t["patients"].iter_rows(named=True)))
    emit("Encounter", (
        {"resourceType": "Encounter", "id": f"adm-{r['admission_id']}", "status": "finished",
         "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": _CLASS[r["admission_method"]]},
         "type": [{"text": r["specialty"]}], "subject": {"reference": f"Patient/{r['patient_id']}"},
         "period": {"start": _iso(r["admitted_at"]), "end": _iso(r["discharged_at"])}}
        for r in t["admissions"].iter_rows(named=True)))
    emit("Condition", (
        {"resourceType": "Condition", "id": f"dx-{r['diagnosis_id']}",
         "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
         "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": r["icd10_code"], "display": r["description"]}]},
         "subject": {"reference": f"Patient/{r['patient_id']}"}, "encounter": {"reference": f"Encounter/adm-{r['admission_id']}"}}
        for r in t["diagnoses"].iter_rows(named=True)))
    loinc = {code: lo for code, lo, *_ in LAB_TESTS}
    emit("Observation", (
        {"resourceType": "Observation", "id": f"lab-{r['result_id']}", "status": "final",
         "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
         "code": {"coding": [{"system": "http://loinc.org", "code": loinc[r["test_code"]], "display": r["test_name"]}]},
         "subject": {"reference": f"Patient/{r['patient_id']}"}, "effectiveDateTime": _iso(r["taken_at"]),
         "valueQuantity": {"value": r["value"], "unit": r["unit"]}}
        for r in t["lab_results"].iter_rows(named=True)))
    emit("MedicationRequest", (
        {"resourceType": "MedicationRequest", "id": f"rx-{r['prescription_id']}", "status": "completed", "intent": "order",
         "medicationCodeableConcept": {"coding": [{"system": "https://www.nhsbsa.nhs.uk/bnf", "code": r["bnf_code"], "display": r["drug_name"]}]},
         "subject": {"reference": f"Patient/{r['patient_id']}"}, "authoredOn": r["prescribed_on"].isoformat(),
         "dosageInstruction": [{"text": f"{r['dose_mg']:g} mg for {r['days_supply']} days"}]}
        for r in t["prescriptions"].iter_rows(named=True)))
    return out_dir
