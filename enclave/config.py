"""Where the enclave keeps its state, and how to reach its database and policies.

Everything is derived from three environment variables so that a test, a demo and a
production site can each point the same code at their own state:

- ``ENCLAVE_HOME``: the state directory (default ``./var``);
- ``ENCLAVE_DB_URL``: any SQLAlchemy URL (default: SQLite file ``$ENCLAVE_HOME/enclave.db``);
- ``ENCLAVE_POLICIES``: the directory of policy YAML files (default: the repository's
  ``policies/`` when run from a checkout, else ``./policies``);
- ``ENCLAVE_SWARM_REGISTRY``: on Docker Swarm, the registry (``host:port``) every node pulls
  workspace images from, by digest (``scripts/registry.sh``); unset, services name the
  image by its id, which only a node already holding that image can run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_REPO_POLICIES = Path(__file__).resolve().parent.parent / "policies"


@dataclass(frozen=True)
class Settings:
    """Resolved locations of the enclave's state; build with :meth:`from_env`."""

    home: Path
    db_url: str
    policies_dir: Path
    swarm_registry: str = ""

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        home = Path(env.get("ENCLAVE_HOME") or "var").expanduser().absolute()
        db_url = env.get("ENCLAVE_DB_URL") or f"sqlite:///{home / 'enclave.db'}"
        if env.get("ENCLAVE_POLICIES"):
            policies = Path(env["ENCLAVE_POLICIES"]).expanduser().absolute()
        elif _REPO_POLICIES.is_dir():
            policies = _REPO_POLICIES
        else:
            policies = Path("policies").absolute()
        return cls(home=home, db_url=db_url, policies_dir=policies,
                   swarm_registry=(env.get("ENCLAVE_SWARM_REGISTRY") or "").strip())

    # Every directory below is outside every container unless a spawner mounts
    # (a read-only view of) it explicitly.
    @property
    def catalog_dir(self) -> Path:
        """Immutable dataset versions (Parquet), never mounted into a container."""
        return self.home / "catalog"

    @property
    def views_dir(self) -> Path:
        """Per-project materialised views; the spawner mounts these read-only."""
        return self.home / "views"

    @property
    def workspaces_dir(self) -> Path:
        """Per-project shared workspaces (``<slug>/`` with ``outbox/``)."""
        return self.home / "workspaces"

    @property
    def quarantine_dir(self) -> Path:
        """Content-addressed store of submitted egress files."""
        return self.home / "quarantine"

    @property
    def export_dir(self) -> Path:
        """Released files and their signed release records."""
        return self.home / "export"

    @property
    def keys_dir(self) -> Path:
        """Secrets (pseudonym keys, signing keys); 0700, never mounted."""
        return self.home / "keys"

    @property
    def container_policies_dir(self) -> Path:
        """The copy of the site's policies that enclave.safe applies in workspace containers
        (``sandbox.POLICY_FILES``); its ``current/`` folder is mounted read-only into each."""
        return self.home / "container-policies"

    @property
    def is_sqlite(self) -> bool:
        return self.db_url.startswith("sqlite")

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite database file, or None for a server database or in-memory SQLite."""
        if not self.is_sqlite:
            return None
        path = self.db_url.split("///", 1)[1] if "///" in self.db_url else ""
        return Path(path) if path and path != ":memory:" else None
