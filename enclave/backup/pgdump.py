"""PostgreSQL in a backup: ``pg_dump`` of one snapshot, ``pg_restore`` onto PostgreSQL,
and the dump's rows read without a server (for ``verify`` and for a restore onto SQLite).

- :func:`dump`: a ``REPEATABLE READ, READ ONLY`` transaction exports its snapshot,
  ``pg_dump --snapshot`` dumps exactly that moment (custom format), and what the backup
  must copy besides (the files the rows point at) is read in the same transaction.
- :func:`restore_to_postgresql`: ``pg_restore``'s schema and data, the paths the rows
  store moved to the new home, then its indexes, constraints and triggers, fed to one
  ``psql --single-transaction``: the target holds all of it or nothing (the immutability
  triggers come last, so the moved paths of released requests can still be written).
- :func:`to_sqlite`: the dump's ``COPY`` data (``pg_restore`` writes it out; no server is
  needed) loaded into a SQLite file migrated to the dump's schema revision.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from sqlalchemy import text
from sqlalchemy.engine import make_url

from enclave.backup.snapshot import References, references_from
from enclave.config import Settings
from enclave.db.session import engine_for, upgrade
from enclave.errors import EnclaveError, InvalidInput

TOOLS = "install the PostgreSQL client tools (Debian: postgresql-client) of the server's version or newer"


class DumpFailed(EnclaveError):
    """pg_dump, pg_restore or psql failed (the message carries their last line)."""


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise InvalidInput(f"{name} is not installed: {TOOLS}")
    return found


def libpq(url: str) -> tuple[str, dict[str, str]]:
    """A libpq connection URI for a SQLAlchemy URL, and the environment carrying its
    password (never on a command line, where other users could read it)."""
    parsed = make_url(url)
    env = dict(os.environ)
    if parsed.password is not None:
        env["PGPASSWORD"] = str(parsed.password)
    plain = parsed.set(drivername="postgresql", password=None)
    return plain.render_as_string(hide_password=False), env


def _last_line(stderr: bytes | str) -> str:
    lines = (stderr.decode(errors="replace") if isinstance(stderr, bytes) else stderr).strip().splitlines()
    return lines[-1] if lines else "no message"


def dump(settings: Settings, target: Path) -> References:
    """Dump the enclave's PostgreSQL database as of one moment into ``target`` (pg_dump's
    custom format); return what the rows of that moment point at."""
    conninfo, env = libpq(settings.db_url)
    pg_dump = _tool("pg_dump")
    engine = engine_for(settings.db_url)
    with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn:
        conn.execute(text("SET TRANSACTION READ ONLY"))
        snapshot = conn.execute(text("SELECT pg_export_snapshot()")).scalar_one()
        # The exporting transaction stays open until pg_dump has the snapshot (and done).
        result = subprocess.run([pg_dump, "--format=custom", f"--snapshot={snapshot}", "--no-owner",
                                 "--no-privileges", f"--file={target}", f"--dbname={conninfo}"],
                                env=env, capture_output=True)
        if result.returncode != 0:
            raise DumpFailed(f"pg_dump failed ({_last_line(result.stderr)}): check the database and {TOOLS}")
        refs = references_from(lambda sql: [tuple(row) for row in conn.exec_driver_sql(sql)])
        conn.rollback()
    return refs


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def path_updates(path_columns: dict[str, tuple[str, ...]], old_home: str, new_home: Path,
                 destroyed: list[str]) -> str:
    """SQL that moves the stored paths to the new home and clears the views and archives of
    destroyed projects (run between the data and the triggers)."""
    old = old_home.rstrip("/") + "/"
    new = str(new_home).rstrip("/") + "/"
    sql = []
    for table, columns in sorted(path_columns.items()):
        for column in columns:
            sql.append(f"UPDATE public.{table} SET {column} = {_literal(new)} || substr({column}, {len(old) + 1}) "
                       f"WHERE left({column}, {len(old)}) = {_literal(old)};")
    if destroyed:
        slugs = ", ".join(_literal(slug) for slug in sorted(destroyed))
        for table, column in (("grants", "view_path"), ("data_retention", "archive_path")):
            sql.append(f"UPDATE public.{table} SET {column} = NULL WHERE project_id IN "
                       f"(SELECT id FROM public.projects WHERE slug IN ({slugs}));")
    return "\n".join(sql) + "\n"


def restore_to_postgresql(dump_file: Path, url: str, between: str) -> None:
    """Load ``dump_file`` into the empty database at ``url`` in one transaction, running
    the SQL ``between`` after the data and before the indexes, constraints and triggers."""
    conninfo, env = libpq(url)
    pg_restore, psql = _tool("pg_restore"), _tool("psql")
    loader = subprocess.Popen([psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction",
                               f"--dbname={conninfo}", "-f", "-"], env=env, stdin=subprocess.PIPE,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, bufsize=0)
    assert loader.stdin is not None
    try:
        for part in (["--section=pre-data", "--section=data"], None, ["--section=post-data"]):
            if part is None:
                data = memoryview(between.encode())
                while data:
                    data = data[loader.stdin.write(data) or 0:]
                continue
            out = subprocess.run([pg_restore, "--no-owner", "--no-acl", *part, "-f", "-", str(dump_file)],
                                 env=env, stdout=loader.stdin, stderr=subprocess.PIPE)
            if out.returncode != 0:
                raise DumpFailed(f"pg_restore could not read the backup's database ({_last_line(out.stderr)}): {TOOLS}")
        loader.stdin.close()
    except BaseException:
        loader.kill()  # before its input ends: the transaction is rolled back, nothing is kept
        loader.wait()
        raise
    assert loader.stderr is not None
    err = loader.stderr.read()
    if loader.wait() != 0:
        raise DumpFailed(f"loading the backup into PostgreSQL failed ({_last_line(err)}): "
                         "give an empty database the user may create tables in (nothing was kept)")


# --- the dump's rows without a server ----------------------------------------------------

_COPY = re.compile(r"^COPY (?:\"?(\w+)\"?\.)?\"?(\w+)\"? \((.*)\) FROM stdin;$")
_ESCAPE = re.compile(r"\\(?:([0-7]{1,3})|x([0-9a-fA-F]{1,2})|(.))", re.S)
_SIMPLE = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}


def _unescape(field: str) -> str:
    """A field of COPY's text format, its backslash escapes decoded."""
    if "\\" not in field:
        return field

    def one(match: re.Match[str]) -> str:
        octal, hexa, char = match.groups()
        if octal is not None:
            return chr(int(octal, 8))
        if hexa is not None:
            return chr(int(hexa, 16))
        return _SIMPLE.get(char, char)

    return _ESCAPE.sub(one, field)


