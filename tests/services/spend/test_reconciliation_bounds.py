"""Reconciliation over the longest accepted range (ten years) in a half-hour time zone, on both databases: no query
binds a parameter per day or per cut hour, so it answers, exactly, in bounded time."""
from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from services.core.context import BudgetContext
from services.core.errors import Invalid
from services.core.periods import MAX_SPAN_DAYS
from services.insights import reports
from services.sources.base import PullResult, SnapshotRow
from services.sources.snapshots import store_snapshots
from services.spend import budget
from services.spend.reconciliation import channel_totals, reconcile_span
from services.spend.rollups import RANGES_PER_QUERY
from services.usage.ledger import Ledger

ZONE = ZoneInfo('Asia/Kolkata')  # UTC+5:30: every local midnight cuts an hour in two
FIRST = date(2016, 1, 1)
LAST = FIRST + timedelta(days=MAX_SPAN_DAYS - 1)


def test_ten_years_of_days_reconcile_in_bounded_time(ledger: Ledger) -> None:
    # one call a day at 00:10 local time: its UTC hour (18:00-19:00 the day before) is cut by the local midnight
    days = [FIRST + timedelta(days=i) for i in range(MAX_SPAN_DAYS)]
    events = [{'event_id': f'e{i}', 'model': 'gpt-4o', 'provider': 'openai', 'channel': 'direct', 'cost_usd': '0.01',
               'ts': datetime(d.year, d.month, d.day, 0, 10, tzinfo=ZONE).isoformat()} for i, d in enumerate(days)]
    assert len(events) > 10 * RANGES_PER_QUERY
    assert all(r.status == 'stored' for r in ledger.record_batch(events))
    with ledger.engine.begin() as conn:
        for day, micros in ((FIRST, 5_000_000), (LAST, 7_000_000), (LAST + timedelta(days=1), 1_000_000_000)):
            store_snapshots(conn, 'openai_direct', PullResult([SnapshotRow('openai_direct', day, 'openai', '', micros)],
                                                              {day}))
    span = budget.resolve_range(None, FIRST.isoformat(), LAST.isoformat(), ZONE)
    started = time.monotonic()
    with ledger.engine.connect() as conn:
        cells = reconcile_span(conn, span.start, span.end, ZONE)
    elapsed = time.monotonic() - started
    totals = channel_totals(cells)
    assert totals['events'] == 10_000 * MAX_SPAN_DAYS
    assert totals['requests'] == MAX_SPAN_DAYS
    # the first and last days are billed above their events; the day after the range is not counted
    assert totals['total'] == 10_000 * (MAX_SPAN_DAYS - 2) + 5_000_000 + 7_000_000
    assert elapsed < 10, f'{elapsed:.1f} s'
    started = time.monotonic()
    with ledger.engine.connect() as conn:
        report = reports.build_report(conn, BudgetContext(ZONE), 'trend', None, FIRST.isoformat(),
                                      LAST.isoformat())
    assert len(report.rows) == MAX_SPAN_DAYS
    assert time.monotonic() - started < 20


@pytest.mark.parametrize(('start', 'end', 'message'), [
    ('2016-01-01', (LAST + timedelta(days=1)).isoformat(), 'at most ten years'),
    ('1999-06-01', '2000-06-01', 'from: must be between'),
    ('0001-01-01', '2026-12-31', 'from: must be between'),
    ('2026-01-01', '9999-12-31', 'to: must be between'),
    ('2016-01-01T00:00:00+00:00', '2026-01-02T02:00:00+00:00', 'at most ten years'),
])
def test_longer_ranges_are_refused(start: str, end: str, message: str) -> None:
    with pytest.raises(Invalid, match=message):
        budget.resolve_range(None, start, end, ZONE, datetime(2026, 6, 1, tzinfo=UTC))
