"""Reconciled days kept between reads (services/spend/kept.py): unchanged days are not read again, and a late event,
a pull or a correction shows at once, exactly as a reconciliation from scratch would."""
from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Connection, Engine

from services.core.periods import local_days
from services.core.tables import EVENTS
from services.live.hub import EventHub
from services.live.topics import SyncFinished, UsageChanged
from services.sources.base import PullResult, SnapshotRow
from services.sources.snapshots import store_snapshots
from services.spend.kept import RECONCILED, kept
from services.spend.reconciliation import ProviderDay, _reconcile, reconcile_last_days
from services.usage.ledger import Ledger
from tests.support.ledger import spend
from tests.support.queries import counting_queries

ZONE = ZoneInfo('Europe/Paris')
NOW = datetime.now(UTC)
DAYS = local_days(NOW.astimezone(ZONE).date(), 30, ZONE)


@pytest.fixture
def following(hub: EventHub) -> Iterator[None]:
    kept.follow(hub)
    yield
    kept.stop()


def _read(engine: Engine) -> list[tuple]:
    with engine.connect() as conn:
        return [_fields(c) for c in reconcile_last_days(conn, 30, ZONE, NOW)]


def _from_scratch(engine: Engine) -> list[tuple]:
    with engine.connect() as conn:
        return [_fields(c) for c in _reconcile(conn, DAYS)]


def _fields(cell: ProviderDay) -> tuple:
    return (cell.day, cell.provider, cell.litellm, cell.direct, cell.billed, cell.requests)


def test_changes_show_at_once_and_unchanged_days_are_not_read_again(ledger: Ledger, engine: Engine,
                                                                    following: None) -> None:
    for days_ago in range(0, 20, 3):
        spend(ledger, f'0.{days_ago + 1}', ts=(NOW - timedelta(days=days_ago)).isoformat(), channel='litellm')
    assert _read(engine) == _from_scratch(engine)
    with counting_queries(engine, selects_only=True) as statements:
        _read(engine)
    assert not [s for s in statements if 'spend_' in s or 'budget_snapshots' in s]

    spend(ledger, '0.77', ts=(NOW - timedelta(days=9)).isoformat(), provider='anthropic', model='claude-sonnet-4-5')
    with counting_queries(engine, selects_only=True) as statements:
        late = _read(engine)
    assert late == _from_scratch(engine)
    assert any(c[1] == 'anthropic' and c[3] == 770_000 for c in late)
    assert len([s for s in statements if 'spend_' in s]) == 1  # the one changed day, not thirty

    day = (NOW - timedelta(days=3)).date()
    with engine.begin() as conn:
        store_snapshots(conn, 'openai_direct', PullResult([SnapshotRow('openai_direct', day, 'openai', '', 9_000_000)],
                                                          {day}))
    ledger.hub.publish(SyncFinished('openai_direct', 'ok'))
    billed = _read(engine)
    assert billed == _from_scratch(engine)
    assert any(c[4] == 9_000_000 for c in billed)

    assert ledger.remove_events(EVENTS.c.provider == 'anthropic') == 1
    assert _read(engine) == _from_scratch(engine) != late


def test_a_day_read_while_it_changes_is_not_kept(ledger: Ledger, engine: Engine, following: None) -> None:
    spend(ledger, '0.5', ts=NOW.isoformat())
    calls = []

    def compute_while_an_event_arrives(conn: Connection, ranges: list) -> list:
        calls.append(len(ranges))
        if len(calls) == 1:
            ledger.hub.publish(UsageChanged(rows=None))
        cells = _reconcile(conn, DAYS)
        return [[c for c in cells if c.day == day] for day, _, _ in DAYS]

    with engine.connect() as conn:
        for _ in range(3):
            kept.read(conn, RECONCILED, [(start, end) for _, start, end in DAYS], compute_while_an_event_arrives)
    assert calls == [30, 30]  # read again after the change, then kept
