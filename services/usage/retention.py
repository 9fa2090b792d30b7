"""Retention: how far back raw usage events are kept.

Pruning deletes the events older than a cutoff, and nothing else: every total, chart, report and budget counter
reads the rollups (services/spend/rollups.py), which keep what those events added up to. The cutoff is a local
midnight of the rollups' day zone, so what goes is whole days that `spend_daily` and `spend_rollups` hold. Where a
local midnight falls inside an hour (a half-hour zone such as Asia/Kolkata), the events of that one hour a day are
kept: a read whose range starts or ends at that midnight takes the hour's two halves from its events. The latest
cutoff is kept as the watermark (`retention.pruned_before`): the usage listing says that events before it were
pruned. The deleting itself is the ledger's (`Ledger.prune_before`); the command is services/commands/usage.py.
"""
from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, and_, func, or_, select
from typing_extensions import TypedDict

from services.core.errors import Invalid
from services.core.periods import as_utc, hour_ceil, hour_floor, midnight_on_or_after, midnight_on_or_before
from services.core.settings import RETENTION_MAX_DAYS, RETENTION_MIN_DAYS
from services.core.stored import get_value, set_value
from services.core.tables import EVENTS
from services.spend.day_zone import day_zone

WATERMARK_KEY = 'retention.pruned_before'
HOUR = timedelta(hours=1)
RANGES_PER_QUERY = 200


class PruneOut(TypedDict):
    """What a prune deleted, or (dry run) would delete."""

    older_than_days: int
    cutoff: str  # ISO UTC: events before it go; a local midnight of `day_zone`
    day_zone: str  # the time zone of the daily rollups' days
    dry_run: bool
    events: int  # deleted, or that a dry run would delete
    pruned_before: str | None  # the watermark after this prune (ISO UTC): no events before it are kept


def check_days(older_than_days: int) -> int:
    if isinstance(older_than_days, bool) or not isinstance(older_than_days, int):
        raise Invalid('older_than_days: a whole number of days')
    if not RETENTION_MIN_DAYS <= older_than_days <= RETENTION_MAX_DAYS:
        raise Invalid(f'older_than_days: between {RETENTION_MIN_DAYS} and {RETENTION_MAX_DAYS} days, '
                      f'got {older_than_days}')
    return older_than_days


def cutoff(conn: Connection, older_than_days: int, now: datetime | None = None) -> datetime:
    """The local midnight (of the daily rollups' zone) at or before `now` minus the days: events before it are whole
    days older than that."""
    now = as_utc(now or datetime.now(UTC))
    return midnight_on_or_before(now - timedelta(days=check_days(older_than_days)), day_zone(conn))


def prunable_ranges(oldest: datetime, cutoff: datetime, zone: ZoneInfo) -> Iterator[tuple[datetime, datetime]]:
    """The UTC ranges [start, end) that a prune before `cutoff` (a local midnight) deletes, from the local day of
    `oldest` on: everything but the hours that a local midnight cuts. One range where midnights fall on the hour."""
    midnight = midnight_on_or_before(as_utc(oldest), zone)
    start = hour_ceil(midnight)
    while midnight < cutoff:
        following = midnight_on_or_after(midnight + HOUR, zone)
        if following != hour_floor(following):  # this midnight cuts its hour: keep that hour's events
            if start < hour_floor(following):
                yield start, hour_floor(following)
            start = hour_ceil(following)
        midnight = following
    if start < cutoff:
        yield start, cutoff


def count_prunable(conn: Connection, cutoff: datetime) -> int:
    """How many events a prune before `cutoff` deletes."""
    oldest = conn.scalar(select(func.min(EVENTS.c.ts)).where(EVENTS.c.ts < cutoff))
    if oldest is None:
        return 0
    count, ranges = 0, list(prunable_ranges(oldest, cutoff, day_zone(conn)))
    for first in range(0, len(ranges), RANGES_PER_QUERY):
        inside = or_(*(and_(EVENTS.c.ts >= a, EVENTS.c.ts < b) for a, b in ranges[first:first + RANGES_PER_QUERY]))
        count += int(conn.scalar(select(func.count()).select_from(EVENTS).where(inside)) or 0)
    return count


def pruned_before(conn: Connection) -> datetime | None:
    """The watermark: the events before it were pruned (None: never pruned)."""
    value = get_value(conn, WATERMARK_KEY)
    return as_utc(datetime.fromisoformat(value)) if value else None


def raise_watermark(conn: Connection, before: datetime) -> datetime:
    """Move the watermark up to `before` (never back: an earlier cutoff prunes nothing the later one kept)."""
    current = pruned_before(conn)
    if current is not None and current >= before:
        return current
    set_value(conn, WATERMARK_KEY, as_utc(before).isoformat())
    return as_utc(before)


def iso(ts: datetime | None) -> str | None:
    return None if ts is None else as_utc(ts).isoformat()
