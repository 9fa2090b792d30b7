"""The time zone of `spend_daily`'s days: one per database, in the `rollups.day_zone` setting, read in the same
transaction as the rows it keys (another process may re-key them).

Reads are right whatever the zone (a local day of another zone is read from the hours); the server re-keys the days
to its own zone at start-up so that its days are whole rows.
"""
from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, delete, func, insert, select

from services.core.periods import as_utc
from services.core.stored import get_value, set_value
from services.core.tables import DAILY, EVENTS, ROLLUPS

KEY = 'rollups.day_zone'
DAY_KEY = ('agent_id', 'provider', 'model', 'channel')
DAY_MEASURES = ('input_tokens', 'output_tokens', 'cache_read_tokens', 'cache_write_tokens', 'cost_micros', 'requests')
HOUR = timedelta(hours=1)
CHUNK = 5_000
HOURS_PER_READ = 100


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def day_zone(conn: Connection) -> ZoneInfo:
    return _zone(get_value(conn, KEY) or 'UTC')


def local_day(ts: datetime, zone: ZoneInfo) -> date:
    return as_utc(ts).astimezone(zone).date()


def rekey_days(conn: Connection, zone: ZoneInfo) -> bool:
    """Rebuild `spend_daily` from the hourly rollups with the days of `zone`, when it is not keyed so already.
    An hour that a local midnight cuts (a half-hour zone) is split by its events, or counted in the day it starts
    in when they were pruned. Returns whether anything was rebuilt."""
    if day_zone(conn).key == zone.key:
        return False
    days: dict[tuple, dict[str, int]] = {}
    hours = list(conn.execute(select(ROLLUPS.c.hour).distinct().order_by(ROLLUPS.c.hour)).scalars())
    for first in range(0, len(hours), HOURS_PER_READ):
        chunk = hours[first:first + HOURS_PER_READ]
        by_hour: dict[datetime, list[Any]] = {}
        in_chunk = select(ROLLUPS).where(ROLLUPS.c.hour >= chunk[0], ROLLUPS.c.hour <= chunk[-1])
        for row in conn.execute(in_chunk).mappings():
            by_hour.setdefault(row['hour'], []).append(row)
        for hour, rows in by_hour.items():
            start = as_utc(hour).astimezone(zone)
            end = (as_utc(hour) + HOUR - timedelta(microseconds=1)).astimezone(zone)
            if start.date() == end.date() or not _split_by_events(conn, as_utc(hour), rows, zone, days):
                for row in rows:
                    _add(days, (start.date(), *(row[c] for c in DAY_KEY)), row)
    conn.execute(delete(DAILY))
    _insert(conn, days)
    set_value(conn, KEY, zone.key)
    return True


def _split_by_events(conn: Connection, hour: datetime, rows: list[Any], zone: ZoneInfo,
                     days: dict[tuple, dict[str, int]]) -> bool:
    requests = sum(r['requests'] for r in rows)
    in_hour = (EVENTS.c.ts >= hour, EVENTS.c.ts < hour + HOUR)
    if conn.scalar(select(func.count()).select_from(EVENTS).where(*in_hour)) != requests:
        return False  # pruned (or being written): the hour goes to the day it starts in
    columns = [EVENTS.c[c] for c in ('ts', 'agent_id', 'provider', 'model', 'channel', *DAY_MEASURES[:-1])]
    for event in conn.execute(select(*columns).where(*in_hour)).mappings():
        key = (local_day(event['ts'], zone), event['agent_id'] or '', event['provider'], event['model'],
               event['channel'])
        _add(days, key, {**event, 'requests': 1})
    return True


def _add(days: dict[tuple, dict[str, int]], key: tuple, row: Any) -> None:
    totals = days.get(key)
    if totals is None:
        totals = days[key] = dict.fromkeys(DAY_MEASURES, 0)
    for name in DAY_MEASURES:
        totals[name] += int(row[name] or 0)


def _insert(conn: Connection, days: dict[tuple, dict[str, int]]) -> None:
    rows: Iterable[dict[str, Any]] = ({'day': key[0], **dict(zip(DAY_KEY, key[1:], strict=True)), **totals}
                                      for key, totals in days.items())
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == CHUNK:
            conn.execute(insert(DAILY), batch)
            batch = []
    if batch:
        conn.execute(insert(DAILY), batch)

