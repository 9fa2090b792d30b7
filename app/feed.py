"""The dashboard feed: one loader shared by every open page.

Writes publish typed events on the in-process hub (services/live/topics.py). The feed marks its data stale, waits
`coalesce_s` so a burst becomes one reload, loads the dashboard once in a worker thread, and hands the result to
every subscribed page, which only updates its elements. Twenty open tabs cost the database what one does, and no
tab polls.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from services.dashboard import DashboardSnapshot
from services.live.hub import EventHub
from services.live.topics import DASHBOARD_TOPICS, LiveEvent

log = logging.getLogger(__name__)
Listener = Callable[[DashboardSnapshot], None]


class DashboardFeed:
    def __init__(self, load: Callable[[], DashboardSnapshot], coalesce_s: float = 0.3, clock_s: float = 30.0) -> None:
        self._load = load
        self.coalesce_s = coalesce_s
        self.clock_s = clock_s  # reload now and then without events: "resets in", the ETA and the day roll on
        self.data: DashboardSnapshot | None = None
        self.reloads = 0
        self._loaded_at = 0.0
        self._listeners: list[Listener] = []
        self._frame_listeners: list[Listener] = []  # the header of every page (alerts bell and toasts)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._dirty = False
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

    def subscribe(self, listener: Listener, frame: bool = False) -> Callable[[], None]:
        """A page's listener; `frame=True` for the page header's, which `listeners` does not count."""
        listeners = self._frame_listeners if frame else self._listeners
        listeners.append(listener)

        def unsubscribe() -> None:
            if listener in listeners:
                listeners.remove(listener)
        return unsubscribe

    @property
    def listeners(self) -> int:
        return len(self._listeners)

    async def current(self) -> DashboardSnapshot:
        """The latest data; loaded first when there is none or it is older than the clock interval (no tab was
        open to keep it fresh, and "resets in" or the day itself may have moved on)."""
        if self.data is None or time.monotonic() - self._loaded_at > self.clock_s:
            await self.reload()
        assert self.data is not None
        return self.data

    async def reload(self) -> None:
        assert self._reload_lock is not None, 'DashboardFeed.start() was not called'
        async with self._reload_lock:
            self.data = await asyncio.to_thread(self._load)
            self._loaded_at = time.monotonic()
            self.reloads += 1
        for listener in [*self._listeners, *self._frame_listeners]:
            try:
                listener(self.data)
            except Exception:
                log.exception('dashboard listener failed')

    def _on_event(self, event: LiveEvent) -> None:  # any thread
        if event.topic in DASHBOARD_TOPICS and self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._mark_stale)

    def _mark_stale(self) -> None:
        self._dirty = True
        if self._pending is None or self._pending.done():
            self._pending = asyncio.get_running_loop().create_task(self._reload_while_stale())

    async def _reload_while_stale(self) -> None:
        while self._dirty:
            await asyncio.sleep(self.coalesce_s)  # events in the meantime join this reload
            self._dirty = False
            try:
                await self.reload()
            except Exception:
                log.exception('dashboard reload failed')

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.clock_s)
            if self._listeners:
                self._mark_stale()


_feed: DashboardFeed | None = None


def feed() -> DashboardFeed:
    if _feed is None:
        raise RuntimeError('the dashboard feed is not running')
    return _feed


def start_feed(load: Callable[[], DashboardSnapshot], hub: EventHub, **options: Any) -> DashboardFeed:
    global _feed
    _feed = DashboardFeed(load, **options)
    _feed.start(hub)
    return _feed


async def stop_feed() -> None:
    global _feed
    if _feed is not None:
        await _feed.stop()
        _feed = None

