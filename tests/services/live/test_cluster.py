"""Several processes on one database: on PostgreSQL one runs the scheduled jobs (an advisory lock, taken over when
its holder goes); on PostgreSQL (LISTEN/NOTIFY) and SQLite (the notices table) each one's budget counters follow the
others' writes."""
from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, text

from services.budget import policies, thresholds
from services.budget.checker import Checker, CheckRequest
from services.core.db import create_db_engine, upgrade
from services.live.cluster import LOCK_KEY, Bridge, Leadership
from services.live.hub import EventHub
from services.live.topics import PoliciesChanged
from services.sources.jobs import SyncJobs
from services.usage.ledger import Ledger
from services.usage.pricing import Pricer
from tests.conftest import fresh_postgres_engine, postgres_url
from tests.support.servers import start_server
from tests.support.wait import eventually

ZONE = ZoneInfo('Europe/Berlin')


@pytest.fixture
def pg_engines() -> Iterator[tuple[Engine, Engine]]:
    """Two engines on one fresh PostgreSQL database, as two instances would have."""
    url = postgres_url()
    first = fresh_postgres_engine(url)
    upgrade(first)
    second = create_db_engine(url)
    yield first, second
    first.dispose()
    second.dispose()


def test_one_instance_leads_and_another_takes_over(pg_engines: tuple[Engine, Engine]) -> None:
    first, second = Leadership(pg_engines[0]), Leadership(pg_engines[1])
    try:
        assert (first.role, second.role) == ('starting', 'starting')
        assert first.is_leader() and not second.is_leader()
        assert first.is_leader() and not second.is_leader(), 'the lock stays where it is'
        assert (first.role, second.role) == ('leader', 'standby')
        first.release()  # a clean shutdown
        assert second.is_leader() and not first.is_leader()
        with pg_engines[0].connect() as conn:  # the leader's connection dies (a crash, a network cut)
            killed = conn.execute(text('SELECT pg_terminate_backend(pid) FROM pg_locks '
                                       "WHERE locktype = 'advisory' AND objid = :key"), {'key': LOCK_KEY & 0xFFFFFFFF})
            assert killed.scalar() is True
        assert first.is_leader(), 'the lock was free again'
        assert not second.is_leader() and second.role == 'standby'
    finally:
        first.release()
        second.release()


def test_sqlite_always_leads(tmp_path: Path) -> None:
    engine = create_db_engine(f'sqlite:///{tmp_path / "x.db"}')
    try:
        assert Leadership(engine).is_leader() and Leadership(engine).role == 'leader'
    finally:
        engine.dispose()


async def test_jobs_run_only_on_the_leader() -> None:
    leading = {'now': False}
    calls: list[str] = []
    jobs = SyncJobs(None, 15, 60, is_leader=lambda: leading['now'])  # type: ignore[arg-type]  # led() needs no sync

    async def pull(source: str) -> str:
        calls.append(source)
        return source

    def check() -> str:
        calls.append('check')
        return 'checked'
    assert await jobs.led(pull)('litellm') is None and await jobs.led(check)() is None
    leading['now'] = True
    assert await jobs.led(pull)('litellm') == 'litellm' and await jobs.led(check)() == 'checked'
    assert calls == ['litellm', 'check']


@pytest.fixture(params=['postgresql', 'sqlite'])
def two_engines(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Engine, Engine]]:
    """Two engines on one fresh database, as two processes would have."""
    if request.param == 'postgresql':
        yield request.getfixturevalue('pg_engines')
        return
    url = f'sqlite:///{tmp_path / "shared.db"}'
    first, second = create_db_engine(url), create_db_engine(url)
    upgrade(first)
    yield first, second
    first.dispose()
    second.dispose()


