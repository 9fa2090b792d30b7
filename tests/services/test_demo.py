"""The demo simulator (services/demo.py): priced and varied events, `clear` removing exactly the demo rows (through
`Ledger.remove_events`), start/stop on the event loop, the `spendgauge demo` command and a real server."""
from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, Table, insert, select

from services import demo
from services.alerting import alerts, anomaly
from services.budget import limits
from services.core.context import BudgetContext
from services.core.db import create_db_engine, upgrade
from services.core.periods import hour_floor
from services.core.tables import (
    AGENTS,
    DAILY,
    EVENTS,
    HOURLY,
    ROLLUPS,
    SCOPE_ROLLUPS,
    SESSION_AGENTS,
    SESSION_SCOPES,
    SESSIONS,
    TASK_SPEND,
)
from services.insights.forecast import budget_forecast
from services.live.hub import EventHub
from services.live.topics import AlertsChanged
from services.spend.rollups import totals_between
from services.usage.ledger import Ledger
from services.usage.pricing import Pricer
from tests.support.cli import assert_one_line_error, cli, ok
from tests.support.servers import start_server
from tests.support.wait import eventually

SMALL = demo.Pace(history_days=2, peak_calls_per_hour=25, session_minutes=5)
FAST = demo.Pace(interval_s=0.02, history_days=0, peak_calls_per_hour=360_000)  # a tick every 20 ms, no history
HOUR = timedelta(hours=1)
AGGREGATES = (ROLLUPS, SESSIONS, SESSION_AGENTS, AGENTS, TASK_SPEND)
BREAKDOWNS = (HOURLY, DAILY, SCOPE_ROLLUPS, SESSION_SCOPES)  # their sums: tests/services/spend/test_rollup_reads.py
NOW = datetime.now(UTC).replace(microsecond=0)


def simulate(ledger: Ledger, ticks: int = 40, seed: int = 7) -> demo.Simulator:
    """History, then `ticks` live ticks 30 s apart over the last minutes (several live sessions)."""
    simulator = demo.Simulator(ledger, SMALL, seed=seed)
    simulator.prepare(NOW)
    for i in range(ticks):
        simulator.tick(NOW - timedelta(seconds=30 * (ticks - i)))
    simulator.finish(NOW)
    return simulator


def real_events() -> list[dict[str, Any]]:
    """Ordinary usage in the same hours and on the same models as the demo, one unpriced."""
    events = []
    for i in range(24):
        events.append({
            'event_id': f'real-{i}', 'source': ('api', 'sdk', 'litellm_callback')[i % 3],
            'ts': NOW - timedelta(hours=i * 2, minutes=i), 'agent_id': ('planner', 'coder', None)[i % 3],
            'session_id': ('s1', 's2', None, 's3')[i % 4], 'task_id': ('t1', None)[i % 2],
            'provider': ('openai', 'anthropic', 'openrouter', 'openai')[i % 4],
            'model': ('gpt-4o-mini', 'claude-haiku-4-5', 'google/gemini-2.5-flash', 'in-house-model')[i % 4],
            'channel': ('litellm', 'direct')[i % 2], 'input_tokens': 1000 + 37 * i, 'cache_read_tokens': 10 * i,
            'output_tokens': 200 + i,
        })
    return events


def rows(conn: Any, table: Table) -> list[tuple]:
    columns = [c for c in table.columns if c.name not in ('id', 'created_at')]
    return sorted(tuple(r) for r in conn.execute(select(*columns)))


def snapshot(engine: Engine) -> dict[str, list[tuple]]:
    with engine.connect() as conn:
        return {t.name: rows(conn, t) for t in (EVENTS, *AGGREGATES, *BREAKDOWNS, demo.TASKS)}


