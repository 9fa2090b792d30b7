"""Spend totals over time ranges, read from the rollups: whole local days from `spend_daily`; the rest of each range
from the hours of `spend_hourly` (totals per channel) or `spend_rollups` (per agent, provider and model); and an hour
that a range boundary cuts in two (a range that does not start on the hour, a half-hour time zone) from the events of
that hour alone. Every total is exact, and a read costs the number of days and edge hours it covers, never a scan of
history.
"""
from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import cache
from typing import Any, Literal, cast, overload
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Label, Table, and_, case, func, or_, select
from typing_extensions import TypedDict

from services.core.money import micros_to_usd
from services.core.periods import (
    as_utc,
    consecutive_runs,
    hour_ceil,
    hour_floor,
    local_midnight,
    midnight_on_or_after,
    midnight_on_or_before,
)
from services.core.tables import DAILY, EVENTS, HOURLY, ROLLUPS, SCOPE_ROLLUPS
from services.spend.day_zone import day_zone
from services.spend.kept import kept

DIMENSIONS = ('agent_id', 'provider', 'model', 'channel')
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
CASE_INTERVALS = 40  # intervals of whole days added up by SQL in one CASE (a comparison, a month of weeks)
RANGES_PER_QUERY = 200  # two parameters each: far below SQLite's and psycopg's limits
KEPT_DIMENSIONS = 2  # grouped by more, a read has too many groups a day to keep (a report reads one at a time)
SHORTEST_DAY = timedelta(hours=23)  # a local day, the clocks going forward
MEASURES = ('cost_micros', 'requests', 'input_tokens', 'output_tokens', 'cache_read_tokens', 'cache_write_tokens')
Dimension = Literal['agent_id', 'provider', 'model', 'channel']
SCOPE_COLUMNS = {'user': 'user_id', 'project': 'project', 'tag': 'tags', 'session': 'session_id'}  # scope rollups


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


@dataclass(slots=True)
class Totals:
    cost_micros: int = 0
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    def add(self, row: Any) -> None:
        self.cost_micros += int(row.cost_micros or 0)
        self.requests += int(row.requests or 0)
        self.input_tokens += int(row.input_tokens or 0)
        self.output_tokens += int(row.output_tokens or 0)
        self.cache_read_tokens += int(row.cache_read_tokens or 0)
        self.cache_write_tokens += int(row.cache_write_tokens or 0)

    def copy(self) -> Totals:
        return Totals(self.cost_micros, self.requests, self.input_tokens, self.output_tokens, self.cache_read_tokens,
                      self.cache_write_tokens)

    def merge(self, other: Totals) -> None:
        self.cost_micros += other.cost_micros
        self.requests += other.requests
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cache_read_tokens += other.cache_read_tokens
        self.cache_write_tokens += other.cache_write_tokens

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
    zone = day_zone(conn)
    days, rest = _whole_days(edges, zone)
    if days:
        _add_days(conn, buckets, days, by, zone)
    if rest:
        _add_hours(conn, buckets, rest, by)
    return buckets


def _whole_days(edges: list[datetime], zone: Any) -> tuple[dict[date, int], list[tuple[datetime, datetime]]]:
    """The local days (of the daily rollups' zone) that lie whole inside an interval, with the interval's index, and
    the rest of the range as sorted, disjoint, merged UTC ranges."""
    days: dict[date, int] = {}
    rest: list[tuple[datetime, datetime]] = []
    for index in range(len(edges) - 1):
        start, end = edges[index], edges[index + 1]
        if end - start < SHORTEST_DAY:  # an hour of a forecast, say: no zone conversions
            rest.append((start, end))
            continue
        first, last = midnight_on_or_after(start, zone), midnight_on_or_before(end, zone)
        if first < last:
            day, stop = first.astimezone(zone).date(), last.astimezone(zone).date()
            while day < stop:
                days[day] = index
                day += DAY
            rest += [(start, first), (last, end)]
        else:
            rest.append((start, end))
    merged: list[tuple[datetime, datetime]] = []
    for start, end in rest:
        if start >= end:
            continue
        if merged and merged[-1][1] == start:
            merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return days, merged


def _add_days(conn: Connection, buckets: Buckets, days: dict[date, int], by: Sequence[str], zone: ZoneInfo) -> None:
    """Each interval's whole days. In a server (services/spend/kept.py): day by day, the days not kept read in one
    query. Otherwise, or grouped by more than KEPT_DIMENSIONS, added up by SQL."""
    if kept.on and len(by) <= KEPT_DIMENSIONS:
        _add_kept_days(conn, buckets, days, by, zone)
    else:
        _add_days_in_sql(conn, buckets, days, by)


