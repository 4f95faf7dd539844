"""One owner for who may do what with egress requests (read from the code itself).

Every rule of who may act lives in ``enclave.egress.access``; the service, review,
release, queue and inbox modules, the web's egress pages and API and the CLI call its
checks and never test roles, authorship or membership themselves. The import graph of
``enclave.egress`` has no cycle.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from enclave.egress import access

ROOT = Path(__file__).resolve().parents[3]
CALLERS = [
    "enclave/egress/service.py", "enclave/egress/review.py", "enclave/egress/release.py",
    "enclave/egress/schemas.py", "enclave/egress/queues.py", "enclave/egress/inbox.py",
    "enclave/egress/votes.py", "enclave/egress/workflow.py",
    "enclave/web/egress_views.py", "enclave/web/pages/egress.py", "enclave/web/api/egress.py",
    "enclave/cli/egress.py", "enclave/egress/replay.py",
]
# What an inline permission test looks like: raising the error, comparing authors,
# testing membership or roles by hand.
INLINE = {
    "raises PermissionDenied": re.compile(r"raise\s+PermissionDenied"),
    "compares authors": re.compile(r"author_id\s*[!=]=|[!=]=\s*[\w.]*author_id"),
    "tests membership": re.compile(r"\bis_member\(|\bcheck_member\("),
    "tests roles": re.compile(r"\bcheck_role\(|\bactor\.roles\b|\bRole\.(REVIEWER|ADMIN|RESEARCHER)\b"),
    "compares the viewer with the author": re.compile(r"\.name\s*==\s*\w+\.author\b|\bauthor\s*==\s*\w+\.name"),
}
TEMPLATES = ["egress/request.html", "egress/list.html", "egress/confirm.html", "review/request.html",
             "review/queue.html", "inbox.html"]


@pytest.mark.parametrize("relpath", CALLERS)
def test_access_no_inline_permission_test_outside_the_access_module(relpath: str) -> None:
    text = (ROOT / relpath).read_text()
    found = [f"{what} on line {text[:m.start()].count(chr(10)) + 1}"
             for what, pattern in INLINE.items() for m in pattern.finditer(text)]
    assert not found, f"{relpath} {', '.join(found)}: call a check of enclave.egress.access instead"


@pytest.mark.parametrize("name", TEMPLATES)
def test_access_templates_ask_the_read_model_not_the_roles(name: str) -> None:
    text = (ROOT / "enclave/web/templates" / name).read_text()
    inline = re.findall(r"ident\.name\s*==\s*req\.author|ident\.is_(?:reviewer|admin)\b.*req\.", text)
    assert not inline, f"{name}: {inline}: use the request's may_* fields (derived from enclave.egress.access)"


def _checks() -> list[str]:
    return sorted(n for n in vars(access) if n.startswith("check_") and callable(getattr(access, n)))


def test_access_every_check_is_used_and_every_can_is_derived_from_its_check() -> None:
    code = "\n".join((ROOT / p).read_text() for p in CALLERS)
    unused = [name for name in _checks() if f"access.{name}(" not in code
              and f"access.{name.replace('check_', 'can_', 1)}(" not in code]
    assert not unused, f"checks nobody calls: {unused}"
    for name in (n for n in vars(access) if n.startswith("can_")):
        assert f'{name} = _derived("check_{name[4:]}")' in (ROOT / "enclave/egress/access.py").read_text(), name


def test_access_can_follows_its_check_when_the_check_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    # Derived at call time: a can_* never keeps a copy of its rule.
    monkeypatch.setattr(access, "check_view", lambda *a, **k: None)
    assert access.can_view(object(), object()) is True

    def refuse(*a: object, **k: object) -> None:
        raise access.PermissionDenied("no")

    monkeypatch.setattr(access, "check_view", refuse)
    assert access.can_view(object(), object()) is False


def _egress_imports(path: Path) -> set[str]:
    """Modules of enclave.egress that ``path`` imports, at the top or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "enclave.egress":
                found |= {f"enclave.egress.{a.name}" for a in node.names}
            elif node.module.startswith("enclave.egress."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("enclave.egress.")}
    return found


def test_access_egress_modules_import_each_other_without_a_cycle() -> None:
    folder = ROOT / "enclave/egress"
    graph = {f"enclave.egress.{p.stem}": _egress_imports(p) for p in folder.glob("*.py") if p.stem != "__init__"}
    seen: dict[str, int] = {}

    def visit(module: str, trail: list[str]) -> None:
        if seen.get(module) == 2:
            return
        assert seen.get(module) != 1, f"import cycle: {' -> '.join(trail + [module])}"
        seen[module] = 1
        for other in sorted(graph.get(module, ())):
            if other in graph:
                visit(other, trail + [module])
        seen[module] = 2

    for module in sorted(graph):
        visit(module, [])
    assert "enclave.egress.review" not in graph["enclave.egress.service"]
