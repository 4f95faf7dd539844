"""Loading policy files (commented YAML in ``policies/``) into validated models.

Each capability owns the pydantic model of its own policy file; this module only knows
how to read one file strictly and how to assemble the whole set. An unknown key or a bad
value stops start-up with one line naming the file, the key and the problem.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from enclave.errors import PolicyError

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """Base for policy models: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _describe(error: dict) -> str:
    key = ".".join(str(part) for part in error["loc"]) or "(top level)"
    if error["type"] == "extra_forbidden":
        return f"{key}: unknown key (check its spelling against the commented defaults)"
    if error["type"] == "missing":
        return f"{key}: required key is missing"
    return f"{key}: {error['msg']} (got {error.get('input')!r})"


def load_policy_file(path: Path, model: type[M]) -> M:
    """Read one policy YAML file into ``model``; raise PolicyError on any problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PolicyError(f"{path}: policy file is missing; restore it from the repository's policies/") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"{path}: cannot be read ({exc}); fix its permissions or encoding") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "somewhere"
        raise PolicyError(f"{path}: not valid YAML at {where}; fix the indentation or quoting there") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise PolicyError(f"{path}: (top level): expected a mapping of keys to values")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        raise PolicyError(f"{path}: {_describe(errors[0])}{more}") from None


def policy_digest(path: Path) -> str:
    """The sha256 of a policy file's bytes: which exact policy was applied."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# Policy file name -> "module:Model". Each capability owns its model; the modules are
# imported only when the whole set is loaded, so the researcher library (which reads
# only disclosure.yaml) needs none of the others.
POLICY_FILES: dict[str, str] = {
    "tiers.yaml": "enclave.projects.tiers:TierPolicy",
    "disclosure.yaml": "enclave.disclosure.policy:DisclosurePolicy",
    "containers.yaml": "enclave.sandbox:ContainerPolicy",
    "egress.yaml": "enclave.egress.policy:EgressPolicy",
    "browser.yaml": "enclave.hub.browser_policy:BrowserPolicy",
}


class Policies:
    """Every policy file of a directory, validated; attributes named by file stem."""

    def __init__(self, directory: Path, models: dict[str, BaseModel]) -> None:
        self.directory = directory
        self._models = models

    def __getattr__(self, name: str) -> BaseModel:
        try:
            return self._models[name]
        except KeyError:
            raise AttributeError(name) from None

    def versions(self) -> dict[str, str]:
        """Each file's sha256: which exact policy a decision was taken under."""
        return {f"{stem}.yaml": policy_digest(self.directory / f"{stem}.yaml") for stem in self._models}


def load_policies(directory: Path) -> Policies:
    """Load and validate every policy file; unknown or missing files are errors."""
    import importlib

    directory = Path(directory)
    if not directory.is_dir():
        raise PolicyError(f"{directory}: policy directory not found; set ENCLAVE_POLICIES or restore policies/")
    present = {p.name for p in directory.glob("*.y*ml")}
    unknown = sorted(present - set(POLICY_FILES))
    if unknown:
        raise PolicyError(
            f"{directory / unknown[0]}: unknown policy file; expected only {', '.join(sorted(POLICY_FILES))}"
        )
    models: dict[str, BaseModel] = {}
    for filename, target in POLICY_FILES.items():
        module_name, _, class_name = target.partition(":")
        model = getattr(importlib.import_module(module_name), class_name)
        models[filename.rsplit(".", 1)[0]] = load_policy_file(directory / filename, model)
    return Policies(directory, models)
