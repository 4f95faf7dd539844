"""What the public register shows of a finished project's destruction record.

The record is signed (``enclave.projects.retention.destroy_project_data``) and the enclave
keeps it whole for the data custodians, with the name of whoever closed the project. The
register publishes who did it by role only, never a staff member's name:

- a record of format 2 names the closer by role and a salted commitment, so the signed
  record itself is published and anyone can verify it; the name and salt beside it (the
  custodians' part) are left out;
- a record of format 1 signed the name itself, so it cannot be published signed: the
  register gives its facts with the name replaced by the role, and no signature (the
  custodians' signed copy still verifies as it always did).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from enclave.projects.retention import EARLIER_FORMATS, RECORD_FORMAT

# Only administrators may close a project (enclave.projects.lifecycle), so a format-1
# record's closer, a person's name, is an administrator.
EARLIER_CLOSER_ROLE = "admin"
ROLE_WORDS = {"admin": "an administrator", "system": "the enclave", None: "nobody recorded"}
UNSIGNED_NOTE = ("This record was signed in an earlier format that named the person who closed the project; "
                 "it is published without that name (and the project's title) and therefore without its "
                 "signature. The data custodians hold the signed record.")


def _day(value: Any) -> str:
    try:
        return dt.datetime.fromisoformat(str(value)).date().isoformat()
    except ValueError:
        return "an unrecorded date"


def destruction_statement(record: dict[str, Any]) -> str:
    """One sentence: who closed the project (a role), under which policy and when its data
    were destroyed, e.g. "Closed by an administrator on 2026-03-01; its data were destroyed
    under the retention policy of tier tier2 (retention.yaml version 2026.1, 90 days) on
    2026-05-30."."""
    closer = record.get("closed_by")
    role = closer.get("role") if isinstance(closer, dict) else EARLIER_CLOSER_ROLE if closer else None
    who = ROLE_WORDS.get(role, f"a {role}")
    project = record.get("project") or {}
    policy = record.get("policy") or {}
    return (f"Closed by {who} on {_day(record.get('closed_at'))}; its data were destroyed under the retention "
            f"policy of tier {project.get('tier')} ({policy.get('file', 'retention.yaml')} version "
            f"{policy.get('version')}, {record.get('retention_days')} days) on {_day(record.get('destroyed_at'))}.")


def public_destruction_record(envelope: dict[str, Any]) -> dict[str, Any]:
    """What the register serves of a stored (custodians') destruction record: no name."""
    record = dict(envelope.get("record") or {})
    statement = destruction_statement(record)
    if record.get("format") == RECORD_FORMAT:
        return {"statement": statement, "record": record, "signature": envelope.get("signature")}
    if record.get("format") in EARLIER_FORMATS:
        if record.get("closed_by") is not None:
            record["closed_by"] = {"role": EARLIER_CLOSER_ROLE}
        # Its title may hold a name a researcher typed in (the register withholds those).
        record["project"] = {k: v for k, v in (record.get("project") or {}).items() if k != "title"}
    elif record.get("format") not in EARLIER_FORMATS:
        # A format this code does not know may name anyone anywhere: publish the sentence only.
        record = {"format": record.get("format")}
    return {"statement": statement, "record": record, "signature": None, "note": UNSIGNED_NOTE}
