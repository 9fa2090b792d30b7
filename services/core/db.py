"""Database engine (SQLite in WAL mode by default, PostgreSQL through the URL) and Alembic migrations."""
from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import ConnectionPoolEntry

MIGRATIONS_DIR = Path(__file__).parent / 'migrations'
IN_CHUNK = 500  # values per `IN (...)`: far below SQLite's (32,766) and psycopg's (65,535) parameter limits
# WAL pages (4 KiB) after which a commit checkpoints inline. SQLite's default, 1,000, has a large history's ingest
# checkpoint (and fsync) on nearly every batch: each event dirties a page of the random (source, event_id) index.
# The ledger checkpoints in the background instead (WalCheckpointer); this is the backstop when that lags.
WAL_AUTOCHECKPOINT_PAGES = 10_000
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
    cursor.execute(f'PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}')
    cursor.close()


class WalCheckpointer:
    """Runs SQLite's WAL checkpoints on a thread of their own, so that a writer's commit does not copy the pages of
    earlier transactions into the database file and fsync it (what made ingest slow down as the file grew).

    `request()` after a commit asks for a PASSIVE checkpoint (it waits for no reader or writer, and copies what it
    can); requests while one runs make one more run after it, so checkpoints follow a busy writer back to back and
    stop when it does. Durability is unchanged: commits are in the WAL either way (synchronous=NORMAL), and the
    checkpoint fsyncs the WAL before it copies, as an inline one does. The thread ends with the checkpointer."""

    def __init__(self, engine: Engine) -> None:
        self._path = str(engine.url.database)
        self._connection: sqlite3.Connection | None = None  # its own, on its thread: not one of the pool's
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix='wal-checkpoint')
        self._lock = threading.Lock()
        self._requested = False
        self._closed = False

    @staticmethod
    def wanted(engine: Engine) -> bool:
        """For a SQLite file (in memory there is no WAL)."""
        return engine.dialect.name == 'sqlite' and engine.url.database not in (None, '', ':memory:')

    def request(self) -> None:
        with self._lock:
            if self._requested or self._closed:
                return
            self._requested = True
        self._executor.submit(self._checkpoint)

    def close(self) -> None:
        """Wait for a checkpoint under way, end the thread and close its connection; later requests do nothing."""
        with self._lock:
            self._closed = True
        self._executor.shutdown(wait=True)
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _checkpoint(self) -> None:
        with self._lock:
            self._requested = False  # commits from now on ask for the next run
        try:
            if self._connection is None:
                self._connection = sqlite3.connect(self._path, timeout=30, check_same_thread=False)
            self._connection.execute('PRAGMA wal_checkpoint(PASSIVE)').fetchall()
        except sqlite3.Error:  # a checkpoint that cannot run now is retried after the next commit
            log.debug('background WAL checkpoint failed', exc_info=True)


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option('script_location', str(MIGRATIONS_DIR))
    return config


def head_revision() -> str:
    """The newest schema revision this code migrates to (e.g. '0015')."""
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


def known_revisions() -> set[str]:
    return {script.revision for script in ScriptDirectory.from_config(_alembic_config()).walk_revisions()}


def current_revision(conn: Connection) -> str | None:
    """The revision the database's schema is at; None when it was never migrated."""
    return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision."""
    config = _alembic_config()
    with engine.begin() as connection:
        config.attributes['connection'] = connection
        command.upgrade(config, 'head')
    log.debug('database schema is at head')
