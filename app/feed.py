"""The dashboard feed: one loader shared by every open page.

Writes publish typed events on the in-process hub (services/live/topics.py). Each event marks the parts of the
snapshot its topic touches as stale (services/dashboard.py's TOPIC_PARTS). The feed reloads the stale parts that some
listener wants, in a worker thread, and hands the new snapshot to the listeners that want a reloaded part; pages then
update only the elements whose data changed. Twenty open tabs cost the database what one does, and no tab polls.

- Leading edge: the first event after a quiet spell reloads at once. Events during a reload, or within `coalesce_s`
  after it, join one trailing reload when that window is over: at most one reload in flight and one queued, so a
  burst costs at most two reloads per window.
- No listener, no reload: the parts only become stale; `current()` (a page opening) loads them first, and a
  listener that subscribes to a stale part gets it reloaded.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection
from typing import Any

from services.dashboard import ALL_PARTS, DashboardSnapshot, Part, parts_for
from services.live.hub import EventHub
from services.live.topics import LiveEvent

log = logging.getLogger(__name__)
Listener = Callable[[DashboardSnapshot], None]
Load = Callable[[DashboardSnapshot | None, frozenset[Part]], DashboardSnapshot]  # (previous, parts) -> snapshot


class DashboardFeed:
    def __init__(self, load: Load, coalesce_s: float = 0.3, clock_s: float = 30.0) -> None:
        self._load = load
        self.coalesce_s = coalesce_s
        self.clock_s = clock_s  # everything goes stale now and then: "resets in", the ETA and the day roll on
        self.data: DashboardSnapshot | None = None
        self.reloads = 0
        self.stale: set[Part] = set(ALL_PARTS)
        self._quiet_at = 0.0  # time.monotonic() from which a reload may start at once
        self._listeners: list[tuple[Listener, frozenset[Part]]] = []
        self._frame_listeners: list[tuple[Listener, frozenset[Part]]] = []  # every page's header (bell, toasts)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: asyncio.Task | None = None
        self._clock: asyncio.Task | None = None
        self._reload_lock: asyncio.Lock | None = None
        self._unsubscribe: Callable[[], None] | None = None

    def start(self, hub: EventHub) -> None:
        """Call on the running event loop (app start-up)."""
        self._loop = asyncio.get_running_loop()
        self._reload_lock = asyncio.Lock()
        self._unsubscribe = hub.subscribe(self._on_event)
        self._clock = self._loop.create_task(self._tick())

    async def stop(self) -> None:
        if self._unsubscribe:
            self._unsubscribe()
        for task in (self._clock, self._pending):
            if task and not task.done():
                task.cancel()
        self._listeners.clear()
        self._frame_listeners.clear()

    def subscribe(self, listener: Listener, frame: bool = False,
                  parts: Collection[Part] = ALL_PARTS) -> Callable[[], None]:
        """A page's listener, called after a reload of any of `parts`; `frame=True` for the page header's, which
        `listeners` does not count."""
        listeners = self._frame_listeners if frame else self._listeners
        entry = (listener, frozenset(parts))
        listeners.append(entry)
        self._schedule()  # an event may have come after the page's current(): its parts were not reloaded

        def unsubscribe() -> None:
            if entry in listeners:
                listeners.remove(entry)
        return unsubscribe

    @property
    def listeners(self) -> int:
        return len(self._listeners)

    @property
    def wanted(self) -> frozenset[Part]:
        """The parts some listener wants."""
        return frozenset().union(*(parts for _, parts in [*self._listeners, *self._frame_listeners]))

    async def current(self) -> DashboardSnapshot:
        """The latest data, its stale parts loaded first (no listener wanted them, or the clock made them stale)."""
        if self.data is None or self.stale:
            await self.reload(self.stale)
        assert self.data is not None
        return self.data

    async def reload(self, parts: Collection[Part] = ALL_PARTS) -> None:
        assert self._reload_lock is not None, 'DashboardFeed.start() was not called'
        async with self._reload_lock:
            parts = ALL_PARTS if self.data is None else frozenset(parts)
            self.stale -= parts  # events from now on make them stale again
            try:
                self.data = await asyncio.to_thread(self._load, self.data, parts)
            except BaseException:
                self.stale |= parts
                raise
            finally:
                self._quiet_at = time.monotonic() + self.coalesce_s
            self.reloads += 1
        for listener, wanted in [*self._listeners, *self._frame_listeners]:
            if wanted & parts:
                try:
                    listener(self.data)
                except Exception:
                    log.exception('dashboard listener failed')

    def _on_event(self, event: LiveEvent) -> None:  # any thread
        parts = parts_for(event)
        if parts and self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._mark_stale, parts)

    def _mark_stale(self, parts: frozenset[Part]) -> None:
        self.stale |= parts
        self._schedule()

    def _schedule(self) -> None:
        if self.stale & self.wanted and (self._pending is None or self._pending.done()) and self._loop is not None:
            self._pending = self._loop.create_task(self._reload_while_stale())

    async def _reload_while_stale(self) -> None:
        assert self._reload_lock is not None
        while parts := self.stale & self.wanted:
            if self._reload_lock.locked():  # a page's current() is reloading: after it, its window
                async with self._reload_lock:
                    continue
            wait = self._quiet_at - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)  # events in the meantime join this reload
                continue
            try:
                await self.reload(parts)
            except Exception:
                log.exception('dashboard reload failed')  # the parts stay stale: the next event or page retries
                return

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.clock_s)
            self._mark_stale(ALL_PARTS)


_feed: DashboardFeed | None = None


def feed() -> DashboardFeed:
    if _feed is None:
        raise RuntimeError('the dashboard feed is not running')
    return _feed


def start_feed(load: Load, hub: EventHub, **options: Any) -> DashboardFeed:
    global _feed
    _feed = DashboardFeed(load, **options)
    _feed.start(hub)
    return _feed


async def stop_feed() -> None:
    global _feed
    if _feed is not None:
        await _feed.stop()
        _feed = None
