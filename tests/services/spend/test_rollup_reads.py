"""Totals from the rollups: whole local days from `spend_daily`, edge hours from `spend_rollups`, cut hours from
events, and per user/project/tag/session from `spend_scope_rollups`: always what the events add up to, whatever the
zone the days are keyed in, the zone of the range, or the hours a range cuts; and a read of whole days never touches
the hours or the events."""
from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, select

from services.core.db import MIGRATIONS_DIR
from services.core.periods import local_days
from services.core.tables import DAILY, EVENTS, HOURLY, ROLLUPS, SCOPE_ROLLUPS, SESSION_SCOPES
from services.spend.day_zone import day_zone, rekey_days
from services.spend.rollups import scope_spend, totals_between
from services.usage.ledger import Ledger
from tests.support.queries import counting_queries

START = datetime(2026, 10, 20, tzinfo=UTC)  # the autumn clock change in Europe falls inside the ten days
AGENTS = ('planner', 'coder', None)
TAGS = ('nightly', 'eval', 'prod')


def _history(ledger: Ledger, seed: int, count: int = 400) -> list[dict[str, Any]]:
    """`count` events over ten days, at any minute, with every dimension varied; returns what was recorded."""
    rng = random.Random(seed)
    events = []
    for n in range(count):
        events.append({
            'event_id': f'e{seed}-{n}', 'ts': (START + timedelta(minutes=rng.randrange(10 * 24 * 60))).isoformat(),
            'model': rng.choice(('gpt-4o', 'claude-sonnet-4-5')), 'provider': rng.choice(('openai', 'anthropic')),
            'channel': rng.choice(('litellm', 'direct')), 'agent_id': rng.choice(AGENTS),
            'user_id': rng.choice(('ann', 'bob', None)), 'project': rng.choice(('alpha', None)),
            'session_id': f's{rng.randrange(12)}', 'tags': rng.sample(TAGS, rng.randrange(3)),
            'input_tokens': rng.randrange(5000), 'output_tokens': rng.randrange(800),
            'cost_usd': f'0.{rng.randrange(1, 99999):05d}'})
    for first in range(0, count, 100):
        ledger.record_batch(events[first:first + 100])
    return events


def _expected(events: list[dict[str, Any]], edges: list[datetime], key: str) -> list[dict[Any, int]]:
    result: list[dict[Any, int]] = [defaultdict(int) for _ in edges[1:]]
    for event in events:
        ts = datetime.fromisoformat(event['ts'])
        for index, (start, end) in enumerate(pairwise(edges)):
            if start <= ts < end:
                result[index][event[key]] += round(float(event['cost_usd']) * 1_000_000)
    return [dict(r) for r in result]


def _actual(engine: Engine, edges: list[datetime], key: str = 'agent_id') -> list[dict[Any, int]]:
    with engine.connect() as conn:
        buckets = totals_between(conn, edges, (key,))
    return [{value: t.cost_micros for (value,), t in group.items() if t.requests} for group in buckets.groups]


def _edge_sets(zone: ZoneInfo) -> list[list[datetime]]:
    days = local_days(date(2026, 10, 28), 9, zone)
    odd = START + timedelta(hours=7, minutes=13, seconds=5)
    return [
        [start for _, start, _ in days] + [days[-1][2]],  # each local day
        [days[0][1], days[-1][2]],  # nine days as one range
        [odd, odd + timedelta(days=4, minutes=50), odd + timedelta(days=8, hours=3)],  # nowhere near midnight
        [START + timedelta(days=3, hours=h) for h in range(30)],  # hour by hour across a midnight
    ]


@pytest.mark.parametrize(('days_in', 'read_in'), [
    ('UTC', 'UTC'), ('Europe/Paris', 'Europe/Paris'), ('UTC', 'Asia/Kolkata'),
    ('Asia/Kolkata', 'Asia/Kolkata'), ('America/St_Johns', 'Europe/Paris')])
def test_totals_are_what_the_events_add_up_to(ledger: Ledger, engine: Engine, days_in: str, read_in: str) -> None:
    with engine.begin() as conn:
        rekey_days(conn, ZoneInfo(days_in))  # before recording: the ledger keys its days so from the start
    events = _history(ledger, seed=len(days_in) + len(read_in))
    for edges in _edge_sets(ZoneInfo(read_in)):
        assert _actual(engine, edges) == _expected(events, edges, 'agent_id')
        assert _actual(engine, edges, 'channel') == _expected(events, edges, 'channel')  # the per-channel hours