def totals_from_events(conn: Any) -> dict[str, dict]:
    """What every aggregate table should hold, computed from the events themselves."""
    expected: dict[str, dict] = {t.name: defaultdict(Counter) for t in AGGREGATES}
    bounds: dict[str, dict] = {t.name: {} for t in AGGREGATES if t is not ROLLUPS}
    for e in conn.execute(select(EVENTS)):
        sums = Counter(cost=e.cost_micros, requests=1, input=e.input_tokens, output=e.output_tokens)
        expected['spend_rollups'][(hour_floor(e.ts), e.agent_id or '', e.provider, e.model, e.channel)].update(
            sums + Counter(unpriced=int(e.cost_source == 'unpriced')))
        for table, key in (('sessions', e.session_id), ('agents', e.agent_id), ('task_spend', e.task_id),
                           ('session_agents', (e.session_id, e.agent_id) if e.session_id and e.agent_id else None)):
            if key:
                expected[table][key].update(sums)
                low, high = bounds[table].get(key, (e.ts, e.ts))
                bounds[table][key] = (min(low, e.ts), max(high, e.ts))
    return {'sums': expected, 'bounds': bounds}


def totals_stored(conn: Any) -> dict[str, dict]:
    def sums(r: Any) -> Counter:
        return Counter(cost=r['cost_micros'], requests=r['requests'], input=r['input_tokens'],
                       output=r['output_tokens'])

    stored: dict[str, dict] = {'spend_rollups': {
        (r['hour'], r['agent_id'], r['provider'], r['model'], r['channel']):
            sums(r) + Counter(unpriced=r['unpriced_requests']) for r in conn.execute(select(ROLLUPS)).mappings()}}
    bounds: dict[str, dict] = {}
    for table, key, first, last in ((SESSIONS, ('id',), 'started_at', 'last_event_at'),
                                    (AGENTS, ('id',), 'first_seen_at', 'last_request_at'),
                                    (TASK_SPEND, ('task_id',), 'first_ts', 'last_ts'),
                                    (SESSION_AGENTS, ('session_id', 'agent_id'), 'first_ts', 'last_ts')):
        found = {(r[key[0]] if len(key) == 1 else tuple(r[k] for k in key)): r
                 for r in conn.execute(select(table)).mappings()}
        stored[table.name] = {k: sums(r) for k, r in found.items()}
        bounds[table.name] = {k: (r[first], r[last]) for k, r in found.items()}
    return {'sums': stored, 'bounds': bounds}


def assert_totals_match_events(engine: Engine) -> None:
    with engine.connect() as conn:
        expected, stored = totals_from_events(conn), totals_stored(conn)
    for name, groups in expected['sums'].items():
        assert stored['sums'][name] == {k: +c for k, c in groups.items()}, name
    assert stored['bounds'] == expected['bounds']


# --- the simulator ----------------------------------------------------------------------------------------------

def test_the_simulator_posts_priced_varied_marked_events(ledger: Ledger) -> None:
    simulate(ledger)
    with ledger.engine.connect() as conn:
        events = conn.execute(select(EVENTS)).all()
        tasks = conn.execute(select(demo.TASKS)).all()
    assert len(events) > 200
    assert {e.cost_source for e in events} == {'priced'}, 'every demo model is known to genai-prices'
    assert all(e.cost_micros > 0 for e in events)
    assert {e.source for e in events} == {'demo'}
    assert all(e.metadata == {'demo': True} for e in events)
    assert all(e.event_id.startswith('demo-') and e.agent_id.startswith('demo-') and e.session_id.startswith('demo-')
               for e in events)
    assert all(e.task_id.startswith('demo-') for e in events if e.task_id)
    assert {e.provider for e in events} == {'openai', 'anthropic', 'openrouter'}
    assert {e.channel for e in events} == {'litellm', 'direct'}
    assert len({e.agent_id for e in events}) == len(demo.AGENTS) == 6
    assert len({e.model for e in events}) >= 5
    assert len({e.session_id for e in events}) >= 6, 'history runs and rotating live sessions'
    assert len({e.task_id for e in events if e.task_id}) >= 4
    assert any(e.cache_read_tokens for e in events) and any(e.cache_write_tokens for e in events)
    assert all(e.cache_read_tokens + e.cache_write_tokens <= e.input_tokens for e in events)
    assert min(e.ts for e in events) < NOW - timedelta(days=1), 'history is backfilled'
    assert {t.id for t in tasks} == {t.id for t in demo.DEMO_TASKS}
    assert {t.status for t in tasks} == {'pending', 'running', 'done'}
    assert all(t.estimated_cost_micros > 0 for t in tasks)
    assert_totals_match_events(ledger.engine)


