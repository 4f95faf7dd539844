"""Catalogue service: datasets, versions, grants and their views, and the opt-out registry.

Every function takes the session and the acting user, checks permission, raises
``enclave.errors`` types and appends an audit event in the caller's transaction; none
commits. Files are staged beside their final place and renamed in only after the rows
are flushed, so a refused ingest or grant leaves neither files nor rows.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

from rich.progress import Progress
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from enclave.audit import append_event
from enclave.catalog import fhir
from enclave.catalog.dictionary import DataDictionary, load_dictionary, parse_dictionary
from enclave.catalog.ingest import IngestLimits, build_version
from enclave.catalog.optouts import normalise_all, read_optout_file
from enclave.catalog.pseudonym import project_key
from enclave.catalog.readers import SourceFormat, detect_format
from enclave.catalog.storage import publish, read_manifest, remove_tree, staging_dir, verify_dir
from enclave.catalog.views import materialise_view, resolve_view, view_spec_from_grant
from enclave.clock import utcnow
from enclave.config import Settings
from enclave.db.models import Dataset, DatasetVersion, Grant, GrantView, OptOut, Project, User
from enclave.enums import ProjectStatus
from enclave.errors import Conflict, EnclaveError, InvalidInput, NotFound
from enclave.permissions import check_admin, check_not_member
from enclave.projects.service import get_project

DATASET_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{1,62}$")
GRANTABLE = {ProjectStatus.APPROVED, ProjectStatus.ACTIVE}


class CatalogAction:
    """Audit actions of the catalogue."""

    INGEST = "dataset.ingest"
    GRANT_ADD = "grant.add"
    GRANT_REVOKE = "grant.revoke"
    GRANT_EXPIRE = "grant.expire"
    OPTOUT_ADD = "optout.add"


# --- datasets and versions ---------------------------------------------------------------


def get_dataset(session: Session, name: str) -> Dataset:
    dataset = session.scalars(select(Dataset).where(Dataset.name == name)).one_or_none()
    if dataset is None:
        raise NotFound(f"no dataset {name!r}: see 'enclave dataset list'", field="dataset",
                       web=f"there is no dataset {name!r} in the catalogue: check its name in the catalogue")
    return dataset


def get_version(session: Session, name: str, version: int | None = None) -> DatasetVersion:
    """A dataset's version ``version``, or its latest when None."""
    dataset = get_dataset(session, name)
    if not dataset.versions:
        raise NotFound(f"dataset {name} has no versions: ingest one with 'enclave dataset ingest'", field="version",
                       web=f"dataset {name} has no versions yet: a data manager must ingest one first")
    if version is None:
        return dataset.versions[-1]
    for v in dataset.versions:
        if v.version == version:
            return v
    raise NotFound(f"dataset {name} has no version {version}: see 'enclave dataset versions {name}'", field="version",
                   web=f"dataset {name} has no version {version}: choose one of the versions listed")


def version_dictionary(version: DatasetVersion) -> DataDictionary:
    """The data dictionary a version was ingested with."""
    return parse_dictionary(version.schema_json, f"{version.dataset.name} v{version.version}")


def resolve_dictionary(source: Path, fmt: SourceFormat, dictionary: Path | None) -> DataDictionary:
    """``--dictionary``, else a ``dictionary.yaml`` beside the data, else (FHIR) the built-in one."""
    if dictionary is not None:
        return load_dictionary(dictionary)
    candidates = [source / "dictionary.yaml"] if source.is_dir() else [source.with_suffix(".dictionary.yaml")]
    for candidate in candidates:
        if candidate.is_file():
            return load_dictionary(candidate)
    if fmt is SourceFormat.FHIR:
        return fhir.builtin_dictionary()
    raise InvalidInput(
        f"no data dictionary for {source}: give --dictionary DICT.yaml (it declares every column's "
        "type and identifier kind; see docs/datasets.md)"
    )