def _add_days_in_sql(conn: Connection, buckets: Buckets, days: dict[date, int], by: Sequence[str]) -> None:
    """An interval's days are consecutive, so a CASE on the day names the interval (one row per interval and group
    back); past CASE_INTERVALS intervals (a trend of many days), one row per day and group."""
    dims = [DAILY.c[name] for name in by]
    sums = _sums(DAILY)
    in_days = (DAILY.c.day >= min(days), DAILY.c.day <= max(days))
    spans: dict[int, tuple[date, date]] = {}
    for day, index in days.items():
        first, last = spans.get(index, (day, day))
        spans[index] = (min(first, day), max(last, day))
    if len(spans) == 1:
        ((index, _),) = spans.items()
        _add_rows(buckets.groups[index], conn.execute(select(*dims, *sums).where(*in_days).group_by(*dims)).all(),
                  len(by))
        return
    if len(spans) <= CASE_INTERVALS and any(first != last for first, last in spans.values()):
        interval = case(*((DAILY.c.day.between(first, last), index) for index, (first, last) in spans.items()),
                        else_=-1).label('interval')
        for row in conn.execute(select(interval, *dims, *sums).where(*in_days).group_by(interval, *dims)):
            if row.interval >= 0:
                _add(buckets.groups[row.interval], _key(row, by), row)
        return
    for row in conn.execute(select(DAILY.c.day, *dims, *sums).where(*in_days).group_by(DAILY.c.day, *dims)):
        day_index = days.get(row.day)
        if day_index is not None:
            _add(buckets.groups[day_index], _key(row, by), row)


def _add_kept_days(conn: Connection, buckets: Buckets, days: dict[date, int], by: Sequence[str],
                   zone: ZoneInfo) -> None:
    dates = sorted(days)
    by_range = {(local_midnight(day, zone), local_midnight(day + DAY, zone)): day for day in dates}
    dims = [DAILY.c[name] for name in by]
    sums = _sums(DAILY)

    def compute(conn: Connection, ranges: list[tuple[datetime, datetime]]) -> list[dict[tuple, Totals]]:
        wanted: dict[date, dict[tuple, Totals]] = {by_range[r]: {} for r in ranges}
        query = (select(DAILY.c.day, *dims, *sums).where(DAILY.c.day >= min(wanted), DAILY.c.day <= max(wanted))
                 .group_by(DAILY.c.day, *dims))
        for row in conn.execute(query):
            if row.day in wanted:
                _add(wanted[row.day], _key(row, by), row)
        return list(wanted.values())

    for day_range, groups in zip(by_range, kept.read(conn, ('days', *by), list(by_range), compute, len), strict=True):
        _merge(buckets.groups[days[by_range[day_range]]], groups)


def _add_hours(conn: Connection, buckets: Buckets, ranges: list[tuple[datetime, datetime]], by: Sequence[str]) -> None:
    """The hourly rollups of the hours that lie whole inside one of `ranges` and one interval; the events for the
    hours that a range or interval boundary cuts."""
    if kept.on and len(by) <= KEPT_DIMENSIONS:
        _add_kept_hours(conn, buckets, ranges, by)
        return
    edges = buckets.edges
    split_hours: set[datetime] = set()
    table = HOURLY if set(by) <= {'channel'} else ROLLUPS  # a row or two an hour, when no more is asked
    dims = [table.c[name] for name in by]
    sums = _sums(table)
    for first in range(0, len(ranges), RANGES_PER_QUERY):
        in_ranges = or_(*(and_(table.c.hour >= hour_floor(start), table.c.hour < end)
                          for start, end in ranges[first:first + RANGES_PER_QUERY]))
        for row in conn.execute(select(table.c.hour, *dims, *sums).where(in_ranges).group_by(table.c.hour, *dims)):
            hour = as_utc(row.hour)
            index = _interval(edges, hour)
            if (index is None or index != _interval(edges, hour + HOUR - timedelta(microseconds=1))
                    or not _inside(ranges, hour, hour + HOUR)):
                split_hours.add(hour)
                continue
            _add(buckets.groups[index], _key(row, by), row)
    if split_hours:
        _add_split_hours(conn, buckets, ranges, sorted(split_hours), by)


def _add_kept_hours(conn: Connection, buckets: Buckets, ranges: list[tuple[datetime, datetime]],
                    by: Sequence[str]) -> None:
    """As _add_hours, hour by hour: the whole hours not kept read in one query per RANGES_PER_QUERY runs."""
    edges = buckets.edges
    whole: list[tuple[datetime, datetime]] = []
    indexes: list[int] = []  # the interval of each whole hour
    split_hours: list[datetime] = []
    for start, end in ranges:
        hour = hour_floor(start)
        while hour < end:
            index = _interval(edges, hour)
            if (hour >= start and hour + HOUR <= end and index is not None
                    and (hour + HOUR <= edges[index + 1])):
                whole.append((hour, hour + HOUR))
                indexes.append(index)
            else:
                split_hours.append(hour)
            hour += HOUR
    table = HOURLY if set(by) <= {'channel'} else ROLLUPS
    dims = [table.c[name] for name in by]
    sums = _sums(table)

    def compute(conn: Connection, hours: list[tuple[datetime, datetime]]) -> list[dict[tuple, Totals]]:
        wanted: dict[datetime, dict[tuple, Totals]] = {start: {} for start, _ in hours}
        runs = [(run[0][0], run[-1][1]) for run in consecutive_runs(sorted(hours))]
        for first in range(0, len(runs), RANGES_PER_QUERY):
            in_runs = or_(*(and_(table.c.hour >= start, table.c.hour < end)
                            for start, end in runs[first:first + RANGES_PER_QUERY]))
            for row in conn.execute(select(table.c.hour, *dims, *sums).where(in_runs).group_by(table.c.hour, *dims)):
                groups = wanted.get(as_utc(row.hour))
                if groups is not None:
                    _add(groups, _key(row, by), row)
        return list(wanted.values())

    for index, groups in zip(indexes, kept.read(conn, ('hours', table.name, *by), whole, compute, len), strict=True):
        _merge(buckets.groups[index], groups)
    if split_hours:
        _add_split_hours(conn, buckets, ranges, split_hours, by)


