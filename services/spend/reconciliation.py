"""Via LiteLLM, direct and total, per provider and day, without counting a dollar twice.

Each source is a lower bound that lags differently (callback events are live, LiteLLM pulls trail its batch
writes, provider bills trail by hours), so for the same money we take the larger figure, never the sum:

    via LiteLLM = max(pulled LiteLLM spend, events recorded with channel litellm)
    direct      = max(billed - via LiteLLM, events recorded with channel direct)   when the provider bills the day
                = events recorded with channel direct                              otherwise
    total       = via LiteLLM + direct

A gap is LiteLLM reporting more than the provider billed, beyond a tolerance: the bill is late, or a price is off.
Provider bills are per UTC day; in another time zone a bill is attributed to the local day with the same date.
"""
from __future__ import annotations

import copy
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, func, select
from typing_extensions import TypedDict

from services.core.money import micros_to_usd
from services.core.periods import consecutive_runs, local_days
from services.core.tables import SNAPSHOTS
from services.spend.kept import RECONCILED, kept
from services.spend.rollups import totals_between

BILLING_SOURCES = {'openai_direct': 'openai', 'anthropic_direct': 'anthropic', 'openrouter_direct': 'openrouter'}


class ReconciliationSources(TypedDict):
    """The figures each total was taken from (the larger of those describing the same money)."""

    litellm_events_micros: int  # events recorded with channel litellm
    litellm_pulled_micros: int | None  # pulled from the LiteLLM proxy; None: nothing pulled for the day
    direct_events_micros: int  # events recorded with channel direct


class ReconciledDay(TypedDict):
    day: str  # the local day
    provider: str
    litellm_micros: int  # via LiteLLM
    litellm_usd: str
    billed_micros: int | None  # the provider's bill; None: no billing data for the day
    billed_usd: str | None
    direct_micros: int
    direct_usd: str
    total_micros: int  # via LiteLLM + direct
    total_usd: str
    gap_micros: int  # how much LiteLLM reports above the bill
    gap_usd: str
    gap_alert: bool  # the gap exceeds the tolerance
    sources: ReconciliationSources


class Reconciliation(TypedDict):
    days: int
    timezone: str
    tolerance: str  # the share LiteLLM may exceed the bill by before a gap alerts, a decimal ('0.05')
    litellm_micros: int
    litellm_usd: str
    direct_micros: int
    direct_usd: str
    total_micros: int
    total_usd: str
    items: list[ReconciledDay]  # per day and provider, oldest first


class ChannelTotals(TypedDict):
    litellm: int
    direct: int
    total: int
    events: int  # what the events alone add up to
    requests: int


@dataclass
class ProviderDay:
    day: date
    provider: str
    litellm_events: int = 0
    litellm_pulled: int | None = None
    direct_events: int = 0
    billed: int | None = None
    requests: int = 0  # recorded events

    @property
    def litellm(self) -> int:
        return max(self.litellm_events, self.litellm_pulled or 0)

    @property
    def direct(self) -> int:
        if self.billed is None:
            return self.direct_events
        return max(self.billed - self.litellm, self.direct_events, 0)

    @property
    def total(self) -> int:
        return self.litellm + self.direct

    @property
    def gap(self) -> int:
        """How much LiteLLM reports above the bill (0 when there is no bill or it covers LiteLLM)."""
        return max(0, self.litellm - self.billed) if self.billed is not None else 0

    def gap_exceeds(self, tolerance: Decimal) -> bool:
        return self.billed is not None and self.litellm > self.billed * (1 + tolerance)

    def as_dict(self, tolerance: Decimal) -> ReconciledDay:
        billed = self.billed
        return {'day': self.day.isoformat(), 'provider': self.provider,
                'litellm_micros': self.litellm, 'litellm_usd': micros_to_usd(self.litellm),
                'billed_micros': billed, 'billed_usd': None if billed is None else micros_to_usd(billed),
                'direct_micros': self.direct, 'direct_usd': micros_to_usd(self.direct),
                'total_micros': self.total, 'total_usd': micros_to_usd(self.total),
                'gap_micros': self.gap, 'gap_usd': micros_to_usd(self.gap),
                'gap_alert': self.gap_exceeds(tolerance),
                'sources': {'litellm_events_micros': self.litellm_events, 'litellm_pulled_micros': self.litellm_pulled,
                            'direct_events_micros': self.direct_events}}


