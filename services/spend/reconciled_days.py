"""Reconciled days kept between reads: a past day's reconciliation changes only with a late event of that day, a
pull or a correction, so the dashboard's 30 days, the week and month summaries and the billed policy counters
recompute only the days that changed (today, mostly) instead of every day on every reload.

Off until `follow(hub)` (the server's runtime): then every usage event drops the days it falls in, and a correction
(repriced or removed events, another instance's writes) or a finished pull drops them all. A day read while an
invalidation arrives is not kept (a generation count), so no read stores what was already out of date.
"""
from __future__ import annotations

import bisect
import copy
import threading
from collections.abc import Callable
from datetime import date, datetime

from sqlalchemy import Connection

from services.core.periods import as_utc
from services.live.hub import EventHub
from services.live.topics import LiveEvent, Topic, UsageChanged

Day = tuple[date, datetime, datetime]  # a local day and its UTC range
MAX_DAYS = 5_000  # kept at once, for all zones and databases: memory stays bounded


class ReconciledDays:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._days: dict[tuple[str, Day], list] = {}  # (database, day) -> its cells
        self._generation = 0
        self._unsubscribe: Callable[[], None] | None = None

    def follow(self, hub: EventHub) -> None:
        self.stop()
        self._unsubscribe = hub.subscribe(self._on_event)

    def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        with self._lock:
            self._days.clear()
            self._generation += 1

    def read(self, conn: Connection, days: list[Day], compute: Callable[[Connection, list[Day]], list]) -> list:
        """The cells of `days` (consecutive local days), computing the days not kept, in consecutive runs."""
        if self._unsubscribe is None:
            return compute(conn, days)
        database = str(conn.engine.url)
        with self._lock:
            generation = self._generation
            kept = {day: self._days.get((database, day)) for day in days}
        cells: list = []
        run: list[Day] = []
        computed: dict[Day, list] = {}
        for day in [*days, None]:
            if day is not None and kept[day] is None:
                run.append(day)
                continue
            if run:
                by_date = {d[0]: d for d in run}
                computed.update((d, []) for d in run)
                for cell in compute(conn, run):
                    computed[by_date[cell.day]].append(cell)
                run = []
        with self._lock:
            if generation == self._generation and len(self._days) + len(computed) <= MAX_DAYS:
                for day, day_cells in computed.items():
                    self._days[(database, day)] = day_cells
        for day in days:
            hit = kept[day]
            cells += [copy.copy(c) for c in (computed[day] if hit is None else hit)]
        return cells

    def _on_event(self, event: LiveEvent) -> None:
        if event.topic not in (Topic.USAGE, Topic.SYNC):
            return
        with self._lock:
            self._generation += 1
            if isinstance(event, UsageChanged) and event.rows is not None:
                times = sorted(as_utc(row.ts) for row in event.rows)
                self._days = {key: cells for key, cells in self._days.items() if not _any_within(times, key[1])}
            else:
                self._days.clear()


def _any_within(times: list[datetime], day: Day) -> bool:
    index = bisect.bisect_left(times, day[1])
    return index < len(times) and times[index] < day[2]


reconciled_days = ReconciledDays()