def _converter(declared: str) -> Callable[[str], Any]:
    """COPY's text of a value -> what SQLAlchemy stores in a SQLite column of that type."""
    kind = declared.upper()
    if kind.startswith("BOOL"):
        return lambda v: 1 if v == "t" else 0
    if kind.startswith(("DATETIME", "TIMESTAMP")):
        def stamp(v: str) -> str:
            when = dt.datetime.fromisoformat(v)
            if when.tzinfo is not None:
                when = when.astimezone(dt.UTC).replace(tzinfo=None)
            return when.strftime("%Y-%m-%d %H:%M:%S.%f")
        return stamp
    if kind.startswith(("INT", "BIGINT", "SMALLINT")):
        return int
    if kind.startswith(("FLOAT", "REAL", "DOUBLE", "NUMERIC")):
        return float
    if kind.startswith(("BLOB", "BYTEA")):
        return lambda v: bytes.fromhex(v[2:]) if v.startswith("\\x") else v.encode()
    return lambda v: v


@contextmanager
def _copy_data(dump_file: Path) -> Iterator[IO[str]]:
    """pg_restore's text of the dump's data (read without any server)."""
    proc = subprocess.Popen([_tool("pg_restore"), "--data-only", "-f", "-", str(dump_file)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, encoding="utf-8")
    assert proc.stdout is not None and proc.stderr is not None
    try:
        yield proc.stdout
    finally:
        proc.stdout.close()
        err = proc.stderr.read()
        if proc.wait() != 0:
            raise DumpFailed(f"pg_restore could not read the backup's database ({_last_line(err)}): {TOOLS}")


def to_sqlite(dump_file: Path, target: Path, revision: str | None) -> None:
    """The rows of ``dump_file`` in a new SQLite file ``target`` of schema ``revision``
    (the dump's own; migrate it further with :func:`enclave.db.session.upgrade`)."""
    settings = Settings(home=target.parent, db_url=f"sqlite:///{target}", policies_dir=target.parent)
    upgrade(settings, revision or "head")
    engine_for(settings.db_url).dispose()
    conn = sqlite3.connect(target)
    try:
        with _copy_data(dump_file) as lines:
            table: str | None = None
            insert, convert = "", []
            batch: list[list[Any]] = []
            for line in lines:
                line = line.rstrip("\n")
                if table is None:
                    found = _COPY.match(line)
                    if found is None or found.group(2) == "alembic_version":
                        continue
                    table = found.group(2)
                    columns = [c.strip().strip('"') for c in found.group(3).split(",")]
                    declared = {row[1]: row[2] for row in conn.execute(f'PRAGMA table_info("{table}")')}
                    missing = [c for c in columns if c not in declared]
                    if not declared or missing:
                        raise DumpFailed(f"the backup's database has {table}.{(missing or ['?'])[0]}, which schema "
                                         f"{revision} does not: the backup is damaged")
                    convert = [_converter(declared[c]) for c in columns]
                    conn.execute(f'DELETE FROM "{table}"')  # what a migration seeded gives way to the dump's rows
                    insert = (f'INSERT INTO "{table}" ({", ".join(chr(34) + c + chr(34) for c in columns)}) '
                              f'VALUES ({", ".join("?" * len(columns))})')
                    continue
                if line == "\\.":
                    conn.executemany(insert, batch)
                    table, batch = None, []
                    continue
                batch.append([None if field == "\\N" else fn(_unescape(field))
                              for fn, field in zip(convert, line.split("\t"), strict=True)])
        conn.commit()
        conn.execute("PRAGMA journal_mode=DELETE")
    finally:
        conn.close()