def reconcile(conn: Connection, days: list[tuple[date, datetime, datetime]]) -> list[ProviderDay]:
    """Per (day, provider) for the given consecutive days, each (date, UTC start, UTC end) of a local day; the days
    already reconciled and unchanged since are kept between reads (services/spend/kept.py)."""
    if not days:
        return []
    by_range = {(start, end): day for day, start, end in days}

    def compute(conn: Connection, ranges: list[tuple[datetime, datetime]]) -> list[list[ProviderDay]]:
        cells: dict[date, list[ProviderDay]] = {by_range[r]: [] for r in ranges}
        for run in consecutive_runs(ranges):
            for cell in _reconcile(conn, [(by_range[r], *r) for r in run]):
                cells[cell.day].append(cell)
        return [cells[by_range[r]] for r in ranges]

    per_day = kept.read(conn, RECONCILED, list(by_range), compute, len)
    return [copy.copy(cell) for cells in per_day for cell in cells]  # callers may change theirs


def _reconcile(conn: Connection, days: list[tuple[date, datetime, datetime]]) -> list[ProviderDay]:
    edges = [start for _, start, _ in days] + [days[-1][2]]
    buckets = totals_between(conn, edges, ('provider', 'channel'))
    table: dict[tuple[date, str], ProviderDay] = {}

    def cell(day: date, provider: str) -> ProviderDay:
        key = (day, provider)
        if key not in table:
            table[key] = ProviderDay(day, provider)
        return table[key]

    for index, (day, _, _) in enumerate(days):
        for (provider, channel), totals in buckets.groups[index].items():
            target = cell(day, provider or 'unknown')
            target.requests += totals.requests
            if channel == 'litellm':
                target.litellm_events += totals.cost_micros
            else:
                target.direct_events += totals.cost_micros
    # A range, never one parameter per day: grouped by day in SQL, the days not asked for skipped here.
    wanted = {d for d, _, _ in days}
    query = (select(SNAPSHOTS.c.source, SNAPSHOTS.c.day, SNAPSHOTS.c.provider,
                    func.sum(SNAPSHOTS.c.cost_micros).label('cost'))
             .where(SNAPSHOTS.c.day >= min(wanted), SNAPSHOTS.c.day <= max(wanted))
             .group_by(SNAPSHOTS.c.source, SNAPSHOTS.c.day, SNAPSHOTS.c.provider))
    pulled: dict[tuple[date, str], int] = defaultdict(int)
    billed: dict[tuple[date, str], int] = defaultdict(int)
    for row in conn.execute(query):
        if row.day not in wanted:
            continue
        if row.source == 'litellm':
            pulled[(row.day, row.provider)] += int(row.cost)
        elif row.source in BILLING_SOURCES:
            billed[(row.day, BILLING_SOURCES[row.source])] += int(row.cost)
    for (day, provider), cost in pulled.items():
        cell(day, provider).litellm_pulled = cost
    for (day, provider), cost in billed.items():
        cell(day, provider).billed = cost
    return sorted(table.values(), key=lambda c: (c.day, c.provider))


def reconcile_last_days(conn: Connection, count: int, zone: ZoneInfo, now: datetime | None = None) -> list[ProviderDay]:
    now = now or datetime.now(UTC)
    return reconcile(conn, local_days(now.astimezone(zone).date(), count, zone))


def reconcile_span(conn: Connection, start: datetime, end: datetime, zone: ZoneInfo) -> list[ProviderDay]:
    """The local days of [start, end) (start and end at local midnight)."""
    first, last = start.astimezone(zone).date(), (end - timedelta(microseconds=1)).astimezone(zone).date()
    days = [(first + timedelta(days=i)) for i in range((last - first).days + 1)]
    spans = [(d, datetime.combine(d, time(0), zone).astimezone(UTC),
              datetime.combine(d + timedelta(days=1), time(0), zone).astimezone(UTC)) for d in days]
    return reconcile(conn, spans)


def reconciliation(conn: Connection, days: int, zone: ZoneInfo, tolerance: Decimal,
                   now: datetime | None = None) -> Reconciliation:
    """The last `days` local days, today included: per day and provider, and the totals by channel."""
    cells = reconcile_last_days(conn, days, zone, now)
    totals = channel_totals(cells)
    return {'days': days, 'timezone': zone.key, 'tolerance': str(tolerance),
            'litellm_micros': totals['litellm'], 'litellm_usd': micros_to_usd(totals['litellm']),
            'direct_micros': totals['direct'], 'direct_usd': micros_to_usd(totals['direct']),
            'total_micros': totals['total'], 'total_usd': micros_to_usd(totals['total']),
            'items': [c.as_dict(tolerance) for c in cells]}


def channel_totals(cells: list[ProviderDay]) -> ChannelTotals:
    return {'litellm': sum(c.litellm for c in cells), 'direct': sum(c.direct for c in cells),
            'total': sum(c.total for c in cells), 'events': sum(c.litellm_events + c.direct_events for c in cells),
            'requests': sum(c.requests for c in cells)}