def ingest_dataset(
    session: Session,
    actor: User,
    settings: Settings,
    source: Path,
    name: str,
    *,
    dictionary: Path | None = None,
    fmt: SourceFormat | None = None,
    description: str | None = None,
    limits: IngestLimits = IngestLimits(),
    progress: Progress | None = None,
) -> DatasetVersion:
    """Validate ``source`` and store it as the next immutable version of dataset ``name``."""
    check_admin(actor, "ingest datasets")
    if not DATASET_NAME_RE.match(name or ""):
        raise InvalidInput(f"dataset name {name!r} is not allowed: use 2-63 lower-case letters, digits, '_' or '-'")
    source = source.expanduser().absolute()
    fmt = fmt or detect_format(source)
    data_dictionary = resolve_dictionary(source, fmt, dictionary)
    dataset = session.scalars(select(Dataset).where(Dataset.name == name)).one_or_none()
    if dataset is None:
        dataset = Dataset(name=name, description=description or data_dictionary.description, tier=data_dictionary.tier)
        session.add(dataset)
        session.flush()
    number = (session.scalar(select(func.max(DatasetVersion.version)).where(DatasetVersion.dataset_id == dataset.id)) or 0) + 1
    final = settings.catalog_dir / name / f"v{number}"
    if final.exists():
        # Left by an ingest whose transaction failed after the rename: no row refers to it.
        remove_tree(final)
    stage = staging_dir(final)
    try:
        built = build_version(
            source, data_dictionary, stage, fmt=fmt, optouts=optout_identifiers(session), limits=limits, progress=progress
        )
        version = DatasetVersion(
            dataset=dataset, version=number, description=description or data_dictionary.description,
            tier=data_dictionary.tier, storage_path=str(final), sha256=built.sha256, row_count=built.row_count,
            schema_json=data_dictionary.to_json(), stats_json=built.stats, created_by_id=actor.id,
        )
        session.add(version)
        dataset.tier = data_dictionary.tier
        session.flush()
        append_event(
            session, actor, CatalogAction.INGEST, target=f"{name} v{number}",
            details={"format": fmt.value, "sha256": built.sha256, "rows": built.row_count,
                     "tables": {t: r.rows for t, r in built.tables.items()},
                     "excluded_rows": built.excluded_rows, "excluded_patients": built.excluded_patients},
        )
        publish(stage, final)
    except BaseException:
        remove_tree(stage)
        raise
    return version


def list_datasets(session: Session, actor: User) -> list[Dataset]:
    """Every dataset in the catalogue (metadata only), by name."""
    return list(session.scalars(select(Dataset).order_by(Dataset.name)))


def show_dataset(session: Session, actor: User, name: str) -> Dataset:
    """One dataset with its versions."""
    return get_dataset(session, name)


def list_versions(session: Session, actor: User, name: str) -> list[DatasetVersion]:
    """A dataset's versions, oldest first."""
    return list(get_dataset(session, name).versions)


def verify_version(session: Session, actor: User, name: str, version: int | None = None) -> DatasetVersion:
    """Recompute a version's checksums; raise ChecksumMismatch if any file changed."""
    check_admin(actor, "verify dataset versions")
    v = get_version(session, name, version)
    verify_dir(Path(v.storage_path), v.sha256)
    return v


# --- grants and views --------------------------------------------------------------------


def _view_dir(settings: Settings, project: Project, grant: Grant, dataset: str) -> Path:
    return settings.views_dir / project.slug / str(grant.id) / dataset


def add_grant(
    session: Session,
    actor: User,
    settings: Settings,
    project_slug: str,
    dataset_name: str,
    *,
    expires: dt.date,
    version: int | None = None,
    columns: list[str] | None = None,
    where: list[str] | None = None,
    progress: Progress | None = None,
) -> Grant:
    """Grant a project the approved columns and rows of a version and materialise its view.

    The view expires at the start of the day after ``expires`` (UTC). Columns default to
    every column but direct identifiers.
    """
    check_admin(actor, "grant data to projects")
    project = get_project(session, project_slug)
    check_not_member(actor, project, "grant data to this project")
    if project.status not in GRANTABLE:
        raise InvalidInput(f"project {project.slug} is {project.status.value}: only approved or active projects get data",
                           field="project")
    if expires <= utcnow().date():
        raise InvalidInput(f"expiry {expires} is not in the future: give --expires YYYY-MM-DD after today",
                           field="expires", web=f"the last day of access ({expires}) must be after today")
    if expires > project.end_date:
        raise InvalidInput(f"expiry {expires} is after the project's end date {project.end_date}: give an earlier --expires",
                           field="expires", web=f"the last day of access ({expires}) is after the project ends "
                                                f"({project.end_date}): choose that day or an earlier one")
    dv = get_version(session, dataset_name, version)
    live = [g for g in live_grants(session, project) if g.dataset_version.dataset_id == dv.dataset_id]
    if live:
        raise Conflict(
            f"project {project.slug} already has grant {live[0].id} on {dataset_name}: revoke it first "
            f"('enclave grant revoke {live[0].id}')", field="project",
            web=f"project {project.slug} already has a live grant of {dataset_name}: revoke it below first",
        )
    dictionary = version_dictionary(dv)
    spec = resolve_view(dictionary, columns, list(where or []))
    if not spec.columns:
        raise InvalidInput("the grant approves no columns: give --columns table.column,...", field="columns",
                           web="choose at least one column: a grant approves only the columns ticked")
    grant = Grant(
        project_id=project.id, dataset_version_id=dv.id, granted_by_id=actor.id,
        expires_at=dt.datetime.combine(expires + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC),
        columns_json=spec.column_list, row_filter=spec.filter_text,
    )
    session.add(grant)
    session.flush()
    final = _view_dir(settings, project, grant, dataset_name)
    if final.exists():
        remove_tree(final)  # left by a grant whose transaction failed: no row refers to it
    result = materialise_view(
        Path(dv.storage_path), dv.sha256, dictionary, spec, project_key(settings.keys_dir, project.slug),
        optout_identifiers(session), final, progress=progress,
    )
    try:
        grant.view_path = str(result.path)
        session.add(GrantView(grant_id=grant.id, sha256=result.sha256, rows_json=result.rows, excluded_rows=result.excluded_rows))
        session.flush()
        append_event(
            session, actor, CatalogAction.GRANT_ADD, project=project, target=f"grant {grant.id}",
            details={"dataset": dataset_name, "version": dv.version, "columns": spec.column_list,
                     "filters": spec.filters, "expires": expires.isoformat(), "rows": result.rows,
                     "excluded_rows": result.excluded_rows, "view_sha256": result.sha256},
        )
    except BaseException:
        remove_tree(final)
        raise
    return grant


