"""Hours and days kept between reads (services/spend/kept.py): whatever is recorded in between (new, late or removed
events), every total read through the kept intervals is what the events add up to; unchanged intervals are not read
again; a read that a change overtakes keeps nothing of what it touched; memory stays bounded."""
from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Connection, Engine

from services.core.tables import EVENTS
from services.insights.reports import by_dimension
from services.live.hub import EventHub
from services.live.topics import SyncFinished, UsageChanged
from services.spend import kept as kept_module
from services.spend.day_zone import rekey_days
from services.spend.kept import RECONCILED, kept
from services.spend.rollups import totals_between
from services.usage.ledger import Ledger
from tests.support.queries import counting_queries
from tests.support.spend_history import START, draw, edge_sets, expected

HOUR = timedelta(hours=1)


@pytest.fixture
def following(hub: EventHub) -> Iterator[None]:
    kept.follow(hub)
    yield
    kept.stop()


FULL_KEY = ('agent_id', 'provider', 'model', 'channel')  # more than are kept: summed by SQL on every read


def _actual(engine: Engine, edges: list[datetime], key: str | tuple[str, ...]) -> list[dict[Any, int]]:
    with engine.connect() as conn:
        buckets = totals_between(conn, edges, key if isinstance(key, tuple) else (key,))
    return [{(value if isinstance(key, tuple) else value[0]): t.cost_micros for value, t in group.items() if t.requests}
            for group in buckets.groups]


@pytest.mark.parametrize('zone', ['Europe/Paris', 'Asia/Kolkata'])
def test_every_read_is_what_the_events_add_up_to_while_they_come(ledger: Ledger, engine: Engine, following: None,
                                                                 zone: str) -> None:
    with engine.begin() as conn:
        rekey_days(conn, ZoneInfo(zone))
    events = draw(seed=5, count=600)
    recorded: list[dict[str, Any]] = []
    for first in range(0, len(events), 100):  # at random times over the ten days: every batch is late somewhere
        recorded += events[first:first + 100]
        ledger.record_batch(events[first:first + 100])
        for edges in edge_sets(ZoneInfo(zone)):
            for key in ('agent_id', 'channel', FULL_KEY):
                assert _actual(engine, edges, key) == expected(recorded, edges, key)
    assert ledger.remove_events(EVENTS.c.agent_id == 'coder') > 0  # a correction: everything is read again
    recorded = [e for e in recorded if e['agent_id'] != 'coder']
    for edges in edge_sets(ZoneInfo(zone)):
        for key in ('agent_id', FULL_KEY):
            assert _actual(engine, edges, key) == expected(recorded, edges, key)


def test_a_new_event_has_its_hour_and_day_read_again_and_nothing_else(ledger: Ledger, engine: Engine,
                                                                      following: None) -> None:
    events = draw(seed=8, count=300)
    ledger.record_batch(events)
    hours = [START + HOUR * n for n in range(10 * 24 + 1)]  # a forecast's hourly series
    days = [START + timedelta(days=n) for n in range(11)]  # a history's days (UTC)
    with engine.connect() as conn:
        totals_between(conn, hours)
        totals_between(conn, days)
        with counting_queries(engine, selects_only=True) as statements:
            totals_between(conn, hours)
            totals_between(conn, days)
        assert not [s for s in statements if 'spend_' in s or 'usage_events' in s]

        late = {'model': 'gpt-4o', 'provider': 'openai', 'cost_usd': '1.25', 'channel': 'direct', 'agent_id': None,
                'ts': (START + timedelta(days=4, hours=5, minutes=30)).isoformat()}
        ledger.record(late)
        with counting_queries(engine, selects_only=True) as statements:
            by_hour = totals_between(conn, hours)
            by_day = totals_between(conn, days)
        assert len([s for s in statements if 'spend_' in s or 'usage_events' in s]) == 2  # its hour, its day
    for edges, buckets in ((hours, by_hour), (days, by_day)):
        assert [buckets.total(n).cost_micros for n in range(len(edges) - 1)] == \
            [sum(group.values()) for group in expected([*events, late], edges, 'channel')]


