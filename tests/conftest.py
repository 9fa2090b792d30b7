"""Shared fixtures: real databases (a SQLite file; PostgreSQL when SPENDGAUGE_TEST_DATABASE_URL is set), a ledger
on them, and a real server process."""
from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Connection, Engine, make_url, text
from sqlalchemy.exc import DBAPIError

from app import runtime
from services.core.db import create_db_engine, upgrade
from services.core.settings import use_settings
from services.live.hub import EventHub
from services.usage.ledger import Ledger
from services.usage.pricing import Pricer
from tests.support.fake_api import FakeAPI
from tests.support.fixtures import FIXTURES
from tests.support.servers import NO_PRICE_DATA_URL, Server, start_server
from tests.support.unavailable import unavailable

PG_URL_VAR = 'SPENDGAUGE_TEST_DATABASE_URL'


def postgres_url() -> str:
    """The test PostgreSQL URL; skip without one, except in CI, where a skipped PostgreSQL test is a failure. Under
    pytest-xdist each worker has a database of its own on that server (`<name>_gw0`, ...), made on first use."""
    url = os.environ.get(PG_URL_VAR)
    if not url:
        unavailable(f'{PG_URL_VAR} is not set: PostgreSQL tests need a server (.ci/run starts one)')
    worker = os.environ.get('PYTEST_XDIST_WORKER')
    if not worker:
        return url
    parsed = make_url(url)
    url = parsed.set(database=f'{parsed.database}_{worker}').render_as_string(hide_password=False)
    if url not in _created:
        with _maintenance(url) as conn:
            if conn.scalar(text('SELECT 1 FROM pg_database WHERE datname = :name'),
                           {'name': make_url(url).database}) is None:
                conn.execute(text(f'CREATE DATABASE "{make_url(url).database}"'))
        _created.add(url)
    return url


_created: set[str] = set()  # the workers' databases, made in this process


def fresh_postgres_engine(url: str) -> Engine:
    engine = create_db_engine(url)
    with engine.begin() as conn:
        conn.execute(text('DROP SCHEMA public CASCADE'))
        conn.execute(text('CREATE SCHEMA public'))
    return engine


class MigratedTemplates:
    """Migrated, empty databases made once per session and copied for each test: a SQLite file copied byte for
    byte, a PostgreSQL database cloned with CREATE DATABASE ... TEMPLATE. A copy is the database `upgrade` makes
    (tests/services/core/test_migrations.py runs the migrations themselves), in a fraction of the time."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._sqlite: Path | None = None
        self._postgres: str | None = None  # the template database's name; '' when it cannot be cloned here

    def sqlite(self, path: Path) -> str:
        """A migrated, empty SQLite database at `path`; its URL."""
        if self._sqlite is None:
            template = self._folder / 'migrated.db'
            engine = create_db_engine(f'sqlite:///{template}')
            upgrade(engine)
            engine.dispose()  # the last connection checkpoints the WAL into the file
            self._sqlite = template
        for suffix in ('', '-wal'):
            if Path(f'{self._sqlite}{suffix}').exists():
                shutil.copyfile(f'{self._sqlite}{suffix}', f'{path}{suffix}')
        return f'sqlite:///{path}'

    def postgres(self, url: str) -> None:
        """Make the database of `url` a migrated, empty one: a clone of the template (made on first use), or, where
        the role may not create databases, an emptied public schema migrated to head."""
        if self._postgres is None:
            self._postgres = self._make_postgres_template(url)
        if not self._postgres:
            engine = fresh_postgres_engine(url)
            upgrade(engine)
            engine.dispose()
            return
        name = make_url(url).database
        with _maintenance(url) as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{self._postgres}"'))

    def _make_postgres_template(self, url: str) -> str:
        name = f'{make_url(url).database}_migrated'
        try:
            with _maintenance(url) as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        except DBAPIError:  # no CREATEDB privilege: migrate the test database itself for each test
            return ''
        engine = create_db_engine(make_url(url).set(database=name).render_as_string(hide_password=False))
        upgrade(engine)
        engine.dispose()  # CREATE DATABASE ... TEMPLATE needs the template without connections
        return name

    def drop(self) -> None:
        if self._postgres:
            with _maintenance(postgres_url()) as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{self._postgres}" WITH (FORCE)'))


@contextmanager
def _maintenance(url: str) -> Iterator[Connection]:
    """An autocommit connection to the `postgres` database of the server of `url` (for CREATE and DROP DATABASE)."""
    admin = create_db_engine(make_url(url).set(database='postgres').render_as_string(hide_password=False))
    try:
        with admin.execution_options(isolation_level='AUTOCOMMIT').connect() as conn:
            yield conn
    finally:
        admin.dispose()


@pytest.fixture(scope='session')
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MigratedTemplates]:
    templates = MigratedTemplates(tmp_path_factory.mktemp('migrated'))
    yield templates
    templates.drop()


@pytest.fixture(params=['sqlite', 'postgresql'])
def engine(request: pytest.FixtureRequest, tmp_path: Path, migrated: MigratedTemplates) -> Iterator[Engine]:
    """A migrated, empty database of each kind."""
    if request.param == 'sqlite':
        engine = create_db_engine(migrated.sqlite(tmp_path / 'test.db'))
    else:
        url = postgres_url()
        migrated.postgres(url)
        engine = create_db_engine(url)
    yield engine
    engine.dispose()


@pytest.fixture(params=['sqlite', 'postgresql'])
def database_url(request: pytest.FixtureRequest, tmp_path: Path, migrated: MigratedTemplates) -> str:
    """The URL of a migrated, empty database of each kind, for a server process (start_server) to use."""
    if request.param == 'sqlite':
        return migrated.sqlite(tmp_path / 'server.db')
    url = postgres_url()
    migrated.postgres(url)
    return url


@pytest.fixture
def sqlite_engine(tmp_path: Path, migrated: MigratedTemplates) -> Iterator[Engine]:
    engine = create_db_engine(migrated.sqlite(tmp_path / 'test.db'))
    yield engine
    engine.dispose()


@pytest.fixture
def hub() -> EventHub:
    return EventHub()


@pytest.fixture
def ledger(engine: Engine, hub: EventHub) -> Ledger:
    return Ledger(engine, Pricer(), hub)


@pytest.fixture(scope='session')
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the session; tests use their own agent and session ids, or compare before and after. No daily
    limit: the spend of every test adds up here, and a global limit would block the later ones."""
    srv = start_server(tmp_path_factory.mktemp('server'), SPENDGAUGE_DAILY_LIMIT_USD='none')
    yield srv
    srv.stop()


