"""Storing what a pull returned: a source's rows replace what was stored for the days it covered."""
from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Connection, delete, insert

from services.core.db import chunked
from services.core.tables import SNAPSHOTS
from services.sources.base import PullResult


def store_snapshots(conn: Connection, source: str, result: PullResult, fetched_at: datetime | None = None) -> int:
    """Replace the source's rows for every day in the result with the new ones (rows summed per key)."""
    merged: dict[tuple[date, str, str], dict[str, Any]] = {}
    for row in result.rows:
        if row.source != source:
            raise ValueError(f'a {row.source} row in a {source} pull')
        key = (row.day, row.provider, row.model)
        total = merged.setdefault(key, {'source': source, 'day': row.day, 'provider': row.provider, 'model': row.model,
                                        'cost_micros': 0, 'input_tokens': 0, 'output_tokens': 0, 'requests': 0})
        for name in ('cost_micros', 'input_tokens', 'output_tokens', 'requests'):
            total[name] += getattr(row, name)
    days = set(result.days) | {day for day, _, _ in merged}
    for chunk in chunked(sorted(days)):
        conn.execute(delete(SNAPSHOTS).where(SNAPSHOTS.c.source == source, SNAPSHOTS.c.day.in_(chunk)))
    if merged:
        now = fetched_at or datetime.now(UTC)
        conn.execute(insert(SNAPSHOTS), [{**row, 'fetched_at': now} for row in merged.values()])
    return len(merged)
