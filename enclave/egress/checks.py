"""Running the disclosure checker on quarantined files.

The checker (``enclave.disclosure.check_files``) decides by file name and content, so each
quarantined object is shown to it under its outbox name through a hard link in a private
scratch folder inside the quarantine. Fail closed: if the checker is missing or breaks on
a file, that file's verdict is ``review`` with a finding saying why, never ``pass``.

A table's evidence sidecar is never shown to the checker. It goes to ``verify`` (the
replay of ``enclave.egress.replay``), and the checker receives an evidence only when the
replay reproduced it; every other file is checked as a plain file. Each result records
``evidence`` (``{"status": "reproduced" | "not_reproducible" | "absent", "reason": ...}``)
and, when there was a sidecar, an ``evidence`` finding saying so in words.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

from enclave.config import Settings
from enclave.disclosure.policy import DisclosurePolicy
from enclave.disclosure.verdict import Verdict, worst
from enclave.egress.replay import ABSENT, EvidenceOutcome, VerifyFile, refused


def _finding(rule: str, status: Verdict, message: str) -> dict[str, Any]:
    return {"rule": rule, "status": str(status), "message": message, "locations": []}


def _as_dict(finding: Any) -> dict[str, Any]:
    if hasattr(finding, "to_dict"):
        return dict(finding.to_dict())
    return _finding("checker", Verdict.REVIEW, str(finding))


def check_objects(
    settings: Settings, policy: DisclosurePolicy, objects: dict[str, Path], evidence: dict[str, Path] | None = None,
    verify: VerifyFile | None = None,
) -> dict[str, dict[str, Any]]:
    """Check each ``relpath -> quarantined object``; return ``relpath -> {status, findings, evidence}``.

    ``evidence`` maps a table's relpath to its quarantined evidence sidecar (written by the
    safe-statistics library); ``verify`` decides whether it is reproduced. Without
    ``verify`` no evidence is trusted.
    """
    evidence = evidence or {}
    outcomes: dict[str, EvidenceOutcome] = {}
    for relpath in objects:
        if relpath not in evidence:
            outcomes[relpath] = ABSENT
        elif verify is None:
            outcomes[relpath] = refused("no replay was run for this check")
        else:
            try:
                outcomes[relpath] = verify(relpath, objects[relpath], evidence[relpath])
            except Exception as exc:  # noqa: BLE001 - a broken replay must not make evidence trusted
                outcomes[relpath] = refused(f"the replay failed ({type(exc).__name__})")
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
            shown[link] = relpath
        try:
            from enclave.disclosure import check_files  # type: ignore[attr-defined]
        except ImportError:
            for relpath in objects:
                results[relpath] = {"status": str(Verdict.REVIEW), "evidence": outcomes[relpath].as_json(), "findings": [_finding(
                    "checker", Verdict.REVIEW, "the automated output checker is not installed: a reviewer must check this file by hand")]}
            return results
        for link, relpath in shown.items():
            outcome = outcomes[relpath]
            try:
                if outcome.evidence is not None:  # reproduced: the checker may rely on its figures
                    report = check_files([link], policy, evidence={link: outcome.evidence})
                else:
                    report = check_files([link], policy)
                file_reports = list(report.files)
                findings = [_as_dict(f) for fr in file_reports for f in fr.findings]
                status = worst([Verdict(str(fr.status)) for fr in file_reports] + [Verdict(str(report.status))])
            except Exception as exc:  # noqa: BLE001 - a broken checker must not pass a file
                status = Verdict.REVIEW
                findings = [_finding("checker", Verdict.REVIEW,
                                     f"the automated checker failed on this file ({type(exc).__name__}: {exc}); check it by hand")]
            note = outcome.finding()
            if note is not None:
                findings.insert(0, note)
                status = worst([status, Verdict(note["status"])])
            results[relpath] = {"status": str(status), "findings": findings, "evidence": outcome.as_json()}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return results