@pytest.fixture
def api(server: Server) -> Iterator[httpx.Client]:
    """An API client on the shared server."""
    with server.client() as client:
        yield client


@pytest.fixture
def desktop_downloads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """As in the desktop window (pywebview), where exports are saved to ~/Downloads: that folder, under tmp_path."""
    from app import native

    monkeypatch.setenv('HOME', str(tmp_path))
    (tmp_path / 'Downloads').mkdir()
    monkeypatch.setattr(native, 'active', True)
    return tmp_path / 'Downloads'


@pytest.fixture(autouse=True)
def _isolated_runtime(request: pytest.FixtureRequest, tmp_path: Path,
                      monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test gets its own SQLite file for the in-process runtime (NiceGUI user tests, the CLI with --db). For
    NiceGUI's simulated user it is a migrated, empty one already (the app would migrate it first thing)."""
    for name in list(os.environ):
        if name.startswith('SPENDGAUGE_') and name != PG_URL_VAR:
            monkeypatch.delenv(name)
    monkeypatch.setenv('SPENDGAUGE_ENV_FILE', '')  # a developer's .env must not leak into tests
    monkeypatch.setenv('SPENDGAUGE_PRICE_DATA_URL', NO_PRICE_DATA_URL)  # no price update reaches the Internet
    database = tmp_path / 'runtime.db'
    if 'user' in request.fixturenames:
        request.getfixturevalue('migrated').sqlite(database)
    monkeypatch.setenv('SPENDGAUGE_DATABASE_URL', f'sqlite:///{database}')
    monkeypatch.setenv('SPENDGAUGE_ALLOWED_HOSTS', 'test')  # the host name of NiceGUI's simulated user
    runtime.stop()
    use_settings(None)
    yield
    runtime.stop()
    use_settings(None)


@pytest.fixture
def openrouter_source(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An OpenRouter source (a real puller) against a fake API, configured before the app starts. No daily limit:
    the key's spend today would cross the default one, and raise its alert (tests/services/budget/test_checker.py)."""
    with FakeAPI() as fake:
        fake.route('/api/v1/key', json.loads((FIXTURES / 'providers' / 'openrouter_key.json').read_text()))
        monkeypatch.setenv('SPENDGAUGE_DAILY_LIMIT_USD', 'none')
        monkeypatch.setenv('SPENDGAUGE_OPENROUTER_KEY', 'sk-or-test')
        monkeypatch.setenv('SPENDGAUGE_OPENROUTER_URL', fake.url)
        monkeypatch.setenv('SPENDGAUGE_PROVIDERS_SYNC_MINUTES', '600')
        yield fake.url


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under a node id of its own. Schemathesis gives each operation's test the function's node id
    (`test_every_operation_keeps_its_schema`, once per operation); pytest-xdist schedules and reports by node id, so
    it would run only the first of them. Such a test gets its item name (`...[GET /metrics]`) as its node id, and a
    node id still shared stops the run rather than leave a test out."""
    counts = Counter(item.nodeid for item in items)
    for item in items:
        if counts[item.nodeid] > 1 and item.parent is not None:
            _rename(item, f'{item.parent.nodeid}::{item.name}')
    shared = sorted(nodeid for nodeid, count in Counter(item.nodeid for item in items).items() if count > 1)
    if shared:
        raise pytest.UsageError(f'tests sharing a node id (pytest-xdist would run one of each): {shared[:5]}')


def _rename(item: pytest.Item, nodeid: str) -> None:
    """Give `item` the node id `nodeid` (pytest 9 keeps it as a NodeId in `_id`, pytest 8 as a string in `_nodeid`)."""
    try:
        from _pytest.nodeid import coerce_node_id
    except ImportError:  # pytest 8
        item._nodeid = nodeid  # type: ignore[attr-defined]
    else:
        item._id = coerce_node_id(nodeid)