def get_grant(session: Session, grant_id: int) -> Grant:
    grant = session.get(Grant, grant_id)
    if grant is None:
        raise NotFound(f"no grant {grant_id}: see 'enclave grant list'", web=f"there is no grant {grant_id}")
    return grant


def revoke_grant(session: Session, actor: User, grant_id: int, reason: str = "") -> Grant:
    """Revoke a grant and delete its view at once."""
    check_admin(actor, "revoke grants")
    grant = get_grant(session, grant_id)
    if grant.revoked_at is not None:
        raise Conflict(f"grant {grant_id} was already revoked on {grant.revoked_at:%Y-%m-%d}")
    grant.revoked_at, grant.revoked_by_id = utcnow(), actor.id
    files = view_files(grant)
    _remove_view(session, grant)
    append_event(session, actor, CatalogAction.GRANT_REVOKE, project=grant.project, target=f"grant {grant.id}",
                 details={"reason": reason, "dataset": grant.dataset_version.dataset.name, "files": files})
    return grant


def expire_grants(session: Session, actor: User) -> list[Grant]:
    """Delete the views of grants past their expiry (run daily); returns those grants."""
    check_admin(actor, "expire grants")
    now = utcnow()
    expired = session.scalars(
        select(Grant).where(Grant.revoked_at.is_(None), Grant.expires_at <= now, Grant.view_path.is_not(None))
    ).all()
    for grant in expired:
        files = view_files(grant)
        _remove_view(session, grant)
        append_event(session, actor, CatalogAction.GRANT_EXPIRE, project=grant.project, target=f"grant {grant.id}",
                     details={"files": files})
    return list(expired)


def view_files(grant: Grant) -> dict[str, dict[str, object]]:
    """Each file of the grant's view with its sha256 (from the view's manifest) and size:
    what a revoke or expiry records, so that copies in the workspace can still be
    recognised once the view is gone (enclave.hub.revoked_copies)."""
    if not grant.view_path:
        return {}
    directory = Path(grant.view_path)
    try:
        recorded = read_manifest(directory).get("files", {})
    except EnclaveError:
        return {}
    files: dict[str, dict[str, object]] = {}
    for name, digest in sorted(recorded.items()):
        try:
            files[name] = {"sha256": digest, "size": (directory / name).stat().st_size}
        except OSError:
            continue
    return files


def _remove_view(session: Session, grant: Grant) -> None:
    path = grant.view_path
    grant.view_path = None
    record = session.get(GrantView, grant.id)
    if record is not None:
        record.removed_at = utcnow()
    session.flush()
    if path:
        remove_tree(Path(path))
        # views/<project>/<grant id>/<dataset>: drop the grant's directory too once empty.
        grant_dir = Path(path).parent
        if grant_dir.is_dir() and not any(grant_dir.iterdir()):
            grant_dir.rmdir()


def list_grants(session: Session, actor: User, project_slug: str | None = None) -> list[Grant]:
    """Grants (all, or one project's), newest first."""
    check_admin(actor, "list grants")
    query = select(Grant).order_by(Grant.id.desc())
    if project_slug is not None:
        query = query.where(Grant.project_id == get_project(session, project_slug).id)
    return list(session.scalars(query))


