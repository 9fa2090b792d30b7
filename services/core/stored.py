"""Settings changed at run time: the `settings` table, one value per key (eco mode for now)."""
from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Connection, bindparam, select
from sqlalchemy.dialects import postgresql, sqlite

from services.core.tables import SETTINGS

_VALUE = select(SETTINGS.c.value).where(SETTINGS.c.key == bindparam('key'))  # read on every live reload: built once


def get_value(conn: Connection, key: str) -> str | None:
    return conn.execute(_VALUE, {'key': key}).scalar_one_or_none()


_VALUES = select(SETTINGS.c.key, SETTINGS.c.value).where(SETTINGS.c.key.in_(bindparam('keys', expanding=True)))


def get_values(conn: Connection, *keys: str) -> dict[str, str]:
    """The stored ones of `keys`, in one statement."""
    return dict(conn.execute(_VALUES, {'keys': list(keys)}).tuples().all())


def set_value(conn: Connection, key: str, value: str) -> None:
    insert = postgresql.insert if conn.dialect.name == 'postgresql' else sqlite.insert
    statement = insert(SETTINGS).values(key=key, value=value, updated_at=datetime.now(UTC))
    conn.execute(statement.on_conflict_do_update(index_elements=['key'], set_={
        'value': statement.excluded.value, 'updated_at': statement.excluded.updated_at}))