def test_a_read_that_a_change_overtakes_keeps_nothing_of_what_it_touched(ledger: Ledger, engine: Engine,
                                                                           following: None) -> None:
    hours = [(START + HOUR * n, START + HOUR * (n + 1)) for n in range(4)]
    computed: list[int] = []

    def compute_while_an_event_arrives(conn: Connection, asked: list) -> list:
        computed.append(len(asked))
        if len(computed) == 1:  # an event in the second hour is stored while this read is under way
            ledger.record({'model': 'gpt-4o', 'provider': 'openai', 'cost_usd': '1',
                           'ts': (hours[1][0] + timedelta(minutes=5)).isoformat()})
        return [f'value of {start:%H}' for start, _ in asked]

    with engine.connect() as conn:
        kept.read(conn, 'test', hours, compute_while_an_event_arrives)
        kept.read(conn, 'test', hours, compute_while_an_event_arrives)
        kept.read(conn, 'test', hours, compute_while_an_event_arrives)
        assert computed == [4, 1]  # the second hour again, then all kept

        ledger.hub.publish(UsageChanged(rows=None))  # a correction overtakes a read: nothing of it is kept
        computed.clear()

        def compute_with_a_correction(conn: Connection, asked: list) -> list:
            computed.append(len(asked))
            if len(computed) == 1:
                ledger.hub.publish(UsageChanged(rows=None))
            return ['v'] * len(asked)

        kept.read(conn, 'test', hours, compute_with_a_correction)
        kept.read(conn, 'test', hours, compute_with_a_correction)
        assert computed == [4, 4]


def test_a_pull_drops_the_reconciled_days_only(engine: Engine, hub: EventHub, following: None) -> None:
    day = [(START, START + timedelta(days=1))]
    with engine.connect() as conn:
        kept.read(conn, RECONCILED, day, lambda c, asked: ['reconciled'])
        kept.read(conn, 'totals', day, lambda c, asked: ['totals'])
        hub.publish(SyncFinished('openai_direct', 'ok'))
        assert kept.get(conn, RECONCILED, *day[0]) is None
        assert kept.get(conn, 'totals', *day[0]) == 'totals'


def test_what_is_kept_stays_bounded(engine: Engine, following: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kept_module, 'MAX_WEIGHT', 50)
    hours = [(START + HOUR * n, START + HOUR * (n + 1)) for n in range(200)]
    with engine.connect() as conn:
        kept.read(conn, 'test', hours, lambda c, asked: [{'a': 1, 'b': 2}] * len(asked), len)
        assert kept.weight <= 50
        assert kept.get(conn, 'test', *hours[-1]) is not None  # the newest stay
        assert kept.get(conn, 'test', *hours[0]) is None


def test_nothing_is_kept_without_a_server_following_the_changes(ledger: Ledger, engine: Engine) -> None:
    ledger.record_batch(draw(seed=9, count=50))
    edges = [START + timedelta(days=n) for n in range(11)]
    with engine.connect() as conn:
        totals_between(conn, edges)
        with counting_queries(engine, selects_only=True) as statements:
            totals_between(conn, edges)
    assert [s for s in statements if 'spend_' in s]


def test_a_report_reads_each_dimension_from_the_kept_days_and_a_late_event_has_its_day_read_again(
        ledger: Ledger, engine: Engine, following: None) -> None:
    events = draw(seed=12, count=300)
    ledger.record_batch(events)
    edges = [START, START + timedelta(days=5), START + timedelta(days=10)]  # a comparison's two spans
    dimensions = ('agent_id', 'provider', 'model')
    with engine.connect() as conn:
        by_dimension(conn, edges, dimensions)
        with counting_queries(engine, selects_only=True) as statements:
            by_dimension(conn, edges, dimensions)
        assert not [s for s in statements if 'spend_' in s or 'usage_events' in s]  # every day kept

        late = {'model': 'gpt-4o', 'provider': 'openai', 'cost_usd': '2.50', 'channel': 'direct', 'agent_id': 'late',
                'ts': (START + timedelta(days=7, hours=13, minutes=30)).isoformat(), 'event_id': 'late-1'}
        ledger.record(late)
        with counting_queries(engine, selects_only=True) as statements:
            kept_read = by_dimension(conn, edges, dimensions)
        # its day, once for each dimension and the channel (which gives the recorded total); no other day
        assert len([s for s in statements if 'spend_' in s or 'usage_events' in s]) == 4
        kept.stop()  # as a CLI command reads: the cross product once, collapsed
        cold_read = by_dimension(conn, edges, dimensions)
    for name in (*dimensions, 'channel'):
        want = expected([*events, late], edges, name)
        for read in (kept_read, cold_read):
            assert [{value: t.cost_micros for value, t in interval[name].items() if t.requests} for interval in read] \
                == want, name
