"""The days of a report's range: the spend of each local day (reconciled for whole days, from events for a cut one),
and how a range is named and described in a report's parameters. Shared by the reports and the chargeback."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection

from services.core.periods import Period, midnight_on_or_after, midnight_on_or_before
from services.spend.reconciliation import reconcile_span
from services.spend.rollups import totals_between


@dataclass
class DaySpend:
    """Spend of one local day, or of the part of it inside the range (then from events alone: `reconciled` False)."""

    start: datetime
    litellm: int = 0
    direct: int = 0
    reconciled: bool = True

    @property
    def total(self) -> int:
        return self.litellm + self.direct


def midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def is_day_aligned(span: Period, zone: ZoneInfo) -> bool:
    return midnight_on_or_before(span.start, zone) == span.start and midnight_on_or_before(span.end, zone) == span.end


def day_spend(conn: Connection, start: datetime, end: datetime, zone: ZoneInfo) -> list[DaySpend]:
    """Via LiteLLM and direct for each local day of [start, end): reconciled for whole days, events for cut ones."""
    first, last = midnight_on_or_after(start, zone), midnight_on_or_before(end, zone)
    cut = [(start, end)] if first >= last else [(a, b) for a, b in ((start, first), (last, end)) if a < b]
    days: list[DaySpend] = []
    if first < last:
        by_day: dict[date, DaySpend] = {}
        for cell in reconcile_span(conn, first, last, zone):
            day = by_day.setdefault(cell.day, DaySpend(midnight(cell.day, zone)))
            day.litellm += cell.litellm
            day.direct += cell.direct
        days += by_day.values()
    for a, b in cut:
        group = totals_between(conn, [a, b], ('channel',)).groups[0]
        litellm = sum(t.cost_micros for (channel,), t in group.items() if channel == 'litellm')
        direct = sum(t.cost_micros for (channel,), t in group.items() if channel != 'litellm')
        days.append(DaySpend(a, litellm, direct, reconciled=False))
    return sorted(days, key=lambda d: d.start)


def local(ts: datetime, zone: ZoneInfo) -> datetime:
    return ts.astimezone(zone)


def span_parameters(span: Period, zone: ZoneInfo, aligned: bool, **extra: Any) -> dict[str, Any]:
    last = (span.end - timedelta(microseconds=1)).astimezone(zone).date()
    return {'period': span.name, 'start': span.start.isoformat(), 'end': span.end.isoformat(),
            'timezone': zone.key, 'first_day': local(span.start, zone).date().isoformat(),
            'last_day': last.isoformat(), 'reconciled': aligned, **extra}


def describe_span(span: Period, zone: ZoneInfo) -> str:
    if is_day_aligned(span, zone):
        first = local(span.start, zone).date()
        last = (span.end - timedelta(microseconds=1)).astimezone(zone).date()
        return first.isoformat() if first == last else f'{first} to {last}'
    return f'{local(span.start, zone):%Y-%m-%d %H:%M} to {local(span.end, zone):%Y-%m-%d %H:%M}'
