"""The egress policy (``policies/egress.yaml``) and the bundle of settings services need."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field

from enclave.config import Settings
from enclave.disclosure.differencing.policy import DifferencingPolicy
from enclave.disclosure.policy import DisclosurePolicy
from enclave.policy import PolicyContext, StrictModel, TierName, load_policy_file, policy_digest
from enclave.sandbox import Size


class Reviews(StrictModel):
    """How many independent reviewers must agree on every file, per project tier."""

    default: int = Field(2, ge=1, le=9)
    # Every key must be a tier of tiers.yaml: a misspelt tier would silently get the default.
    per_tier: dict[TierName, int] = Field(default_factory=dict)

    def required_for(self, tier: str) -> int:
        """Reviews needed for a project of ``tier`` (the default for a tier of tiers.yaml
        that is not listed)."""
        return max(1, self.per_tier.get(tier, self.default))


class Limits(StrictModel):
    """What one request may carry."""

    max_file_bytes: int = Field(50 * 1024 * 1024, ge=1)
    max_files: int = Field(100, ge=1)


class LogNotifier(StrictModel):
    """Append one JSON line per state change to a file (relative paths are under ENCLAVE_HOME)."""

    kind: Literal["log"]
    path: str = "egress-notifications.log"


class SmtpNotifier(StrictModel):
    """Send a plain e-mail per state change."""

    kind: Literal["smtp"]
    host: str
    port: int = Field(25, ge=1, le=65535)
    sender: str
    # Fixed recipients (e.g. the output checkers' list) ...
    to: tuple[str, ...] = ()
    # ... and, when set, the people concerned as <user name>@<user_domain>.
    user_domain: str | None = None
    timeout_seconds: float = Field(10, gt=0, le=120)


class WebhookNotifier(StrictModel):
    """POST the event as JSON to a URL inside the site's network."""

    kind: Literal["webhook"]
    url: str = Field(pattern=r"^https?://")
    timeout_seconds: float = Field(10, gt=0, le=120)


class EvidencePolicy(StrictModel):
    """How a table's evidence is re-run before it is trusted (``enclave.egress.replay``)."""

    # Off: no evidence is trusted and every table is checked as a plain file.
    replay: bool = True
    timeout_seconds: int = Field(120, ge=1, le=3600)
    mem_limit: Size = "2g"
    max_output_bytes: int = Field(32 * 1024 * 1024, ge=1024)


Notifier = Annotated[LogNotifier | SmtpNotifier | WebhookNotifier, Field(discriminator="kind")]


class EgressPolicy(StrictModel):
    """Reviews per tier, limits on requests, and who hears about state changes."""

    version: str = Field("2026.1", min_length=1)
    reviews: Reviews = Reviews()
    limits: Limits = Limits()
    evidence: EvidencePolicy = EvidencePolicy()
    notifiers: tuple[Notifier, ...] = ()


@dataclass(frozen=True)
class EgressEnv:
    """Everything the egress services need besides the session: paths and policies."""

    settings: Settings
    policy: EgressPolicy
    disclosure: DisclosurePolicy
    # sha256 of the disclosure policy file applied.
    disclosure_digest: str | None
    # Re-runs evidence (enclave.egress.replay.Replayer); None: the site's, made when needed.
    replayer: Any = None
    # policies/differencing.yaml; None (an env built by hand): the model's defaults.
    differencing: DifferencingPolicy | None = None

    @classmethod
    def load(cls, settings: Settings) -> EgressEnv:
        """Read ``egress.yaml`` and ``disclosure.yaml`` from the settings' policy directory
        through the strict loader: a missing file is an error naming it (no built-in
        defaults), and the tiers egress.yaml names are checked against tiers.yaml."""
        context = PolicyContext(settings.policies_dir)
        policy = load_policy_file(settings.policies_dir / "egress.yaml", EgressPolicy, context=context)
        disclosure_file = settings.policies_dir / "disclosure.yaml"
        disclosure = load_policy_file(disclosure_file, DisclosurePolicy, context=context)
        differencing = load_policy_file(settings.policies_dir / "differencing.yaml", DifferencingPolicy, context=context)
        return cls(settings=settings, policy=policy, disclosure=disclosure,
                   disclosure_digest=policy_digest(disclosure_file), differencing=differencing)

    def log_path(self, notifier: LogNotifier) -> Path:
        path = Path(notifier.path)
        return path if path.is_absolute() else self.settings.home / path
