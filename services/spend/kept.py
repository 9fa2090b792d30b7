"""Reads of closed time intervals kept between reads while the server runs: what a past hour or day holds changes
only with an event of that hour or day, a correction (repriced or removed events, another instance's writes) or, for
reconciled days, a pull. So a live reload reads the current hour and today again, and keeps the rest.

- Keyed by (database, kind, UTC start, UTC end) for intervals of at most a day and a DST hour (MAX_SPAN).
- `follow(hub)` turns it on (the server's runtime subscribes it first, so it drops changed intervals before any
  other listener reads them); a new event drops every kept interval that holds its time, a correction drops all,
  a finished pull drops the kinds that read pulled spend.
- A read takes a `ticket` before it reads the database; what it computed is kept only if no change since the
  ticket touched the interval (the change log covers the last LOG_SIZE changes; past that, nothing is kept).
  Under steady ingest the current hour is never kept, and every past one is.
- Bounded: at most MAX_WEIGHT groups kept in all (the oldest go first).
"""
from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from services.core.periods import as_utc, hour_floor
from services.live.hub import EventHub
from services.live.topics import LiveEvent, Topic, UsageChanged

HOUR = timedelta(hours=1)
MAX_SPAN = timedelta(hours=25)  # a local day, the day the clocks go back included
MAX_WEIGHT = 200_000  # groups (an agent's, a provider's totals...) kept at once, for every database and kind
LOG_SIZE = 1_000
RECONCILED = 'reconciled'  # the kind that reads pulled spend: a pull drops it

Key = tuple[str, Hashable, datetime, datetime]  # (database, kind, start, end)
Ticket = int
Change = frozenset[datetime] | str | None  # the hours of new events, RECONCILED (a pull), or None (everything)


class Kept:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[Key, tuple[Any, int]] = {}  # key -> (value, weight), oldest first
        self._by_hour: dict[datetime, set[Key]] = {}  # an hour -> the kept intervals that hold it
        self._weight = 0
        self._generation = 0
        self._changes: deque[tuple[int, Change]] = deque(maxlen=LOG_SIZE)
        self._unsubscribe: Callable[[], None] | None = None

    @property
    def on(self) -> bool:
        return self._unsubscribe is not None

    @property
    def weight(self) -> int:
        return self._weight

    def follow(self, hub: EventHub) -> None:
        self.stop()
        self._unsubscribe = hub.subscribe(self._on_event)

    def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        with self._lock:
            self._drop_where(lambda key: True)
            self._change(None)

    def read(self, conn: Connection, kind: Hashable, intervals: Sequence[tuple[datetime, datetime]],
             compute: Callable[[Connection, list[tuple[datetime, datetime]]], Sequence[Any]],
             weigh: Callable[[Any], int] = lambda value: 1) -> list[Any]:
        """A value for each interval: the kept ones, the others from `compute` (given the missing intervals, it returns
        their values in order), which are kept if no longer than MAX_SPAN. Values are shared between reads: never
        change one."""
        if not self.on:
            return list(compute(conn, list(intervals)))
        ticket = self.ticket()
        database = _database(conn)
        stored = self._values
        values = [None if (value := stored.get((database, kind, start, end))) is None else value[0]
                  for start, end in intervals]
        missing = [n for n, value in enumerate(values) if value is None]
        if missing:
            for n, value in zip(missing, compute(conn, [intervals[n] for n in missing]), strict=True):
                values[n] = value
            self.keep(ticket, conn, kind, ((*intervals[n], values[n], weigh(values[n])) for n in missing))
        return values

    def ticket(self) -> Ticket:
        """Take before reading the database for the values to `keep`."""
        return self._generation

    def get(self, conn: Connection, kind: Hashable, start: datetime, end: datetime) -> Any | None:
        if not self.on:
            return None
        kept = self._values.get((_database(conn), kind, start, end))
        return None if kept is None else kept[0]

    def keep(self, ticket: Ticket, conn: Connection, kind: Hashable,
             values: Iterable[tuple[datetime, datetime, Any, int]]) -> None:
        """Keep each (start, end, value, weight) that no change since `ticket` touched."""
        if not self.on:
            return
        database = _database(conn)
        with self._lock:
            changes = self._changes_since(ticket)
            if changes is None or (kind == RECONCILED and RECONCILED in changes):
                return
            hours = {hour for change in changes if isinstance(change, frozenset) for hour in change}
            for start, end, value, weight in values:
                if end - start > MAX_SPAN or (hours and any(hour in hours for hour in _hours(start, end))):
                    continue
                key = (database, kind, start, end)
                if key in self._values:
                    continue
                self._values[key] = (value, weight)
                self._weight += weight
                for hour in _hours(start, end):
                    self._by_hour.setdefault(hour, set()).add(key)
            while self._weight > MAX_WEIGHT and self._values:
                self._drop(next(iter(self._values)))

    def _changes_since(self, ticket: Ticket) -> list[Change] | None:
        """The changes since `ticket`; None if one touched everything or the log no longer reaches back to it."""
        if ticket == self._generation:
            return []
        if not self._changes or self._changes[0][0] > ticket + 1:
            return None
        changes = [change for generation, change in self._changes if generation > ticket]
        return None if None in changes else changes

    def _on_event(self, event: LiveEvent) -> None:
        if event.topic not in (Topic.USAGE, Topic.SYNC):
            return
        with self._lock:
            if event.topic is Topic.SYNC:
                self._drop_where(lambda key: key[1] == RECONCILED)
                self._change(RECONCILED)
            elif isinstance(event, UsageChanged) and event.rows is not None:
                hours = frozenset(hour_floor(as_utc(row.ts)) for row in event.rows)
                for hour in hours:
                    for key in list(self._by_hour.get(hour, ())):
                        self._drop(key)
                self._change(hours)
            else:
                self._drop_where(lambda key: True)
                self._change(None)

    def _change(self, change: Change) -> None:
        self._generation += 1
        self._changes.append((self._generation, change))

    def _drop_where(self, condition: Callable[[Key], bool]) -> None:
        for key in [k for k in self._values if condition(k)]:
            self._drop(key)

    def _drop(self, key: Key) -> None:
        _, weight = self._values.pop(key)
        self._weight -= weight
        for hour in _hours(key[2], key[3]):
            keys = self._by_hour.get(hour)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_hour[hour]


def _database(conn: Connection) -> str:
    return str(conn.engine.url)


def _hours(start: datetime, end: datetime) -> Iterable[datetime]:
    hour = hour_floor(start)
    while hour < end:
        yield hour
        hour += HOUR


kept = Kept()
