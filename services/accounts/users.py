"""Dashboard users: a name, a role (admin or read) and an argon2id password hash."""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, Row, delete, func, insert, select, update
from typing_extensions import TypedDict

from services.accounts.passwords import hash_password
from services.core.access import Role
from services.core.errors import Conflict, Invalid, NotFound
from services.core.tables import USERS

USER_ROLES = (Role.ADMIN, Role.READ)  # an ingest role is for tokens, not for people


class UserOut(TypedDict):
    id: int
    name: str
    role: Role
    created_at: str
    password_changed_at: str


def _now() -> datetime:
    return datetime.now(UTC)


def checked_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 100 or not name.isprintable():
        raise Invalid('name: 1 to 100 printable characters')
    return name


def create(conn: Connection, name: str, password: str, role: Role) -> UserOut:
    name = checked_name(name)
    if role not in USER_ROLES:
        raise Invalid(f'role: a user is {" or ".join(USER_ROLES)}')
    if conn.execute(select(USERS.c.id).where(USERS.c.name == name)).first() is not None:
        raise Conflict(f'name: a user {name!r} exists already')
    now = _now()
    conn.execute(insert(USERS).values(name=name, role=role.value, password_hash=hash_password(password),
                                      created_at=now, password_changed_at=now))
    return get(conn, name)


def get(conn: Connection, name: str) -> UserOut:
    row = conn.execute(select(USERS).where(USERS.c.name == name)).first()
    if row is None:
        raise NotFound(f'name: no user {name!r}')
    return _out(row)


def list_users(conn: Connection) -> list[UserOut]:
    return [_out(row) for row in conn.execute(select(USERS).order_by(USERS.c.name))]


class Credentials(NamedTuple):
    password_hash: str
    role: Role
    password_changed_at: datetime  # sessions older than this are logged out


def credentials(conn: Connection, name: str) -> Credentials | None:
    row = conn.execute(select(USERS.c.password_hash, USERS.c.role, USERS.c.password_changed_at)
                       .where(USERS.c.name == name)).first()
    return None if row is None else Credentials(row.password_hash, Role(row.role), row.password_changed_at)


def set_password(conn: Connection, name: str, password: str) -> UserOut:
    changed = conn.execute(update(USERS).where(USERS.c.name == name)
                           .values(password_hash=hash_password(password), password_changed_at=_now())).rowcount
    if not changed:
        raise NotFound(f'name: no user {name!r}')
    return get(conn, name)


def delete_user(conn: Connection, name: str) -> UserOut:
    user = get(conn, name)
    if user['role'] is Role.ADMIN and admin_count(conn) <= 1:
        raise Conflict(f'{name!r} is the last admin: create another admin first')
    conn.execute(delete(USERS).where(USERS.c.name == name))
    return user


def admin_count(conn: Connection) -> int:
    return conn.execute(select(func.count()).select_from(USERS).where(USERS.c.role == Role.ADMIN.value)).scalar_one()


def count(conn: Connection) -> int:
    return conn.execute(select(func.count()).select_from(USERS)).scalar_one()


def _out(row: Row[Any]) -> UserOut:
    return {'id': row.id, 'name': row.name, 'role': Role(row.role), 'created_at': row.created_at.isoformat(),
            'password_changed_at': row.password_changed_at.isoformat()}
