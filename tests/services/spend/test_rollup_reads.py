"""Totals from the rollups: whole local days from `spend_daily`, edge hours from `spend_rollups`, cut hours from
events, and per user/project/tag/session from `spend_scope_rollups`: always what the events add up to, whatever the
zone the days are keyed in, the zone of the range, or the hours a range cuts; and a read of whole days never touches
the hours or the events."""
from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta
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
from tests.support.spend_history import START, edge_sets, expected, history


def _actual(engine: Engine, edges: list[datetime], key: str = 'agent_id') -> list[dict[Any, int]]:
    with engine.connect() as conn:
        buckets = totals_between(conn, edges, (key,))
    return [{value: t.cost_micros for (value,), t in group.items() if t.requests} for group in buckets.groups]


@pytest.mark.parametrize(('days_in', 'read_in'), [
    ('UTC', 'UTC'), ('Europe/Paris', 'Europe/Paris'), ('UTC', 'Asia/Kolkata'),
    ('Asia/Kolkata', 'Asia/Kolkata'), ('America/St_Johns', 'Europe/Paris')])
def test_totals_are_what_the_events_add_up_to(ledger: Ledger, engine: Engine, days_in: str, read_in: str) -> None:
    with engine.begin() as conn:
        rekey_days(conn, ZoneInfo(days_in))  # before recording: the ledger keys its days so from the start
    events = history(ledger, seed=len(days_in) + len(read_in))
    for edges in edge_sets(ZoneInfo(read_in)):
        assert _actual(engine, edges) == expected(events, edges, 'agent_id')
        assert _actual(engine, edges, 'channel') == expected(events, edges, 'channel')  # the per-channel hours


def test_rekeying_the_days_keeps_every_total(ledger: Ledger, engine: Engine) -> None:
    events = history(ledger, seed=7)
    for zone in ('Asia/Kolkata', 'Europe/Paris', 'UTC'):
        with engine.begin() as conn:
            assert rekey_days(conn, ZoneInfo(zone))
            assert not rekey_days(conn, ZoneInfo(zone))
            assert day_zone(conn).key == zone
        for edges in edge_sets(ZoneInfo(zone)):
            assert _actual(engine, edges) == expected(events, edges, 'agent_id')
    with engine.connect() as conn:  # every recorded cent is in some day, whatever the zone
        assert sum(conn.execute(select(DAILY.c.cost_micros)).scalars()) == sum(
            round(float(e['cost_usd']) * 1_000_000) for e in events)


def test_whole_days_are_read_from_the_daily_rows_alone(ledger: Ledger, engine: Engine) -> None:
    zone = ZoneInfo('Europe/Paris')
    with engine.begin() as conn:
        rekey_days(conn, zone)
    history(ledger, seed=3)
    days = local_days(date(2026, 10, 28), 9, zone)
    with engine.connect() as conn, counting_queries(engine, selects_only=True) as statements:
        totals_between(conn, [start for _, start, _ in days] + [days[-1][2]], ('agent_id', 'provider'))
        totals_between(conn, [days[0][1], days[-1][2]], ('model',))
    read = ' '.join(statements)
    assert 'spend_daily' in read
    assert ROLLUPS.name not in read and EVENTS.name not in read


@pytest.mark.parametrize('scope', ['user', 'project', 'tag', 'session'])
def test_scope_spend_is_what_the_events_add_up_to(ledger: Ledger, engine: Engine, scope: str) -> None:
    events = history(ledger, seed=11)
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
    history(ledger, seed=5, count=200)
    kept = _tables(engine)
    history(ledger, seed=6, count=200)
    assert ledger.remove_events(EVENTS.c.event_id.like('e6-%')) == 200
    assert _tables(engine) == kept


def test_the_migration_fills_the_new_rollups_from_what_was_recorded(ledger: Ledger, engine: Engine) -> None:
    history(ledger, seed=9, count=300)
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
    events = history(runtime.start(load_settings()).ledger, seed=13, count=100)
    runtime.stop()
    monkeypatch.setenv('SPENDGAUGE_TZ', 'Asia/Kolkata')
    engine = runtime.start(load_settings()).engine
    with engine.connect() as conn:
        assert day_zone(conn).key == 'Asia/Kolkata'
    for edges in edge_sets(ZoneInfo('Asia/Kolkata')):
        assert _actual(engine, edges) == expected(events, edges, 'agent_id')
    runtime.stop()