def test_a_second_prepare_neither_backfills_nor_duplicates_tasks(sqlite_engine: Engine) -> None:
    ledger = Ledger(sqlite_engine, Pricer(), EventHub())
    first = demo.Simulator(ledger, SMALL, seed=1).prepare(NOW)
    assert first > 0
    assert demo.Simulator(ledger, SMALL, seed=2).prepare(NOW) == 0
    assert demo.count(sqlite_engine) == first
    with sqlite_engine.connect() as conn:
        assert len(conn.execute(select(demo.TASKS)).all()) == len(demo.DEMO_TASKS)


def test_past_sessions_are_ended_and_the_live_one_ends_with_finish(sqlite_engine: Engine) -> None:
    ledger = Ledger(sqlite_engine, Pricer(), EventHub())
    simulator = demo.Simulator(ledger, SMALL, seed=3)
    simulator.prepare(NOW)
    while not simulator.tick(NOW):
        pass
    live = simulator.session_id
    with sqlite_engine.connect() as conn:
        open_sessions = {r.id for r in conn.execute(select(SESSIONS).where(SESSIONS.c.ended_at.is_(None)))}
    assert open_sessions == {live}
    simulator.finish()
    with sqlite_engine.connect() as conn:
        assert conn.execute(select(SESSIONS).where(SESSIONS.c.ended_at.is_(None))).all() == []


def test_the_first_live_hour_looks_like_the_history(sqlite_engine: Engine) -> None:
    """A week of history, then an hour of live ticks (every 10 s, at explicit times): the live hour spends what the
    history spent at that hour, the anomaly detector stays quiet, and the forecast holds near what the swarm spends."""
    ledger = Ledger(sqlite_engine, Pricer(), EventHub())
    start = datetime(2026, 12, 2, 14, 0, tzinfo=UTC)  # a Wednesday afternoon, the demo's busiest time
    simulator = demo.Simulator(ledger, demo.Pace(interval_s=10), seed=11)
    simulator.prepare(start)
    for tick in range(1, 361):
        simulator.tick(start + tick * timedelta(seconds=10))
    end = start + HOUR
    with sqlite_engine.begin() as conn:
        live = totals_between(conn, [start, end]).total(0)
        same_hour = [totals_between(conn, [start - timedelta(days=d), end - timedelta(days=d)]).total(0)
                     for d in range(1, 8) if (start - timedelta(days=d)).weekday() < 5]
        raised = anomaly.check_anomalies(conn, end)
        expected_day = demo_day_spend(simulator.pace, start, conn)
        limits.set_limit(conn, 'day', round(1.5 * expected_day))
        forecast = budget_forecast(conn, BudgetContext(ZoneInfo('UTC')), end)['day']
    # weekdays differ by up to 1.5x by design (`_day_factor`): the band is half to twice the usual for this hour
    usual = statistics.median(h.cost_micros for h in same_hour)
    assert len(same_hour) == 5 and usual / 2 <= live.cost_micros <= 2 * usual, (live.cost_micros, usual)
    assert raised == [], [a for a, _ in raised]
    assert (forecast['state'], forecast['method']) == ('holds', 'profile_blend')
    assert abs(forecast['projected_micros'] - expected_day) <= 0.2 * expected_day


