"""Loading policy files (commented YAML in ``policies/``) into validated models.

Each capability owns the pydantic model of its own policy file; this module only knows
how to read one file strictly and how to assemble the whole set. An unknown key, a bad
value, a missing file or a reference to something another file does not define stops
start-up with one line naming the file, the key and the problem.

References between files are typed: a field holding a tier name is a :data:`TierName`
(``dict[TierName, int]`` for a per-tier map). When a file is loaded, every such value is
checked against the names ``tiers.yaml`` defines in the same directory
(:data:`REFERENCES` says which file defines each kind of name), so a new policy file
gets the check by using the type. ``tests/unit/foundation/test_policy.py`` fails when a
field of a registered policy model whose name mentions tiers does not use it.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError, ValidationInfo

from enclave.errors import PolicyError

M = TypeVar("M", bound=BaseModel)


class Reference:
    """Marks a string field as a name that another policy file defines (``kind``)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __repr__(self) -> str:
        return f"Reference({self.kind!r})"


def _names_of_tiers(model: Any) -> frozenset[str]:
    return frozenset(model.tiers)


# Kind of name -> (the file that defines the names, its model, the names it defines).
REFERENCES: dict[str, tuple[str, str, Callable[[Any], frozenset[str]]]] = {
    "tier": ("tiers.yaml", "enclave.projects.tiers:TierPolicy", _names_of_tiers),
}


class PolicyContext:
    """What references are checked against while one policy directory is loaded: the
    defining files are read (strictly) on first use, once."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._names: dict[str, frozenset[str]] = {}

    def names(self, kind: str) -> frozenset[str]:
        if kind not in self._names:
            filename, target, names_of = REFERENCES[kind]
            model = _model_class(target)
            self._names[kind] = names_of(load_policy_file(self.directory / filename, model, context=self))
        return self._names[kind]


def _check_reference(kind: str) -> Callable[[str, ValidationInfo], str]:
    def check(value: str, info: ValidationInfo) -> str:
        context = (info.context or {}).get("policies")
        if not isinstance(context, PolicyContext):
            return value  # built in code, not read from a policy directory: nothing to check against
        known = context.names(kind)
        if value not in known:
            filename = REFERENCES[kind][0]
            raise ValueError(f"{value!r} is not a {kind} of {filename} ({', '.join(sorted(known))}); "
                             f"fix its spelling or add it to {filename}")
        return value

    return check


# A tier name: must be one of the tiers of tiers.yaml in the same policy directory.
TierName = Annotated[str, Reference("tier"), AfterValidator(_check_reference("tier"))]


class StrictModel(BaseModel):
    """Base for policy models: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _describe(error: dict) -> str:
    # A dict key's own error is reported at "[key]": the key itself names the place.
    key = ".".join(str(part) for part in error["loc"] if part != "[key]") or "(top level)"
    if error["type"] == "extra_forbidden":
        return f"{key}: unknown key (check its spelling against the commented defaults)"
    if error["type"] == "missing":
        return f"{key}: required key is missing"
    if error["type"] == "value_error":
        return f"{key}: {error['msg'].removeprefix('Value error, ')}"
    return f"{key}: {error['msg']} (got {error.get('input')!r})"


def load_policy_file(path: Path, model: type[M], *, context: PolicyContext | None = None) -> M:
    """Read one policy YAML file into ``model``; raise PolicyError on any problem.

    References to other files' names (:data:`TierName` ...) are checked against the files
    of the same directory (or of ``context``, when the whole set is loaded)."""
    return parse_policy_bytes(path, read_policy_bytes(path), model, context=context)


def read_policy_bytes(path: Path) -> bytes:
    """The bytes of policy file ``path``; PolicyError (one line naming it) when it is
    missing or cannot be read."""
    path = Path(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise PolicyError(f"{path}: policy file is missing; restore it from the repository's policies/") from None
    except OSError as exc:
        raise PolicyError(f"{path}: cannot be read ({exc}); fix its permissions or encoding") from None


def parse_policy_bytes(path: Path, data: bytes, model: type[M], *, context: PolicyContext | None = None) -> M:
    """:func:`load_policy_file` of bytes already read from ``path`` (named in errors, and
    whose directory holds the files references are checked against): a caller that
    validates a policy and then uses its bytes (copies them, hashes them) uses exactly the
    bytes that were validated, not a second read that an edit could have changed."""
    path = Path(path)
    context = context or PolicyContext(path.parent)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError(f"{path}: cannot be read ({exc}); fix its permissions or encoding") from None
    try:
        content = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "somewhere"
        raise PolicyError(f"{path}: not valid YAML at {where}; fix the indentation or quoting there") from None
    if content is None:
        content = {}
    if not isinstance(content, dict):
        raise PolicyError(f"{path}: (top level): expected a mapping of keys to values")
    try:
        return model.model_validate(content, context={"policies": context})
    except ValidationError as exc:
        # A misspelt key is both unknown and missing: the unknown spelling is the one to fix.
        errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
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
    "retention.yaml": "enclave.projects.retention:RetentionPolicy",
    "differencing.yaml": "enclave.disclosure.differencing.policy:DifferencingPolicy",
    "service.yaml": "enclave.metrics:ServiceLevels",
    "register.yaml": "enclave.register.policy:RegisterPolicy",
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


def _model_class(target: str) -> type[BaseModel]:
    module_name, _, class_name = target.partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def load_policies(directory: Path) -> Policies:
    """Load and validate every policy file and the references between them; unknown or
    missing files are errors."""
    directory = Path(directory)
    if not directory.is_dir():
        raise PolicyError(f"{directory}: policy directory not found; set ENCLAVE_POLICIES or restore policies/")
    present = {p.name for p in directory.glob("*.y*ml")}
    unknown = sorted(present - set(POLICY_FILES))
    if unknown:
        raise PolicyError(
            f"{directory / unknown[0]}: unknown policy file; expected only {', '.join(sorted(POLICY_FILES))}"
        )
    context = PolicyContext(directory)
    models: dict[str, BaseModel] = {}
    for filename, target in POLICY_FILES.items():
        models[filename.rsplit(".", 1)[0]] = load_policy_file(directory / filename, _model_class(target),
                                                              context=context)
    return Policies(directory, models)


def load_policies_or_exit(directory: Path, component: str) -> Policies:
    """:func:`load_policies` for a component's start-up: on any problem, stop the process
    with one line naming the component, the file, the key and the problem."""
    try:
        return load_policies(directory)
    except PolicyError as exc:
        raise SystemExit(f"{component} cannot start: {exc}") from None
