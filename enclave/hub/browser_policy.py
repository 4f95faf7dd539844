"""The browser channel's policy (``policies/browser.yaml``), per security tier.

What a project server may send to a researcher's browser: which files the contents API
returns and how large (``contents``), how fast and how large kernel output may be
(``kernel``), whether terminals exist (``terminals``), and the egress meter outside the
container (``meter``). The hub passes a tier's ``contents``/``kernel``/``terminals`` into
the container at start (:meth:`TierBrowserPolicy.server_args` and
:meth:`TierBrowserPolicy.server_environment`); the in-image extension
``enclave.hub.contents_guard`` reads them back with :func:`from_environment`.

This module is imported inside the notebook image too, so it needs only pydantic and the
strict loader.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from enclave.errors import PolicyError
from enclave.policy import StrictModel, TierName, load_policy_file

# The environment variable that carries a tier's settings into the container.
ENV_VAR = "ENCLAVE_BROWSER_POLICY"

MiB = 1024 * 1024
# Read-only in the notebook image (images/notebook/Dockerfile); the runtime dir is on the
# home tmpfs.
IMAGE_CONFIG_DIR = "/opt/env/etc/jupyter"
IMAGE_DATA_DIR = "/opt/env/share/jupyter"
RUNTIME_DIR = "/home/jovyan/.local/share/jupyter/runtime"
# JupyterLab's settings and layout: writable, on the home tmpfs (lost at stop).
LAB_STATE_DIR = "/home/jovyan/.local/share/jupyter/lab-state"


class ContentsLimits(StrictModel):
    """What JupyterLab's contents API may return and accept."""

    max_text_bytes: int = Field(ge=1024, le=64 * MiB, description="Largest notebook or text file returned as content")
    max_upload_bytes: int = Field(ge=0, le=16 * 1024 * MiB, description="Largest upload, all chunks counted")


class KernelLimits(StrictModel):
    """Kernel output limits applied by the notebook server (not the kernel)."""

    iopub_data_rate_limit: float = Field(gt=0, description="Bytes per second of output, averaged over the window")
    iopub_msg_rate_limit: float = Field(gt=0, description="Output messages per second, averaged over the window")
    rate_limit_window: float = Field(gt=0, le=60, description="Seconds the rates are averaged over")
    max_output_bytes: int = Field(ge=1024, le=64 * MiB, description="Largest single output message")

    @model_validator(mode="after")
    def _one_message_fits_the_window(self) -> KernelLimits:
        # Otherwise a message under max_output_bytes could never be sent.
        if self.max_output_bytes > self.iopub_data_rate_limit * self.rate_limit_window:
            raise ValueError("max_output_bytes must be at most iopub_data_rate_limit * rate_limit_window")
        return self


class MeterLimits(StrictModel):
    """The egress meter outside the container (enforced by the meter, not the server)."""

    window_seconds: int = Field(ge=1, le=7 * 24 * 3600)
    max_bytes_per_window: int = Field(ge=1)
    suspend_user: bool
    disable_after_incidents: int = Field(ge=0, description="Disable the account at this many incidents; 0 never")


class InServerSettings(StrictModel):
    """The part of a tier's settings that the notebook server itself applies."""

    contents: ContentsLimits
    kernel: KernelLimits
    terminals: bool