def _inside(ranges: list[tuple[datetime, datetime]], start: datetime, end: datetime) -> bool:
    """Whether [start, end) lies inside one of the sorted, disjoint `ranges`."""
    index = bisect.bisect_right(ranges, (start, datetime.max.replace(tzinfo=start.tzinfo))) - 1
    return index >= 0 and ranges[index][0] <= start and end <= ranges[index][1]


def _add_split_hours(conn: Connection, buckets: Buckets, ranges: list[tuple[datetime, datetime]],
                     hours: list[datetime], by: Sequence[str]) -> None:
    edges = buckets.edges
    parts = [(max(hour, start), min(hour + HOUR, end)) for hour in hours for start, end in ranges
             if start < hour + HOUR and hour < end]
    columns = [EVENTS.c.ts, *(EVENTS.c[name] for name in by), *(EVENTS.c[name] for name in MEASURES[2:]),
               EVENTS.c.cost_micros]
    # A long range in a half-hour time zone cuts an hour a day: a bounded number of them per query
    for first in range(0, len(parts), RANGES_PER_QUERY):
        chunk = parts[first:first + RANGES_PER_QUERY]
        in_parts = or_(*(and_(EVENTS.c.ts >= start, EVENTS.c.ts < end) for start, end in chunk))
        for row in conn.execute(select(*columns).where(in_parts)):
            index = _interval(edges, as_utc(row.ts))
            if index is not None:
                _add(buckets.groups[index], _key(row, by), _EventAsRollup(row))


def scope_spend(conn: Connection, scope: str, start: datetime, end: datetime) -> dict[str, int]:
    """Cost in [start, end) per user, project, tag or session: whole hours from the scope rollups, the cut hours at
    either end from their events. (An event with two tags counts under each.)"""
    column = SCOPE_COLUMNS[scope]
    start, end = as_utc(start), as_utc(end)
    spent: dict[str, int] = {}
    first, last = hour_ceil(start), hour_floor(end)
    if first < last:
        rollups = SCOPE_ROLLUPS.c
        query = (select(rollups.value, func.sum(rollups.cost_micros))
                 .where(rollups.scope == scope, rollups.hour >= first, rollups.hour < last).group_by(rollups.value))
        spent.update((value, int(cost)) for value, cost in conn.execute(query))
        cut = [(a, b) for a, b in ((start, first), (last, end)) if a < b]
    else:
        cut = [(start, end)] if start < end else []
    if cut:
        in_cut = or_(*(and_(EVENTS.c.ts >= a, EVENTS.c.ts < b) for a, b in cut))
        for value, cost in conn.execute(select(EVENTS.c[column], EVENTS.c.cost_micros).where(in_cut)):
            for key in (dict.fromkeys(value or ()) if scope == 'tag' else (value,)):
                if key:
                    spent[key] = spent.get(key, 0) + int(cost)
    return spent


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


@cache
def _sums(table: Table) -> tuple[Label[Any], ...]:
    """Each measure summed, under its own name: built once per table (building them cost a live reload more than
    the queries that use them)."""
    return tuple(func.sum(table.c[name]).label(name) for name in MEASURES)


def _key(row: Any, by: Sequence[str]) -> tuple:
    return tuple((getattr(row, name) or None) for name in by)


def _merge(group: dict[tuple, Totals], other: dict[tuple, Totals]) -> None:
    """Add `other` into `group`; `other` (a kept interval's groups) stays as it was."""
    for key, totals in other.items():
        mine = group.get(key)
        if mine is None:
            group[key] = totals.copy()
        else:
            mine.merge(totals)


def _add_rows(group: dict[tuple, Totals], rows: Iterable[Sequence[Any]], dimensions: int) -> None:
    """Rows of (the `dimensions` grouping columns, then the MEASURES as `_sums` selects them), by position: the
    fast path for the reads that return hundreds of groups (a report's agent, provider, model and channel)."""
    for row in rows:
        key = tuple(value or None for value in row[:dimensions])
        totals = Totals(*(int(value or 0) for value in row[dimensions:]))
        mine = group.get(key)
        if mine is None:
            group[key] = totals
        else:
            mine.merge(totals)


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
