"""When does today's budget run out? A trailing-rate estimate for now; the forecast issue replaces the method
behind `day_forecast` without changing its shape."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection

from services.money import format_usd, money
from services.periods import hour_floor, period_containing
from services.spend import totals_between

TRAILING_WINDOW = timedelta(hours=1)


def day_forecast(conn: Connection, spent_micros: int, limit_micros: int | None, zone: ZoneInfo,
                 now: datetime | None = None) -> dict[str, Any]:
    """ETA at which today's spend reaches the limit, or the projected end-of-day spend when it holds."""
    now = now or datetime.now(UTC)
    day = period_containing('day', now, zone)
    # Whole rollup hours only (the last full hour and the current one so far), so the estimate never reads events.
    this_hour = hour_floor(now)
    window_start = max(day.start, this_hour - TRAILING_WINDOW)
    window = (now - window_start).total_seconds()
    edges = [hour_floor(window_start), this_hour + timedelta(hours=1)]
    recent = totals_between(conn, edges).total(0).cost_micros if window > 0 else 0
    rate = recent / window if window > 0 else 0.0  # micro-USD per second
    projected = spent_micros + round(rate * (day.end - now).total_seconds())
    result: dict[str, Any] = {'method': 'trailing_rate', 'window_s': int(window),
                              **money('rate_per_hour', round(rate * 3600)), **money('projected', projected),
                              'eta': None}
    if limit_micros is None:
        return {**result, 'state': 'no_limit', 'text': f'~{format_usd(projected)} projected by midnight'}
    if spent_micros >= limit_micros:
        return {**result, 'state': 'exceeded',
                'text': f'Budget exhausted: {format_usd(spent_micros)} of {format_usd(limit_micros)}'}
    if rate > 0 and projected >= limit_micros:
        eta = now + timedelta(seconds=(limit_micros - spent_micros) / rate)
        return {**result, 'state': 'exhausts', 'eta': eta.isoformat(),
                'text': f'Budget exhausted at ~{eta.astimezone(zone):%H:%M}'}
    return {**result, 'state': 'holds',
            'text': f'Holds until midnight: ~{format_usd(projected)} of {format_usd(limit_micros)} projected'}