def demo_day_spend(pace: demo.Pace, at: datetime, conn: Any) -> int:
    """What the demo is expected to spend on `at`'s day: its calls an hour times the history's cost a call."""
    midnight = at.replace(hour=0)
    history = totals_between(conn, [midnight - timedelta(days=pace.history_days - 1), midnight]).total(0)
    per_call = history.cost_micros / history.requests
    return round(sum(pace.calls_per_hour(midnight + h * HOUR) for h in range(24)) * per_call)


# --- clear --------------------------------------------------------------------------------------------------------

def test_clear_removes_exactly_the_demo_rows(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr('services.usage.ledger.REMOVE_CHUNK', 100)  # several chunks in one transaction
    real = real_events()
    ledger.record_batch(real)
    with ledger.engine.begin() as conn:
        conn.execute(insert(demo.TASKS), [{'id': 't1', 'title': 'real work', 'status': 'running', 'priority': 1,
                                           'created_at': NOW, 'updated_at': NOW}])
    before = snapshot(ledger.engine)

    simulate(ledger)
    demo_events = demo.count(ledger.engine)
    assert demo_events > 200
    assert snapshot(ledger.engine) != before

    assert demo.clear(ledger) == demo.Cleared(events=demo_events, alerts=0)
    assert snapshot(ledger.engine) == before, 'every row is as it was before the demo, and nothing else is left'
    assert_totals_match_events(ledger.engine)
    with ledger.engine.connect() as conn:
        assert len(conn.execute(select(EVENTS)).all()) == len(real)
        assert conn.execute(select(demo.TASKS.c.id)).scalars().all() == ['t1']
    assert demo.clear(ledger).events == 0


def test_clear_resolves_the_alerts_the_demo_raised_and_keeps_the_others(ledger: Ledger) -> None:
    """The demo's alerts: those naming a demo agent, session or task, and those on all spend raised since its
    first event. Alerts on real agents, other scopes and other kinds stay open."""
    def open_alert(type_: str, key: str, data: dict[str, Any], now: datetime | None = None) -> int:
        with ledger.engine.begin() as conn:
            alert, _ = alerts.raise_alert(conn, type_, 'warning', key, key, data, now=now)
        assert alert is not None
        return alert['id']

    kept = [open_alert('limit_exceeded', 'policy:1::2025-01-01:limit_exceeded', {'scope_key': ''},
                       now=NOW - timedelta(days=30)),  # on all spend, but before the demo began
            open_alert('anomaly', 'anomaly:planner', {'agent_id': 'planner'}),
            open_alert('sync_failure', 'sync_failure:openai_direct', {})]
    simulate(ledger, ticks=3)
    demos = [open_alert('anomaly', 'anomaly:demo-coder', {'agent_id': 'demo-coder'}),
             open_alert('threshold_warning', 'policy:2::day:threshold_warning', {'policy_id': 2, 'scope_key': ''}),
             open_alert('forecast_exhaustion', 'forecast_exhaustion:day:today', {'period': 'day'}),
             open_alert('threshold_critical', 'policy:3:demo-session-1:day:threshold_critical',
                        {'policy_id': 3, 'scope_key': 'demo-session-1'})]
    kept.append(open_alert('threshold_warning', 'policy:4:openai:day:threshold_warning', {'scope_key': 'openai'}))
    heard: list[Any] = []
    ledger.hub.subscribe(heard.append)

    assert demo.clear(ledger).alerts == len(demos)
    with ledger.engine.connect() as conn:
        assert sorted(a['id'] for a in alerts.list_alerts(conn, 'open')) == sorted(kept)
        assert all(alerts.get_alert(conn, i)['resolved_at'] for i in demos)
    assert AlertsChanged(reason='demo cleared') in heard, 'the bell and the alerts page hear of it'
    assert demo.clear(ledger).alerts == 0


def test_a_running_simulator_is_seen_by_its_heartbeat_until_it_stops(sqlite_engine: Engine) -> None:
    simulator = demo.Simulator(Ledger(sqlite_engine, Pricer(), EventHub()), FAST, seed=9)
    assert demo.simulator_seen(sqlite_engine) is None
    simulator.tick(NOW)
    assert demo.simulator_seen(sqlite_engine, NOW + timedelta(seconds=2)) == timedelta(seconds=2)
    assert demo.simulator_seen(sqlite_engine, NOW + 3 * demo.HEARTBEAT) is None, 'a process that died is not seen'
    simulator.tick(NOW + timedelta(seconds=1))  # within HEARTBEAT: no write
    assert demo.simulator_seen(sqlite_engine, NOW + timedelta(seconds=2)) == timedelta(seconds=2)
    simulator.tick(NOW + demo.HEARTBEAT)
    assert demo.simulator_seen(sqlite_engine, NOW + demo.HEARTBEAT) == timedelta(0)
    simulator.finish(NOW + demo.HEARTBEAT)
    assert demo.simulator_seen(sqlite_engine, NOW + demo.HEARTBEAT) is None


def test_clear_keeps_real_events_recorded_while_the_demo_ran(ledger: Ledger) -> None:
    real = real_events()
    ledger.record_batch(real[:12])
    simulator = demo.Simulator(ledger, SMALL, seed=5)
    simulator.prepare(NOW)
    ledger.record_batch(real[12:])
    for i in range(10):
        simulator.tick(NOW - timedelta(seconds=10 - i))
    demo.clear(ledger)
    with ledger.engine.connect() as conn:
        assert sorted(e.event_id for e in conn.execute(select(EVENTS))) == sorted(e['event_id'] for e in real)
        for table in (*AGGREGATES, *BREAKDOWNS):
            for row in conn.execute(select(table)).mappings():
                assert not any(str(v).startswith('demo-') for v in row.values()), (table.name, row)
    assert_totals_match_events(ledger.engine)


@pytest.mark.parametrize('chunk', [5_000, 7])
def test_removing_events_that_share_rows_with_others_leaves_those_rows_as_if_never_recorded(
        ledger: Ledger, monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    """Mixed rows (the same agent, session, task and hour in both sets): sums, first/last times and the agent's
    latest session come out exactly as if only the kept events had ever been recorded."""
    monkeypatch.setattr('services.usage.ledger.REMOVE_CHUNK', chunk)
    kept = [e for e in real_events() if e['source'] != 'sdk']
    removed = [{**e, 'event_id': f'gone-{i}', 'source': 'sdk', 'ts': e['ts'] + timedelta(minutes=7 + i)}
               for i, e in enumerate(real_events())]
    removed.append({**removed[0], 'event_id': 'gone-latest', 'ts': NOW + timedelta(minutes=1), 'session_id': 's9'})
    unpriced = next(e for e in kept if e['model'] == 'in-house-model')  # its rollup row keeps one unpriced request
    removed.append({**unpriced, 'event_id': 'gone-unpriced', 'source': 'sdk',
                    'ts': hour_floor(unpriced['ts']) + (unpriced['ts'] - hour_floor(unpriced['ts'])) / 2})
    by_time = sorted(kept + removed, key=lambda e: e['ts'])
    ledger.record_batch(by_time)
    assert ledger.remove_events(EVENTS.c.source == 'sdk') == len(removed)
    mixed = snapshot(ledger.engine)

    with ledger.engine.begin() as conn:
        for table in (EVENTS, *AGGREGATES, *BREAKDOWNS):
            conn.execute(table.delete())
    kept.sort(key=lambda e: e['ts'])
    ledger.record_batch(kept)
    assert snapshot(ledger.engine) == mixed
    assert ledger.remove_events(EVENTS.c.source == 'sdk') == 0


# --- start and stop -----------------------------------------------------------------------------------------------

async def test_only_if_empty_does_not_start_on_a_database_with_events(sqlite_engine: Engine) -> None:
    ledger = Ledger(sqlite_engine, Pricer(), EventHub())
    ledger.record({'model': 'gpt-4o-mini', 'input_tokens': 100, 'output_tokens': 10})
    assert demo.start(ledger, only_if_empty=True, pace=FAST) is False
    assert not demo.running()
    await asyncio.sleep(0.1)
    assert demo.count(sqlite_engine) == 0


async def test_start_posts_until_stop(sqlite_engine: Engine) -> None:
    ledger = Ledger(sqlite_engine, Pricer(), EventHub())
    assert demo.start(ledger, only_if_empty=True, pace=FAST, seed=4) is True
    try:
        assert demo.start(ledger, pace=FAST) is False, 'one simulator at a time'
        counts = [demo.count(sqlite_engine)]
        deadline = time.monotonic() + 10
        while len(set(counts)) < 4 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            counts.append(demo.count(sqlite_engine))
        assert len(set(counts)) >= 4, f'the count should keep rising: {counts}'
    finally:
        await demo.stop()
    assert not demo.running()
    stopped = demo.count(sqlite_engine)
    await asyncio.sleep(0.1)
    assert demo.count(sqlite_engine) == stopped
    with sqlite_engine.connect() as conn:
        assert conn.execute(select(SESSIONS).where(SESSIONS.c.ended_at.is_(None))).all() == []
    await demo.stop()  # a second stop is harmless


# --- the command line and a real server ---------------------------------------------------------------------------

@pytest.fixture
def demo_db(tmp_path: Path) -> tuple[str, int]:
    """A SQLite file with one real event and the demo's history and a few ticks; returns (url, demo events)."""
    url = f'sqlite:///{tmp_path / "demo.db"}'
    engine = create_db_engine(url)
    upgrade(engine)
    ledger = Ledger(engine, Pricer(), EventHub())
    ledger.record({'event_id': 'real', 'model': 'gpt-4o', 'agent_id': 'me', 'input_tokens': 1000,
                   'output_tokens': 100})
    simulate(ledger, ticks=5)
    count = demo.count(engine)
    engine.dispose()
    return url, count


def test_cli_demo_clear_removes_the_demo_rows_and_prints_the_count(demo_db: tuple[str, int], tmp_path: Path) -> None:
    url, count = demo_db
    path = url.removeprefix('sqlite:///')
    assert ok(cli('demo', '--db', url, cwd=tmp_path)).stdout.startswith(f'{count:,} demo events in {path}; ')
    cleared = ok(cli('demo', '--clear', '--db', url, cwd=tmp_path))
    assert cleared.stdout == f'removed {count:,} demo events from {path}; resolved 0 demo alerts\n'
    assert cleared.stderr == '', 'real usage is left: no hint that the demo would start again'
    engine = create_db_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(select(EVENTS.c.event_id)).scalars().all() == ['real']
            assert conn.execute(select(AGENTS.c.id)).scalars().all() == ['me']
            assert conn.execute(select(demo.TASKS)).all() == []
    finally:
        engine.dispose()
    again = ok(cli('demo', '--clear', '--db', url, cwd=tmp_path)).stdout
    assert again == f'removed 0 demo events from {path}; resolved 0 demo alerts\n'


def test_cli_demo_clear_without_db_uses_the_configured_database(demo_db: tuple[str, int], tmp_path: Path) -> None:
    url, count = demo_db
    result = ok(cli('demo', '--clear', cwd=tmp_path, SPENDGAUGE_DATABASE_URL=url))
    assert result.stdout.startswith(f'removed {count:,} demo events from {url.removeprefix("sqlite:///")}; ')


def test_cli_demo_never_creates_a_database(tmp_path: Path) -> None:
    """Run from a folder that is not the server's, the default ./data/spendgauge.db is not there: say so, and
    leave no empty ./data behind."""
    folder = tmp_path / 'elsewhere'
    folder.mkdir()
    for args in (('demo',), ('demo', '--clear')):
        line = assert_one_line_error(cli(*args, cwd=folder), 1)
        assert line == (f'spendgauge: no database at {folder / "data" / "spendgauge.db"}: pass --db, set '
                        'SPENDGAUGE_DATABASE_URL, or run this in the folder where `spendgauge serve` runs')
    named = folder / 'named.db'
    assert assert_one_line_error(cli('demo', '--clear', '--db', f'sqlite:///{named}', cwd=folder), 1) == \
        f'spendgauge: no database at {named}'
    assert list(folder.iterdir()) == []


def test_cli_demo_clear_is_refused_while_a_server_runs_the_demo(tmp_path: Path) -> None:
    server = start_server(tmp_path, SPENDGAUGE_DEMO='on')
    engine = create_db_engine(server.database_url)
    path = server.database_url.removeprefix('sqlite:///')
    try:
        eventually(lambda: demo.simulator_seen(engine) is not None, timeout=30)
        refused = assert_one_line_error(cli('demo', '--clear', '--db', server.database_url, cwd=tmp_path), 1)
        assert refused.startswith(f'spendgauge: the demo simulator of a running server is posting to {path} (last ')
        assert 'stop that server, then clear' in refused
        assert demo.count(engine) > 0
        assert 'a running server is adding more' in ok(cli('demo', '--db', server.database_url, cwd=tmp_path)).stdout
    finally:
        server.stop()
    assert demo.simulator_seen(engine) is None, 'a server that stops says its simulator is gone'
    count = demo.count(engine)
    cleared = ok(cli('demo', '--clear', '--db', server.database_url, cwd=tmp_path))
    assert cleared.stdout.startswith(f'removed {count:,} demo events from {path}; resolved ')
    assert '`make run` (serve --demo auto) would start the demo again' in cleared.stderr
    assert demo.count(engine) == 0
    engine.dispose()


@pytest.mark.parametrize(('url', 'code'), [('mysql://x/y', 2), ('not a url', 2)])
def test_cli_demo_clear_on_an_unusable_database_is_one_line(tmp_path: Path, url: str, code: int) -> None:
    assert_one_line_error(cli('demo', '--clear', '--db', url, cwd=tmp_path), code)


def test_help_documents_the_demo_options(tmp_path: Path) -> None:
    assert '--demo [{on,auto}]' in ok(cli('serve', '--help', cwd=tmp_path)).stdout
    assert '--clear' in ok(cli('demo', '--help', cwd=tmp_path)).stdout


def test_a_server_with_the_demo_on_backfills_and_keeps_posting(tmp_path: Path) -> None:
    """The demo posts at a real swarm's pace (quiet at night), so what rises within seconds at any hour is the
    count of its calls: the week of history lands batch by batch, then the live ticks follow."""
    server = start_server(tmp_path, SPENDGAUGE_DEMO='on')
    engine = create_db_engine(server.database_url)
    try:
        with server.client() as client:
            counts: list[int] = []
            readings: list[int] = []
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and len(set(counts)) < 3:
                counts.append(demo.count(engine))
                response = client.get('/budget/summary')
                assert response.status_code == 200, response.text
                readings.append(response.json()['spent_micros'])
                time.sleep(0.1)
            agents: set[str] = set()
            while time.monotonic() < deadline and not agents >= {a.id for a in demo.AGENTS}:  # the backfill's end
                items = client.get('/budget/by-agent', params={'period': 'week'}).json()['items']
                agents = {i['agent_id'] for i in items}
                time.sleep(0.2)
    finally:
        server.stop()
        engine.dispose()
    assert len(set(counts)) >= 3, f'the demo calls should keep coming: {counts}'
    assert counts == sorted(counts) and readings == sorted(readings), 'spend never goes down'
    assert agents >= {a.id for a in demo.AGENTS}
    assert 'Traceback' not in server.log(), server.log()
