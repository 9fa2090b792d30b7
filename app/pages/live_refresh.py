"""A page section that follows the live feed by reading itself again: at most once per interval, so a burst of calls
costs one read, and always once after the last change."""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection

from nicegui import ui

from app.feed import feed
from services.dashboard import Part


class ThrottledRefresh:
    def __init__(self, refresh: Callable[[], Awaitable[None]], every_s: float) -> None:
        self.refresh = refresh
        self.every_s = every_s
        self._last = float('-inf')  # when the last refresh started (the loop's clock)
        self._pending = False
        self._closed = False
        self._task: asyncio.Task[None] | None = None  # held: the loop keeps only a weak reference

    def follow(self, parts: Collection[Part]) -> None:
        """Refresh after each feed reload of `parts`, until the page's client is gone (call inside the page)."""
        unsubscribe = feed().subscribe(lambda _: self.poke(), parts=parts)

        def close() -> None:
            self._closed = True
            unsubscribe()
        ui.context.client.on_delete(close)

    def poke(self) -> None:
        """Something changed: refresh now, or when the interval since the last refresh is over."""
        if self._pending or self._closed:
            return
        self._pending = True
        self._task = asyncio.get_running_loop().create_task(self._run(), name='throttled page refresh')

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(max(0.0, self._last + self.every_s - loop.time()))
        self._pending = False  # a change from here on asks for one more refresh
        if self._closed:
            return
        self._last = loop.time()
        await self.refresh()
