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


class GdprArticle6(StrEnum):
    """The UK GDPR Article 6(1) lawful basis for processing (the register words each one)."""

    CONSENT = "consent"                            # (a)
    CONTRACT = "contract"                          # (b)
    LEGAL_OBLIGATION = "legal_obligation"          # (c)
    VITAL_INTERESTS = "vital_interests"            # (d)
    PUBLIC_TASK = "public_task"                    # (e)
    LEGITIMATE_INTERESTS = "legitimate_interests"  # (f)


class GdprArticle9(StrEnum):
    """The UK GDPR Article 9(2) condition for processing health data."""

    EXPLICIT_CONSENT = "explicit_consent"                        # (a)
    EMPLOYMENT = "employment"                                    # (b)
    VITAL_INTERESTS = "vital_interests"                          # (c)
    NOT_FOR_PROFIT_BODY = "not_for_profit_body"                  # (d)
    MADE_PUBLIC = "made_public"                                  # (e)
    LEGAL_CLAIMS = "legal_claims"                                # (f)
    SUBSTANTIAL_PUBLIC_INTEREST = "substantial_public_interest"  # (g)
    HEALTH_OR_SOCIAL_CARE = "health_or_social_care"              # (h)
    PUBLIC_HEALTH = "public_health"                              # (i)
    RESEARCH_AND_STATISTICS = "research_and_statistics"          # (j)


class ConfidentialityBasis(StrEnum):
    """Why using confidential patient information meets the common law duty of confidentiality."""

    CONSENT = "consent"                      # the patients agreed
    SECTION_251 = "section_251"              # s251 NHS Act 2006 support, on CAG advice
    LEGAL_REQUIREMENT = "legal_requirement"  # a statute or court order requires it
    NOT_CONFIDENTIAL = "not_confidential"    # de-identified: the duty does not apply
    PUBLIC_INTEREST = "public_interest"      # an overriding public interest


class ContainerEngine(StrEnum):
    """What runs the workspace containers (policies/containers.yaml ``engine``)."""

    DOCKER = "docker"  # one host's engine: containers on an --internal bridge network
    SWARM = "swarm"    # Docker Swarm: services on per-project --internal overlay networks


class LostNodeAction(StrEnum):
    """What becomes of a batch job whose node is lost while it runs
    (policies/containers.yaml ``job_lost_node``)."""

    FAIL = "fail"    # the run fails with the reason; its members submit it again
    RETRY = "retry"  # the run goes back to the queue, its partial outputs discarded
