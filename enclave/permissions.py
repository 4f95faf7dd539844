"""Who may act: one ``check_*`` per rule that raises PermissionDenied; ``can`` derives booleans."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from enclave.db.models import Project, User
from enclave.enums import Role
from enclave.errors import PermissionDenied


def check_role(actor: User, roles: frozenset[Role] | set[Role], doing: str) -> None:
    """The actor must hold at least one of ``roles`` to do ``doing``."""
    if not actor.roles & set(roles):
        needed = " or ".join(sorted(r.value for r in roles))
        raise PermissionDenied(f"{actor.name} may not {doing}: that needs the {needed} role")


def check_admin(actor: User, doing: str) -> None:
    check_role(actor, {Role.ADMIN}, doing)


def is_member(user: User, project: Project) -> bool:
    return any(m.user_id == user.id for m in project.memberships)


def check_member(actor: User, project: Project, doing: str) -> None:
    if not is_member(actor, project):
        raise PermissionDenied(f"{actor.name} may not {doing}: they are not a member of project {project.slug}")


def check_not_member(actor: User, project: Project, doing: str) -> None:
    """Separation of duties: people may not decide on their own project."""
    if is_member(actor, project):
        raise PermissionDenied(
            f"{actor.name} may not {doing}: they are a member of project {project.slug} "
            "(separation of duties: ask another admin)"
        )


def can(check: Callable[..., None], *args: Any, **kwargs: Any) -> bool:
    """True when ``check(*args)`` would not raise PermissionDenied."""
    try:
        check(*args, **kwargs)
    except PermissionDenied:
        return False
    return True
