"""The doctor's checks of this machine and the database, read-only (nothing is created, migrated or written): the
database answers and its schema is at head, a SQLite file is in WAL mode, the disk it lives on has room, and how old
the price data is. Blocking: the doctor runs them on worker threads, each bounded by `timeout_s`."""
from __future__ import annotations

import os
import shutil
import sqlite3
from datetime import UTC, date, datetime
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from services.core.db import current_revision, describe, head_revision, known_revisions, normalise_url, sqlite_file
from services.core.scrub import scrub
from services.core.tables import PRICE_DATA
from services.ops.findings import Finding, fail, ok, skip, warn
from services.usage import price_data
from services.usage.pricing import bundled_installed_at

MIGRATE = 'run `spendgauge migrate` (or start `spendgauge serve`, which migrates on start)'
PRICE_DATA_MAX_AGE_DAYS = 30
DISK_FAIL_BYTES = 100 * 2**20  # below this a write may fail any minute
DISK_WARN_BYTES = 2**30
DISK_WARN_SHARE = 0.05
MiB = 2**20


def database_checks(database_url: str, timeout_s: float, today: date | None = None) -> list[Finding]:
    """'database' (reachable, at head), 'sqlite wal' for a SQLite file, and 'price data' (its age), on one
    read-only connection."""
    try:
        engine = _read_only_engine(database_url, timeout_s)
    except (ArgumentError, ValueError) as exc:
        return [fail('database', f'SPENDGAUGE_DATABASE_URL cannot be used: {exc}',
                     'set SPENDGAUGE_DATABASE_URL to sqlite:///path/to/file.db or postgresql://user@host/name')]
    except FileNotFoundError as exc:
        return [fail('database', f'no database at {exc}', MIGRATE + ' to create it, or point '
                     'SPENDGAUGE_DATABASE_URL (or --db) at the existing one')]
    where = describe(database_url)
    try:
        with engine.connect() as conn:
            return _schema(conn, where) + _wal(conn) + [_price_data_age(conn, today or datetime.now(UTC).date())]
    except SQLAlchemyError as exc:
        reason = scrub(str(getattr(exc, 'orig', None) or exc).splitlines()[0], [make_url(database_url).password or ''])
        return [fail('database', f'cannot connect to {where}: {reason}',
                     'start the database server, or fix SPENDGAUGE_DATABASE_URL (host, port, user, password)')]
    finally:
        engine.dispose()


def _read_only_engine(database_url: str, timeout_s: float) -> Engine:
    url = make_url(normalise_url(database_url))
    file = sqlite_file(database_url)
    if file is not None:
        if not file.exists():
            raise FileNotFoundError(str(file))
        uri = f'file:{file}?mode=ro'
        return create_engine('sqlite://', poolclass=NullPool,
                             creator=lambda: sqlite3.connect(uri, uri=True, timeout=timeout_s,
                                                             check_same_thread=False))
    if url.get_backend_name() == 'postgresql':
        return create_engine(url, poolclass=NullPool, connect_args={'connect_timeout': max(1, int(timeout_s))})
    if url.get_backend_name() == 'sqlite':  # in memory: nothing to diagnose, but nothing wrong either
        return create_engine(url, poolclass=NullPool)
    raise ValueError(f'unsupported database {url.get_backend_name()!r}')


def _schema(conn: Connection, where: str) -> list[Finding]:
    head = head_revision()
    current = current_revision(conn)
    if current == head:
        return [ok('database', f'{where}: reachable, schema at the newest revision ({head})')]
    if current is None:
        return [fail('database', f'{where}: reachable, but never migrated (no schema; the newest is {head})', MIGRATE)]
    if current not in known_revisions():
        return [fail('database', f'{where}: schema at {current}, newer than this SpendGauge knows (its newest is '
                                 f'{head})', 'upgrade SpendGauge to the version that migrated this database')]
    return [fail('database', f'{where}: schema at {current}, behind the newest ({head})', MIGRATE)]


def _wal(conn: Connection) -> list[Finding]:
    if conn.dialect.name != 'sqlite':
        return []
    mode = str(conn.execute(text('PRAGMA journal_mode')).scalar()).lower()
    if mode == 'wal':
        return [ok('sqlite wal', 'journal mode WAL: readers never wait for the writer')]
    return [warn('sqlite wal', f'journal mode {mode}, not WAL: dashboards and ingest wait for each other',
                 MIGRATE + ': SpendGauge switches the file to WAL whenever it opens it')]


def _price_data_age(conn: Connection, today: date) -> Finding:
    if not inspect(conn).has_table(PRICE_DATA.name):
        return skip('price data', 'not known until the database is migrated')
    data = price_data.describe(conn)
    if data['fetched_at'] is None:
        since = bundled_installed_at()
        what = f'{data["label"]}, installed {since.isoformat()}'
    else:
        since = datetime.fromisoformat(data['fetched_at']).date()
        what = f'{data["label"]} from {data["url"]}, fetched {since.isoformat()}'
    age = (today - since).days
    if age > PRICE_DATA_MAX_AGE_DAYS:
        return warn('price data', f'{what}: {age} days old; providers change prices more often',
                    '`spendgauge prices update` fetches the newest genai-prices data')
    return ok('price data', f'{what} ({age} day{"s" * (age != 1)} ago)')


def disk_checks(database_url: str, audit_log: str = '') -> list[Finding]:
    """Free space where a SQLite database lives (PostgreSQL keeps its files on its own server), and where the JSONL
    audit log is written when it is on."""
    file = sqlite_file(database_url)
    if file is None:
        found = [skip('disk', 'the database is on the PostgreSQL server: watch its disk there')]
    else:
        found = [_free_space('disk', _existing(file.parent), 'move the database there (SPENDGAUGE_DATABASE_URL)')]
    if audit_log:
        where = Path(audit_log)
        folder = where.parent if where.suffix in ('.jsonl', '.log') else where
        found.append(_free_space('disk (audit log)', _existing(folder), 'point SPENDGAUGE_AUDIT_LOG there'))
    return found


def _existing(folder: Path) -> Path:
    """The folder, or its nearest ancestor that exists (what will hold it once it is made)."""
    return next((p for p in (folder, *folder.parents) if p.exists()), Path('/'))


def _free_space(name: str, folder: Path, move: str) -> Finding:
    usage = shutil.disk_usage(folder)
    detail = f'{folder}: {usage.free // MiB:,} MiB free of {usage.total // MiB:,} MiB'
    fix = f'free space on the disk of {folder}, or {move}'
    if not os.access(folder, os.W_OK):
        return fail(name, f'{folder}: not writable by this user', f'let this user write to {folder}')
    if usage.free < DISK_FAIL_BYTES:
        return fail(name, detail, fix)
    if usage.free < DISK_WARN_BYTES or usage.free < usage.total * DISK_WARN_SHARE:
        return warn(name, detail, fix)
    return ok(name, detail)
