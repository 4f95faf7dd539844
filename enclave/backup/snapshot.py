"""A consistent copy of the database, and what in it points at files.

SQLite is copied with its online backup API in one step (one read transaction, so
writers carry on and the copy is of one moment). PostgreSQL is dumped with ``pg_dump``
from one exported ``REPEATABLE READ, READ ONLY`` snapshot (:mod:`enclave.backup.pgdump`),
and the rows that point at files are read in that same snapshot.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, delete, insert, select

from enclave.config import Settings
from enclave.db.models import AuditHead, Base
from enclave.db.session import check_ready

BATCH = 2000
RowRewrite = Callable[[str, dict[str, Any]], dict[str, Any] | None]


class DbFormat(StrEnum):
    """How a backup holds the database."""

    SQLITE = "sqlite"    # a SQLite file (SQLite's online backup API)
    PG_DUMP = "pg_dump"  # pg_dump's custom format


def snapshot_database(settings: Settings, target: Path) -> tuple[DbFormat, References]:
    """Write a consistent copy of the enclave's database to ``target``; return its format
    and what its rows point at (read from the same moment)."""
    check_ready(settings)
    path = settings.sqlite_path
    if path is None:
        from enclave.backup.pgdump import dump

        return DbFormat.PG_DUMP, dump(settings, target)
    source = sqlite3.connect(path, timeout=30)
    dest = sqlite3.connect(target)
    try:
        # The copy is a scratch file the backup reads into its store (which makes its own
        # bytes durable): SQLite need not fsync it.
        dest.execute("PRAGMA synchronous=OFF")
        source.backup(dest)  # pages=-1: the whole database in one step, one consistent read
        dest.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
    finally:
        dest.close()
        source.close()
    return DbFormat.SQLITE, read_references(target)


def copy_rows(src: Connection, dst: Connection, rewrite: RowRewrite | None = None) -> dict[str, int]:
    """Copy every table of the model from ``src`` to ``dst`` (parents first, by key);
    ``rewrite`` may change a row or drop it (None). Returns rows copied per table."""
    counts: dict[str, int] = {}
    # The target is a freshly migrated schema: the genesis head its first migration wrote
    # gives way to the copied one.
    dst.execute(delete(AuditHead.__table__))
    for table in Base.metadata.sorted_tables:
        order = list(table.primary_key.columns)
        batch: list[dict[str, Any]] = []
        counts[table.name] = 0
        for row in src.execute(select(table).order_by(*order)).mappings():
            values = dict(row)
            if rewrite is not None:
                values = rewrite(table.name, values)
                if values is None:
                    continue
            batch.append(values)
            if len(batch) >= BATCH:
                dst.execute(insert(table), batch)
                counts[table.name] += len(batch)
                batch = []
        if batch:
            dst.execute(insert(table), batch)
            counts[table.name] += len(batch)
    return counts


@dataclass
class References:
    """What a database snapshot points at in the enclave's home."""

    revision: str | None
    audit_seq: int
    audit_hash: str
    dataset_dirs: list[str] = field(default_factory=list)
    view_dirs: list[str] = field(default_factory=list)
    quarantine_objects: list[str] = field(default_factory=list)
    release_dirs: list[str] = field(default_factory=list)
    job_runs: list[int] = field(default_factory=list)
    job_notebooks: list[str] = field(default_factory=list)
    archives: list[str] = field(default_factory=list)
    destroyed: dict[str, dict[str, Any]] = field(default_factory=dict)


def read_references(snapshot: Path) -> References:
    """Read a SQLite snapshot's pointers to files."""
    conn = sqlite3.connect(f"file:{snapshot}?mode=ro", uri=True)
    try:
        return references_from(lambda sql: conn.execute(sql).fetchall())
    finally:
        conn.close()


def references_from(rows: Callable[[str], list[tuple[Any, ...]]]) -> References:
    """The pointers to files, by plain SQL (``rows`` runs a query on SQLite or PostgreSQL)."""
    import json

    col = lambda sql: [r[0] for r in rows(sql) if r[0] is not None]  # noqa: E731
    head = (rows("SELECT seq, hash FROM audit_head WHERE id = 1") or [(0, "0" * 64)])[0]
    revision = rows("SELECT version_num FROM alembic_version")
    destroyed = {}
    for slug, when, record in rows(
            "SELECT p.slug, r.destroyed_at, r.destruction_record FROM data_retention r "
            "JOIN projects p ON p.id = r.project_id WHERE r.destroyed_at IS NOT NULL"):
        destroyed[slug] = {"destroyed_at": str(when),
                           "record": json.loads(record) if isinstance(record, str) else record}
    return References(
        revision=revision[0][0] if revision else None, audit_seq=int(head[0]), audit_hash=str(head[1]),
        dataset_dirs=col("SELECT storage_path FROM dataset_versions ORDER BY id"),
        view_dirs=col("SELECT view_path FROM grants ORDER BY id"),
        # Both forms of each file: the submitted bytes and the canonical ones that are released.
        quarantine_objects=sorted(set(col("SELECT sha256 FROM egress_files")
                                      + col("SELECT canonical_sha256 FROM egress_files"))),
        release_dirs=[str(Path(p).parent) for p in col(
            "SELECT release_record_path FROM egress_requests WHERE status = 'released' ORDER BY id")],
        job_runs=col("SELECT id FROM job_runs ORDER BY id"),
        job_notebooks=sorted(set(col("SELECT notebook_sha256 FROM job_runs"))),
        archives=col("SELECT archive_path FROM data_retention WHERE destroyed_at IS NULL"),
        destroyed=destroyed,
    )
