"""Enumerations shared across capabilities (statuses, roles, verdicts)."""

from enum import StrEnum


class Role(StrEnum):
    """What a person may do in the enclave; a person may hold several."""

    RESEARCHER = "researcher"
    ADMIN = "admin"
    REVIEWER = "reviewer"


class ProjectStatus(StrEnum):
    PROPOSED = "proposed"
    APPROVED = "approved"
    REJECTED = "rejected"
    ACTIVE = "active"
    SUSPENDED = "suspended"
    CLOSED = "closed"


class EgressStatus(StrEnum):
    DRAFT = "draft"
    SUBMITTED = "submitted"
    IN_REVIEW = "in_review"
    CHANGES_REQUESTED = "changes_requested"
    APPROVED = "approved"
    REJECTED = "rejected"
    RELEASED = "released"
    WITHDRAWN = "withdrawn"


class ReviewDecision(StrEnum):
    APPROVE = "approve"
    REQUEST_CHANGES = "request_changes"
    REJECT = "reject"


class IncidentKind(StrEnum):
    """Why an incident was opened (enclave.incidents)."""

    # The egress meter saw a server send more to the browser than its tier allows.
    EGRESS_VOLUME = "egress_volume"
    # Files with the same sha256 as a revoked view's were found in a workspace.
    REVOKED_VIEW_COPY = "revoked_view_copy"


class IncidentStatus(StrEnum):
    OPEN = "open"
    CLEARED = "cleared"
