"""Retention: how far back raw usage events are kept.

Pruning deletes the events older than a cutoff, and nothing else: every total, chart, report and budget counter
reads the rollups (services/spend/rollups.py), which keep what those events added up to. The cutoff is a local
midnight of the rollups' day zone, so what goes is whole days that `spend_daily` and `spend_rollups` hold. The
latest cutoff is kept as the watermark (`retention.pruned_before`): the usage listing says that no events before it
are listed. The deleting itself is the ledger's (`Ledger.prune_before`); the command is services/commands/usage.py.
"""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, func, select
from typing_extensions import TypedDict

from services.core.errors import Invalid
from services.core.periods import as_utc, midnight_on_or_before
from services.core.settings import RETENTION_MAX_DAYS, RETENTION_MIN_DAYS
from services.core.stored import get_value, set_value
from services.core.tables import EVENTS
from services.spend.day_zone import day_zone

WATERMARK_KEY = 'retention.pruned_before'


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


def count_before(conn: Connection, before: datetime) -> int:
    return int(conn.scalar(select(func.count()).select_from(EVENTS).where(EVENTS.c.ts < before)) or 0)


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