class TierBrowserPolicy(InServerSettings):
    """One tier's browser channel."""

    meter: MeterLimits

    def in_server(self) -> InServerSettings:
        """What the server in the container needs (the meter stays outside)."""
        return InServerSettings(contents=self.contents, kernel=self.kernel, terminals=self.terminals)

    def server_environment(self) -> dict[str, str]:
        """The container environment of a project server: its in-server settings, and
        Jupyter's config and data directories on the image's read-only filesystem, so
        the server reads no config, kernel spec or Lab extension that code in the
        container could have written (its runtime files, notebook-trust secret and
        JupyterLab's settings and layout are on the home tmpfs; see server_args)."""
        return {
            ENV_VAR: self.in_server().model_dump_json(),
            "JUPYTER_CONFIG_DIR": IMAGE_CONFIG_DIR,
            "JUPYTER_DATA_DIR": IMAGE_DATA_DIR,
            "JUPYTER_RUNTIME_DIR": RUNTIME_DIR,
            "PYTHONNOUSERSITE": "1",
        }

    def server_args(self) -> list[str]:
        """Command-line options of jupyter_server for this tier. Command-line options take
        precedence over every config file, so a file written in the container cannot
        change them at a restart."""
        body_limit = self.contents.max_upload_bytes * 4 // 3 + MiB  # base64 and JSON around an upload
        return [
            "--ServerApp.contents_manager_class=enclave.hub.contents_guard.GuardedContentsManager",
            "--ServerApp.kernel_websocket_connection_class="
            "enclave.hub.output_guard.BoundedKernelWebsocketConnection",
            "--ServerApp.reraise_server_extension_failures=True",
            f"--ServerApp.terminals_enabled={self.terminals}",
            f"--ServerApp.max_body_size={body_limit}",
            f"--ServerApp.max_buffer_size={body_limit}",
            f"--NotebookNotary.data_dir={RUNTIME_DIR}",
            f"--LabApp.user_settings_dir={LAB_STATE_DIR}/user-settings",
            f"--LabApp.workspaces_dir={LAB_STATE_DIR}/workspaces",
            f"--ZMQChannelsWebsocketConnection.iopub_data_rate_limit={self.kernel.iopub_data_rate_limit}",
            f"--ZMQChannelsWebsocketConnection.iopub_msg_rate_limit={self.kernel.iopub_msg_rate_limit}",
            f"--ZMQChannelsWebsocketConnection.rate_limit_window={self.kernel.rate_limit_window}",
        ]


class BrowserPolicy(StrictModel):
    """policies/browser.yaml: the browser channel of every tier."""

    version: str = Field(min_length=1)
    tiers: dict[TierName, TierBrowserPolicy] = Field(min_length=1)

    def for_tier(self, tier: str) -> TierBrowserPolicy:
        """The settings of ``tier``; an unknown tier is refused (fail closed)."""
        try:
            return self.tiers[tier]
        except KeyError:
            raise PolicyError(
                f"browser.yaml has no settings for tier {tier!r}; add the tier to policies/browser.yaml"
            ) from None


class _TierNames(BaseModel):
    """Just the names of tiers.yaml (its own model, enclave.projects.tiers.TierPolicy,
    validates the rest of that file)."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    tiers: dict[str, object]

    @model_validator(mode="after")
    def _nonempty(self) -> _TierNames:
        if not self.tiers:
            raise ValueError("no tiers defined")
        return self


def check_tiers_match(policy: BrowserPolicy, tier_names: set[str], path: Path | str = "browser.yaml") -> None:
    """Every tier of tiers.yaml has browser settings, and browser.yaml names no other."""
    missing = sorted(tier_names - set(policy.tiers))
    if missing:
        raise PolicyError(f"{path}: tier {missing[0]!r} of tiers.yaml has no browser settings; add it under tiers:")
    extra = sorted(set(policy.tiers) - tier_names)
    if extra:
        raise PolicyError(f"{path}: tier {extra[0]!r} is not a tier of tiers.yaml; remove it or fix its spelling")


def load_browser_policy(policies_dir: Path | str) -> BrowserPolicy:
    """Read ``browser.yaml`` from the policy directory, strictly, and check that its tiers
    are exactly those of ``tiers.yaml``. Raises PolicyError with one line on any problem."""
    directory = Path(policies_dir)
    policy = load_policy_file(directory / "browser.yaml", BrowserPolicy)
    names = load_policy_file(directory / "tiers.yaml", _TierNames)
    check_tiers_match(policy, set(names.tiers), directory / "browser.yaml")
    return policy


def from_environment(environ: Mapping[str, str] | None = None) -> InServerSettings:
    """The in-server settings the hub passed into the container. Missing or bad settings
    raise PolicyError: the server must not start without its limits."""
    env = os.environ if environ is None else environ
    raw = env.get(ENV_VAR)
    if not raw:
        raise PolicyError(f"{ENV_VAR} is not set: start this server from the enclave's hub")
    try:
        return InServerSettings.model_validate(json.loads(raw))
    except (ValueError, ValidationError) as exc:
        first = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
        raise PolicyError(f"{ENV_VAR} is not valid ({first}); start this server from the enclave's hub") from None