def live_grants(session: Session, project: Project) -> list[Grant]:
    now = utcnow()
    grants = session.scalars(select(Grant).where(Grant.project_id == project.id, Grant.revoked_at.is_(None))).all()
    return [g for g in grants if g.is_live(now)]


def active_views(session: Session, project: Project) -> list[tuple[str, Path]]:
    """(dataset name, host path of its view) for each unexpired, unrevoked grant of ``project``.

    The spawner mounts each path read-only at ``/data/<dataset name>``. A view whose
    directory is missing is left out (fail closed), never replaced by the source; a
    project that is not approved or active (e.g. suspended) gets none.
    """
    if project.status not in GRANTABLE:
        return []
    out: list[tuple[str, Path]] = []
    for grant in live_grants(session, project):
        if grant.view_path and Path(grant.view_path).is_dir():
            out.append((grant.dataset_version.dataset.name, Path(grant.view_path)))
    return sorted(out)


@dataclass(frozen=True)
class GrantSummary:
    grant: Grant
    rows: dict[str, int]
    excluded_rows: int


def describe_grant(session: Session, actor: User, grant_id: int) -> GrantSummary:
    check_admin(actor, "look at grants")
    grant = get_grant(session, grant_id)
    record = session.get(GrantView, grant.id)
    return GrantSummary(grant, dict(record.rows_json) if record else {}, record.excluded_rows if record else 0)


def rematerialise_view(session: Session, actor: User, settings: Settings, grant_id: int) -> Grant:
    """Rewrite a live grant's view (e.g. after new opt-outs), same columns and rows."""
    check_admin(actor, "refresh views")
    grant = get_grant(session, grant_id)
    if not grant.is_live(utcnow()):
        raise InvalidInput(f"grant {grant_id} is revoked or expired: add a new grant instead")
    dv = grant.dataset_version
    spec = view_spec_from_grant(list(grant.columns_json or []), grant.row_filter)
    final = _view_dir(settings, grant.project, grant, dv.dataset.name)
    old = Path(grant.view_path) if grant.view_path else None
    fresh = final.with_name(final.name + ".new")
    remove_tree(fresh)
    result = materialise_view(
        Path(dv.storage_path), dv.sha256, version_dictionary(dv), spec,
        project_key(settings.keys_dir, grant.project.slug), optout_identifiers(session), fresh,
    )
    if old is not None:
        remove_tree(old)
    fresh.rename(final)
    grant.view_path = str(final)
    record = session.get(GrantView, grant.id) or GrantView(grant_id=grant.id)
    record.sha256, record.rows_json, record.excluded_rows = result.sha256, result.rows, result.excluded_rows
    record.materialised_at, record.removed_at = utcnow(), None
    session.add(record)
    session.flush()
    append_event(session, actor, CatalogAction.GRANT_ADD, project=grant.project, target=f"grant {grant.id}",
                 details={"refreshed": True, "rows": result.rows, "excluded_rows": result.excluded_rows})
    return grant


# --- opt-outs ----------------------------------------------------------------------------


def optout_identifiers(session: Session) -> list[str]:
    """Every opted-out identifier (for the catalogue's own filters; never shown)."""
    return list(session.scalars(select(OptOut.identifier).order_by(OptOut.identifier)))


def add_optouts(session: Session, actor: User, identifiers: list[str]) -> int:
    """Register opt-outs; returns how many were new. Only the count is audited."""
    check_admin(actor, "record opt-outs")
    values = normalise_all(identifiers)
    if not values:
        raise InvalidInput("no identifiers given: name at least one patient identifier")
    known = set(session.scalars(select(OptOut.identifier).where(OptOut.identifier.in_(values))))
    new = [v for v in values if v not in known]
    session.add_all(OptOut(identifier=v, added_by_id=actor.id) for v in new)
    session.flush()
    append_event(session, actor, CatalogAction.OPTOUT_ADD, details={"added": len(new), "already_registered": len(known)})
    return len(new)


def import_optouts(session: Session, actor: User, path: Path) -> int:
    """Register every identifier in a file (one per line); returns how many were new."""
    check_admin(actor, "record opt-outs")
    return add_optouts(session, actor, read_optout_file(path))


def count_optouts(session: Session, actor: User) -> int:
    check_admin(actor, "count opt-outs")
    return session.scalar(select(func.count()).select_from(OptOut)) or 0


def version_manifest(version: DatasetVersion) -> dict[str, object]:
    """The manifest a version was written with (files, checksums, opt-out counts)."""
    return read_manifest(Path(version.storage_path))

