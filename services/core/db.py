"""Database engine (SQLite in WAL mode by default, PostgreSQL through the URL) and Alembic migrations."""
from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import ConnectionPoolEntry

MIGRATIONS_DIR = Path(__file__).parent / 'migrations'
IN_CHUNK = 500  # values per `IN (...)`: far below SQLite's (32,766) and psycopg's (65,535) parameter limits
log = logging.getLogger(__name__)


T = TypeVar('T')


def chunked(items: Iterable[T], size: int = IN_CHUNK) -> Iterator[list[T]]:
    """`items` in lists of at most `size`: one query per list, never one parameter per item of unbounded input."""
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class DatabaseUrlError(ValueError):
    """The database URL cannot be used."""


def normalise_url(url: str) -> str:
    """Accept the common spellings of a PostgreSQL URL and point them at psycopg 3."""
    for prefix in ('postgres://', 'postgresql://'):
        if url.startswith(prefix):
            return 'postgresql+psycopg://' + url[len(prefix):]
    return url


def sqlite_file(url: str) -> Path | None:
    """The absolute path of a SQLite file URL (relative ones are relative to the working folder); None for any
    other database, an in-memory one or a URL that does not parse."""
    try:
        parsed = make_url(normalise_url(url))
    except ArgumentError:
        return None
    if parsed.get_backend_name() != 'sqlite' or not parsed.database or parsed.database == ':memory:':
        return None
    return Path(parsed.database).expanduser().absolute()


def describe(url: str) -> str:
    """The database for people: a SQLite file's absolute path, else the URL without its password."""
    path = sqlite_file(url)
    if path is not None:
        return str(path)
    try:
        return make_url(normalise_url(url)).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def create_db_engine(url: str) -> Engine:
    """An engine for `url`; for a SQLite file the folder is created and WAL mode switched on."""
    url = normalise_url(url)
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseUrlError(f'not a database URL: {url!r}') from None
    if parsed.get_backend_name() == 'sqlite':
        if parsed.database and parsed.database != ':memory:':
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={'check_same_thread': False, 'timeout': 30})
        event.listen(engine, 'connect', _sqlite_pragmas)
        return engine
    if parsed.get_backend_name() == 'postgresql':
        return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)
    raise DatabaseUrlError(f'unsupported database {parsed.get_backend_name()!r}: use sqlite:/// or postgresql://')


def _sqlite_pragmas(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute('PRAGMA journal_mode=WAL')
    cursor.execute('PRAGMA synchronous=NORMAL')
    cursor.execute('PRAGMA busy_timeout=30000')
    cursor.execute('PRAGMA cache_size=-65536')  # 64 MiB: keeps the event indexes in memory while ingesting
    cursor.close()


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision."""
    config = Config()
    config.set_main_option('script_location', str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes['connection'] = connection
        command.upgrade(config, 'head')
    log.debug('database schema is at head')
