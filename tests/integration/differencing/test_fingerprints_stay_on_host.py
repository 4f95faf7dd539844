"""Fingerprints never reach a container, a researcher or a release (docs/security.md).

The replay container is given only the sidecar, the policy and the names of the patient
key columns: no key, no fingerprint, no other project's pseudonyms. What it sends back per
cell (the project's own pseudonyms) is turned into store indices on the host and kept only
in the store under ENCLAVE_HOME/differencing (0700), which no container mounts; the check
results in the database (and so `egress show`, the web pages and release records) carry
counts and cell labels, never who is in a cell.
"""

from __future__ import annotations

import json
import os
import stat

import polars as pl

from enclave.db.models import EgressFile
from enclave.db.session import unit_of_work
from enclave.disclosure.differencing.store import DifferencingStore
from enclave.safe import crosstab

from .conftest import Enclave
from .test_differencing_check import cohort, patients, top_age_with_few


def test_differencing_fingerprints_stay_on_the_host(enclave: Enclave):
    age = top_age_with_few(patients(enclave))
    enclave.as_project("renal")
    enclave.save("renal", "bands.csv", crosstab(cohort(age - 1), index="age_band", columns="sex"))
    enclave.submit("renal", "bands.csv")
    enclave.as_project("cardio")
    enclave.save("cardio", "bands.csv", crosstab(cohort(age), index="age_band", columns="sex"))
    enclave.submit("cardio", "bands.csv")

    store = DifferencingStore.of_home(enclave.settings.home)
    renal = store.load_map("demo", "renal", 1)
    cardio = store.load_map("demo", "cardio", 1)
    assert renal is not None and cardio is not None
    assert set(renal["pseudonym"]).isdisjoint(cardio["pseudonym"])  # projects' pseudonyms share nothing
    key = (enclave.settings.keys_dir / "differencing.key").read_bytes()

    payloads = enclave.env.replayer.payloads
    assert len(payloads) == 2
    for payload in payloads:
        sent = json.loads(payload)
        assert set(sent) == {"format", "evidence", "policy", "patient_columns"}
        assert set(sent["patient_columns"].values()) == {"patient_id"}  # column names only
        assert key.hex() not in payload.decode() and key not in payload
        assert not any(p.encode() in payload for p in renal["pseudonym"].to_list()[:500])

    cardio_pseudonyms = set(cardio["pseudonym"].to_list())
    with unit_of_work(enclave.settings) as s:
        stored = json.dumps([f.check_json for f in s.query(EgressFile).all()])
    assert not any(p in stored for p in cardio_pseudonyms | set(renal["pseudonym"].to_list()))
    assert str(store.root).startswith(str(enclave.settings.home / "differencing"))
    for folder in (store.root / "demo", store.root / "demo" / "outputs", store.root / "demo" / "maps"):
        assert stat.S_IMODE(os.stat(folder).st_mode) & 0o077 == 0
    assert stat.S_IMODE(os.stat(enclave.settings.keys_dir / "differencing.key").st_mode) == 0o600
    # The store keeps indices, not pseudonyms or source keys, beside each output.
    members = pl.read_parquet(next((store.root / "demo" / "outputs").glob("*.members.parquet")))
    assert members.columns == ["cell", "idx"]
