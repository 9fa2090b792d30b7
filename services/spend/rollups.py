"""Spend totals over time ranges, read from the hourly rollups.

An hour that a range boundary cuts in two (a time zone with a half-hour offset, or a range that does not start
on the hour) is read from the events of that hour alone, so every total is exact and no query scans history.
"""
from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, cast, overload

from sqlalchemy import Connection, and_, func, or_, select
from typing_extensions import TypedDict

from services.core.money import micros_to_usd
from services.core.periods import as_utc, hour_floor
from services.core.tables import EVENTS, ROLLUPS

DIMENSIONS = ('agent_id', 'provider', 'model', 'channel')
HOUR = timedelta(hours=1)
SPLIT_HOURS_PER_QUERY = 200  # two parameters each: far below SQLite's and psycopg's limits
MEASURES = ('cost_micros', 'requests', 'input_tokens', 'output_tokens', 'cache_read_tokens', 'cache_write_tokens')
Dimension = Literal['agent_id', 'provider', 'model', 'channel']


class SpendTotals(TypedDict):
    cost_micros: int
    cost_usd: str
    requests: int
    input_tokens: int  # cache reads and writes included
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int


class SpendShare(SpendTotals):
    share_percent: float  # of the range's total, two places


class AgentSpend(SpendShare):
    agent_id: str | None  # None: the calls that named no agent


class ProviderSpend(SpendShare):
    provider: str | None


class ModelSpend(SpendShare):
    model: str | None


class ChannelSpend(SpendShare):
    channel: str | None  # litellm or direct


@dataclass
class Totals:
    cost_micros: int = 0
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    def add(self, row: Any) -> None:
        for name in MEASURES:
            setattr(self, name, getattr(self, name) + int(getattr(row, name) or 0))

    def merge(self, other: Totals) -> None:
        for name in MEASURES:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_dict(self) -> SpendTotals:
        return {'cost_micros': self.cost_micros, 'cost_usd': micros_to_usd(self.cost_micros),
                'requests': self.requests, 'input_tokens': self.input_tokens, 'output_tokens': self.output_tokens,
                'cache_read_tokens': self.cache_read_tokens, 'cache_write_tokens': self.cache_write_tokens}


@dataclass
class Buckets:
    """Totals for each interval between consecutive edges, keyed by the grouping dimensions."""

    edges: list[datetime]
    groups: list[dict[tuple, Totals]] = field(default_factory=list)

    def total(self, index: int) -> Totals:
        result = Totals()
        for totals in self.groups[index].values():
            result.merge(totals)
        return result


def totals_between(conn: Connection, edges: Sequence[datetime], by: Sequence[str] = ()) -> Buckets:
    """Spend in each [edges[i], edges[i+1]) interval, grouped by the `by` dimensions."""
    for name in by:
        if name not in DIMENSIONS:
            raise ValueError(f'cannot group by {name!r}')
    edges = [as_utc(e) for e in edges]
    buckets = Buckets(edges, [{} for _ in range(len(edges) - 1)])
    if len(edges) < 2 or edges[0] >= edges[-1]:
        return buckets
    split_hours: set[datetime] = set()
    dims = [ROLLUPS.c[name] for name in by]
    sums = [func.sum(ROLLUPS.c[name]).label(name) for name in MEASURES]
    query = (select(ROLLUPS.c.hour, *dims, *sums)
             .where(ROLLUPS.c.hour >= hour_floor(edges[0]), ROLLUPS.c.hour < edges[-1])
             .group_by(ROLLUPS.c.hour, *dims))
    for row in conn.execute(query):
        hour = as_utc(row.hour)
        index = _interval(edges, hour)
        if index is None or index != _interval(edges, hour + HOUR - timedelta(microseconds=1)):
            split_hours.add(hour)
            continue
        _add(buckets.groups[index], _key(row, by), row)
    if split_hours:
        _add_split_hours(conn, buckets, sorted(split_hours), by)
    return buckets


def _add_split_hours(conn: Connection, buckets: Buckets, hours: list[datetime], by: Sequence[str]) -> None:
    edges = buckets.edges
    columns = [EVENTS.c.ts, *(EVENTS.c[name] for name in by), *(EVENTS.c[name] for name in MEASURES[2:]),
               EVENTS.c.cost_micros]
    # A long range in a half-hour time zone cuts an hour a day: a bounded number of them per query
    for first in range(0, len(hours), SPLIT_HOURS_PER_QUERY):
        ranges = [and_(EVENTS.c.ts >= max(h, edges[0]), EVENTS.c.ts < min(h + HOUR, edges[-1]))
                  for h in hours[first:first + SPLIT_HOURS_PER_QUERY]]
        for row in conn.execute(select(*columns).where(or_(*ranges))):
            index = _interval(edges, as_utc(row.ts))
            if index is not None:
                _add(buckets.groups[index], _key(row, by), _EventAsRollup(row))


class _EventAsRollup:
    def __init__(self, row: Any) -> None:
        self._row = row
        self.requests = 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self._row, name)


def _interval(edges: list[datetime], ts: datetime) -> int | None:
    if ts < edges[0] or ts >= edges[-1]:
        return None
    return bisect.bisect_right(edges, ts) - 1


def _key(row: Any, by: Sequence[str]) -> tuple:
    return tuple((getattr(row, name) or None) for name in by)


def _add(group: dict[tuple, Totals], key: tuple, row: Any) -> None:
    totals = group.get(key)
    if totals is None:
        totals = group[key] = Totals()
    totals.add(row)


@overload
def breakdown(conn: Connection, start: datetime, end: datetime, by: Literal['agent_id']) -> list[AgentSpend]: ...
@overload
def breakdown(conn: Connection, start: datetime, end: datetime, by: Literal['provider']) -> list[ProviderSpend]: ...
@overload
def breakdown(conn: Connection, start: datetime, end: datetime, by: Literal['model']) -> list[ModelSpend]: ...
@overload
def breakdown(conn: Connection, start: datetime, end: datetime, by: Literal['channel']) -> list[ChannelSpend]: ...
@overload
def breakdown(conn: Connection, start: datetime, end: datetime,
              by: Dimension) -> list[AgentSpend] | list[ProviderSpend] | list[ModelSpend] | list[ChannelSpend]: ...


def breakdown(conn: Connection, start: datetime, end: datetime,
              by: Dimension) -> list[AgentSpend] | list[ProviderSpend] | list[ModelSpend] | list[ChannelSpend]:
    """Spend in [start, end) per agent, provider, model or channel, largest first, with its share in percent."""
    group = totals_between(conn, [start, end], (by,)).groups[0]
    grand = sum(t.cost_micros for t in group.values())
    items = []
    for (value,), totals in sorted(group.items(), key=lambda kv: (-kv[1].cost_micros, str(kv[0][0]))):
        share = round(100 * totals.cost_micros / grand, 2) if grand else 0.0
        items.append({by: value, **totals.as_dict(), 'share_percent': share})
    return cast(Any, items)  # the item's key is the dimension asked for: the overloads say which
