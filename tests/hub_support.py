"""Data for the hub's tests: a tiny dataset ingested and granted through the catalogue."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import yaml
from sqlalchemy.orm import Session

from enclave.catalog import service as catalog
from enclave.clock import today
from enclave.config import Settings
from enclave.db.models import Grant, User

DICTIONARY = {
    "description": "Tiny measurements",
    "tier": "tier2",
    "tables": {
        "measures": {
            "description": "One row per measurement",
            "primary_key": ["row_id"],
            "columns": {
                "row_id": {"type": "integer", "identifier": "none", "nullable": False, "description": "row"},
                "value": {"type": "float", "identifier": "none", "description": "a value"},
            },
        }
    },
}


def ingest(session: Session, admin: User, settings: Settings, where: Path, name: str) -> None:
    """Ingest a two-row dataset ``name`` (source files written under ``where``)."""
    src = where / f"src-{name}"
    src.mkdir(parents=True)
    (src / "measures.csv").write_text("row_id,value\n1,1.5\n2,2.5\n")
    dictionary = where / f"{name}.dictionary.yaml"
    dictionary.write_text(yaml.safe_dump(DICTIONARY))
    catalog.ingest_dataset(session, admin, settings, src, name, dictionary=dictionary)


def grant(session: Session, admin: User, settings: Settings, slug: str, name: str, days: int = 30) -> Grant:
    return catalog.add_grant(session, admin, settings, slug, name, expires=today() + dt.timedelta(days=days))


def stop_hub_process(proc: "subprocess.Popen[bytes]", timeout: float = 60) -> None:
    """Stop a hub started with ``start_new_session=True``, then whatever is left of its
    process group (a proxy or service the hub did not stop), so no test leaks processes."""
    import os
    import signal
    import subprocess

    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
