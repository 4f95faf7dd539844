"""People: their names (the JupyterHub user names), roles and training expiry."""

from __future__ import annotations

import datetime as dt
import re

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from enclave.audit import AuditAction, append_event
from enclave.db.models import User, UserRole
from enclave.enums import Role
from enclave.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from enclave.permissions import check_admin

# What JupyterHub accepts as a user name and Docker as part of a container name.
NAME_RE = re.compile(r"^[a-z][a-z0-9._-]{0,63}$")


def get_user(session: Session, name: str) -> User:
    user = session.scalars(select(User).where(User.name == name)).one_or_none()
    if user is None:
        raise NotFound(f"no user named {name!r}: see 'enclave user list' or add them with 'enclave user add'",
                       field="user", web=f"there is no enclave user named {name!r}: check the spelling, or ask an "
                                         "administrator to register them")
    return user


def find_user(session: Session, name: str) -> User | None:
    return session.scalars(select(User).where(User.name == name)).one_or_none()


def count_users(session: Session) -> int:
    return session.scalar(select(func.count(User.id))) or 0


def add_user(
    session: Session,
    actor: User | None,
    name: str,
    roles: set[Role],
    training_expires: dt.date | None = None,
) -> User:
    """Create a person. Needs an admin, except the very first admin on an empty enclave."""
    if not NAME_RE.match(name or ""):
        raise InvalidInput(
            f"user name {name!r} is not allowed: use lower-case letters, digits, '.', '_' or '-', starting with a letter"
        )
    if not roles:
        raise InvalidInput("give the user at least one role with --role (researcher, admin or reviewer)")
    bootstrap = actor is None
    if bootstrap:
        if count_users(session) > 0:
            raise PermissionDenied("say who is acting with --as USER (or ENCLAVE_USER): only an admin may add users")
        if Role.ADMIN not in roles:
            raise PermissionDenied("the first user of an empty enclave must be an admin: add --role admin")
    else:
        check_admin(actor, "add users")
    if find_user(session, name) is not None:
        raise Conflict(f"a user named {name!r} already exists: choose another name or see 'enclave user list'")
    user = User(name=name, training_expires=training_expires, role_rows=[UserRole(role=r) for r in sorted(roles)])
    session.add(user)
    session.flush()
    append_event(
        session,
        actor or name,
        AuditAction.USER_ADD,
        target=f"user:{name}",
        details={"roles": sorted(roles), "training_expires": training_expires, "bootstrap": bootstrap},
    )
    return user


def set_training(session: Session, actor: User, name: str, expires: dt.date) -> User:
    """Record a person's training/accreditation expiry (admins only)."""
    check_admin(actor, "record training")
    user = get_user(session, name)
    old = user.training_expires
    user.training_expires = expires
    append_event(session, actor, AuditAction.USER_UPDATE, target=f"user:{name}",
                 details={"training_expires": {"from": old, "to": expires}})
    return user


def set_roles(session: Session, actor: User, name: str, roles: set[Role]) -> User:
    """Replace a person's roles (admins only; an admin cannot remove their own admin role)."""
    check_admin(actor, "change roles")
    if not roles:
        raise InvalidInput("give at least one role with --role (researcher, admin or reviewer)")
    user = get_user(session, name)
    if user.id == actor.id and Role.ADMIN not in roles:
        raise PermissionDenied("you may not remove your own admin role: ask another admin")
    old = sorted(user.roles)
    user.role_rows = [UserRole(role=r) for r in sorted(roles)]
    append_event(session, actor, AuditAction.USER_UPDATE, target=f"user:{name}",
                 details={"roles": {"from": old, "to": sorted(roles)}})
    return user


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.name)))
