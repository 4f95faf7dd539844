"""Running the disclosure checker on quarantined files.

The checker (``enclave.disclosure.check_files``) decides by file name and content, so each
quarantined object is shown to it under its outbox name through a hard link in a private
scratch folder inside the quarantine. Fail closed: if the checker is missing or breaks on
a file, that file's verdict is ``review`` with a finding saying why, never ``pass``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

from enclave.config import Settings
from enclave.disclosure.evidence import sidecar_path
from enclave.disclosure.policy import DisclosurePolicy
from enclave.disclosure.verdict import Verdict, worst


def _finding(rule: str, status: Verdict, message: str) -> dict[str, Any]:
    return {"rule": rule, "status": str(status), "message": message, "locations": []}


def _as_dict(finding: Any) -> dict[str, Any]:
    if hasattr(finding, "to_dict"):
        return dict(finding.to_dict())
    return _finding("checker", Verdict.REVIEW, str(finding))


def check_objects(
    settings: Settings, policy: DisclosurePolicy, objects: dict[str, Path], evidence: dict[str, Path] | None = None
) -> dict[str, dict[str, Any]]:
    """Check each ``relpath -> quarantined object``; return ``relpath -> {status, findings}``.

    ``evidence`` maps a table's relpath to its quarantined evidence sidecar (written by the
    safe-statistics library), which the checker reads from beside the table.
    """
    evidence = evidence or {}
    results: dict[str, dict[str, Any]] = {}
    if not objects:
        return results
    scratch_root = settings.quarantine_dir / "tmp"
    scratch_root.mkdir(parents=True, exist_ok=True, mode=0o700)
    scratch = Path(tempfile.mkdtemp(dir=scratch_root, prefix="check-"))
    try:
        shown: dict[Path, str] = {}
        for i, (relpath, obj) in enumerate(sorted(objects.items())):
            # One folder per file keeps names unique while the checker still sees the real name.
            folder = scratch / str(i)
            folder.mkdir()
            link = folder / PurePosixPath(relpath).name
            os.link(obj, link)
            if relpath in evidence:
                os.link(evidence[relpath], sidecar_path(link))
            shown[link] = relpath
        try:
            from enclave.disclosure import check_files  # type: ignore[attr-defined]
        except ImportError:
            for relpath in objects:
                results[relpath] = {"status": str(Verdict.REVIEW), "findings": [_finding(
                    "checker", Verdict.REVIEW, "the automated output checker is not installed: a reviewer must check this file by hand")]}
            return results
        for link, relpath in shown.items():
            try:
                report = check_files([link], policy)
                file_reports = list(report.files)
                findings = [_as_dict(f) for fr in file_reports for f in fr.findings]
                status = worst([Verdict(str(fr.status)) for fr in file_reports] + [Verdict(str(report.status))])
            except Exception as exc:  # noqa: BLE001 - a broken checker must not pass a file
                status = Verdict.REVIEW
                findings = [_finding("checker", Verdict.REVIEW,
                                     f"the automated checker failed on this file ({type(exc).__name__}: {exc}); check it by hand")]
            results[relpath] = {"status": str(status), "findings": findings}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return results