def test_rekeying_the_days_keeps_every_total(ledger: Ledger, engine: Engine) -> None:
    events = _history(ledger, seed=7)
    for zone in ('Asia/Kolkata', 'Europe/Paris', 'UTC'):
        with engine.begin() as conn:
            assert rekey_days(conn, ZoneInfo(zone))
            assert not rekey_days(conn, ZoneInfo(zone))
            assert day_zone(conn).key == zone
        for edges in _edge_sets(ZoneInfo(zone)):
            assert _actual(engine, edges) == _expected(events, edges, 'agent_id')
    with engine.connect() as conn:  # every recorded cent is in some day, whatever the zone
        assert sum(conn.execute(select(DAILY.c.cost_micros)).scalars()) == sum(
            round(float(e['cost_usd']) * 1_000_000) for e in events)


def test_whole_days_are_read_from_the_daily_rows_alone(ledger: Ledger, engine: Engine) -> None:
    zone = ZoneInfo('Europe/Paris')
    with engine.begin() as conn:
        rekey_days(conn, zone)
    _history(ledger, seed=3)
    days = local_days(date(2026, 10, 28), 9, zone)
    with engine.connect() as conn, counting_queries(engine, selects_only=True) as statements:
        totals_between(conn, [start for _, start, _ in days] + [days[-1][2]], ('agent_id', 'provider'))
        totals_between(conn, [days[0][1], days[-1][2]], ('model',))
    read = ' '.join(statements)
    assert 'spend_daily' in read
    assert ROLLUPS.name not in read and EVENTS.name not in read


@pytest.mark.parametrize('scope', ['user', 'project', 'tag', 'session'])
def test_scope_spend_is_what_the_events_add_up_to(ledger: Ledger, engine: Engine, scope: str) -> None:
    events = _history(ledger, seed=11)
    column = {'user': 'user_id', 'project': 'project', 'tag': 'tags', 'session': 'session_id'}[scope]
    ranges = [(START, START + timedelta(days=10)), (START + timedelta(hours=5, minutes=30), START + timedelta(days=2)),
              (START + timedelta(minutes=10), START + timedelta(minutes=50))]
    for start, end in ranges:
        expected: dict[str, int] = defaultdict(int)
        for event in events:
            if start <= datetime.fromisoformat(event['ts']) < end:
                values = dict.fromkeys(event[column]) if scope == 'tag' else [event[column]]
                for value in values:
                    if value:
                        expected[value] += round(float(event['cost_usd']) * 1_000_000)
        with engine.connect() as conn:
            assert scope_spend(conn, scope, start, end) == dict(expected)


def _tables(engine: Engine) -> dict[str, list[tuple]]:
    with engine.connect() as conn:
        return {table.name: sorted(tuple(row) for row in conn.execute(select(table)))
                for table in (DAILY, HOURLY, SCOPE_ROLLUPS, SESSION_SCOPES, ROLLUPS)}


def test_removing_events_takes_them_out_of_every_rollup(ledger: Ledger, engine: Engine, hub: Any) -> None:
    _history(ledger, seed=5, count=200)
    kept = _tables(engine)
    _history(ledger, seed=6, count=200)
    assert ledger.remove_events(EVENTS.c.event_id.like('e6-%')) == 200
    assert _tables(engine) == kept


def test_the_migration_fills_the_new_rollups_from_what_was_recorded(ledger: Ledger, engine: Engine) -> None:
    _history(ledger, seed=9, count=300)
    folded = _tables(engine)
    config = Config()
    config.set_main_option('script_location', str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes['connection'] = connection
        command.downgrade(config, '0009')
        command.upgrade(config, '0010')
    assert _tables(engine) == folded


def test_the_server_keys_the_days_in_its_time_zone(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from app import runtime
    from services.core.settings import load_settings

    url = f'sqlite:///{tmp_path / "zone.db"}'
    monkeypatch.setenv('SPENDGAUGE_DATABASE_URL', url)
    monkeypatch.setenv('SPENDGAUGE_TZ', 'UTC')
    events = _history(runtime.start(load_settings()).ledger, seed=13, count=100)
    runtime.stop()
    monkeypatch.setenv('SPENDGAUGE_TZ', 'Asia/Kolkata')
    engine = runtime.start(load_settings()).engine
    with engine.connect() as conn:
        assert day_zone(conn).key == 'Asia/Kolkata'
    for edges in _edge_sets(ZoneInfo('Asia/Kolkata')):
        assert _actual(engine, edges) == _expected(events, edges, 'agent_id')
    runtime.stop()
