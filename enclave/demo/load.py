"""Loading the synthetic demo datasets into the catalogue (what ``make up`` runs).

Idempotent: datasets already in the catalogue are left alone, so running it twice
neither duplicates versions nor fails.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from rich.progress import Progress
from sqlalchemy import select
from sqlalchemy.orm import Session

from enclave.catalog.readers import SourceFormat
from enclave.catalog.service import ingest_dataset
from enclave.config import Settings
from enclave.db.models import Dataset, DatasetVersion, User
from enclave.demo.synthetic import generate, write_csv, write_fhir
from enclave.permissions import check_admin

CSV_DATASET = "demo_hospital"
FHIR_DATASET = "demo_fhir"


def load_demo_datasets(
    session: Session,
    actor: User,
    settings: Settings,
    *,
    patients: int = 1000,
    seed: int = 1,
    progress: Progress | None = None,
) -> list[DatasetVersion]:
    """Generate the demo data under ``$ENCLAVE_HOME/demo-data`` and ingest what is missing:
    ``demo_hospital`` from CSV and ``demo_fhir`` from the same records as FHIR NDJSON."""
    check_admin(actor, "load demo data")
    present = set(session.scalars(select(Dataset.name).where(Dataset.name.in_([CSV_DATASET, FHIR_DATASET]))))
    wanted = [(CSV_DATASET, "csv", SourceFormat.CSV), (FHIR_DATASET, "fhir", SourceFormat.FHIR)]
    missing = [w for w in wanted if w[0] not in present]
    if not missing:
        return []
    root = settings.home / "demo-data" / f"patients-{patients}-seed-{seed}"
    data = None
    for _, sub, _ in missing:
        if not (root / sub).is_dir():
            data = data or generate(patients, seed)
            partial = _staged(root / sub)
            shutil.rmtree(partial, ignore_errors=True)
            (write_csv if sub == "csv" else write_fhir)(data, partial, progress)
            partial.rename(root / sub)
    return [
        ingest_dataset(session, actor, settings, root / sub, name, fmt=fmt,
                       description=f"Synthetic demo data, {patients} patients (seed {seed})", progress=progress)
        for name, sub, fmt in missing
    ]


def _staged(path: Path) -> Path:
    return path.with_name(f".{path.name}.partial")