def test_budget_counters_follow_another_instances_writes(two_engines: tuple[Engine, Engine]) -> None:
    """Instance A records spend and changes policies; instance B's checks see both within about a second."""
    pg_engines = two_engines
    instances = []
    for engine in pg_engines:
        hub = EventHub()
        ledger, checker = Ledger(engine, Pricer(), hub), Checker(engine, hub, ZONE)
        checker.start()
        bridge = Bridge(engine, hub, notify_interval_s=0.05, recount_interval_s=0.1)
        bridge.start()
        instances.append((hub, ledger, checker, bridge))
    (hub_a, ledger_a, checker_a, bridge_a), (_, _, checker_b, bridge_b) = instances
    try:
        time.sleep(0.6)  # both listening
        with pg_engines[0].begin() as conn:
            day = policies.validate({'name': 'day', 'limit_usd': '1', 'action': 'block'})
            policy = policies.create_policy(conn, day)
        hub_a.publish(PoliciesChanged('created'))
        eventually(lambda: [p['id'] for p in checker_b.check(CheckRequest())['policies']] == [policy.id])

        ledger_a.record({'model': 'gpt-4o', 'provider': 'openai', 'cost_usd': '0.80', 'agent_id': 'coder'})
        eventually(lambda: checker_b.check(CheckRequest())['policies'][0]['spent_micros'] == 800_000)
        assert checker_b.check(CheckRequest(estimated_cost_micros=300_000))['decision'] == 'block'

        with pg_engines[0].begin() as conn:  # an agent paused on A by its threshold is blocked on B too
            thresholds.set_thresholds(conn, None, Decimal('0.50'), pause=True)
        checker_a.rebuild()
        hub_a.publish(PoliciesChanged('created'))
        ledger_a.record({'model': 'gpt-4o', 'provider': 'openai', 'cost_usd': '0.60', 'agent_id': 'looper'})
        eventually(lambda: checker_b.check(CheckRequest(agent_id='looper'))['reasons'][:1] ==
                   ['agent looper is paused'])
        assert bridge_b.received >= 3, 'B heard A'
        eventually(lambda: bridge_a.received >= 1)  # A heard B's policy_violation alert (B blocked the $0.30 check)
    finally:
        for _, _, checker, bridge in instances:
            bridge.stop()
            checker.stop()


def test_two_servers_on_one_database(tmp_path: Path) -> None:
    """Two real server processes: one leads the scheduler, and a check on B blocks on spend recorded through A."""
    url = postgres_url()
    fresh_postgres_engine(url).dispose()
    (tmp_path / 'a').mkdir()
    (tmp_path / 'b').mkdir()
    a = start_server(tmp_path / 'a', database_url=url)
    b = start_server(tmp_path / 'b', database_url=url)
    try:
        with a.client() as api_a, b.client() as api_b:
            eventually(lambda: {api_a.get('/health').json()['scheduler'], api_b.get('/health').json()['scheduler']}
                       == {'leader', 'standby'}, timeout=20)
            policy = api_b.post('/policies', json={'name': 'team day', 'limit_usd': '1', 'action': 'block'})
            assert policy.status_code == 201, policy.text
            # A hears of B's policy (A also has the default daily limit: the policy is looked for by its name)
            eventually(lambda: 'team day' in [p['name'] for p in api_a.post('/check', json={}).json()['policies']],
                       timeout=30)
            record = {'model': 'gpt-4o', 'provider': 'openai', 'cost_usd': '0.90', 'agent_id': 'coder'}
            assert api_a.post('/usage', json=record).status_code == 201
            eventually(lambda: api_b.post('/check', json={'estimated_cost_usd': '0.20'}).json()['decision'] == 'block',
                       timeout=30)
    finally:
        a.stop()
        b.stop()


def test_old_sqlite_notices_are_pruned(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import func, insert, select

    from services.core.tables import NOTICES
    from services.live.cluster import NOTICE_KEEP

    engine = create_db_engine(f'sqlite:///{tmp_path / "x.db"}')
    upgrade(engine)
    hub = EventHub()
    with engine.begin() as conn:
        conn.execute(insert(NOTICES).values(payload='{}', created_at=datetime.now(UTC) - NOTICE_KEEP - timedelta(1)))
    bridge = Bridge(engine, hub, notify_interval_s=0.01)
    bridge.start()

    def notices() -> int:
        with engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(NOTICES)).scalar_one()
    try:
        hub.publish(PoliciesChanged('created'))
        eventually(lambda: notices() == 1)  # the new one; the old one is gone
    finally:
        bridge.stop()
        engine.dispose()
