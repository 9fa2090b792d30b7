"""ThrottledRefresh: a burst of changes is one refresh now and one after the interval, never more, and none after
the page is gone."""
from __future__ import annotations

import asyncio

from app.pages.live_refresh import ThrottledRefresh


async def test_a_burst_is_one_refresh_now_and_one_after_the_interval() -> None:
    started: list[float] = []
    loop = asyncio.get_running_loop()

    async def refresh() -> None:
        started.append(loop.time())

    throttled = ThrottledRefresh(refresh, every_s=0.3)
    t0 = loop.time()
    for _ in range(20):
        throttled.poke()
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.6)
    assert len(started) == 2, started
    assert started[0] - t0 < 0.1 and started[1] - started[0] >= 0.3
    throttled.poke()  # a change long after: at once
    await asyncio.sleep(0.05)
    assert len(started) == 3


async def test_nothing_runs_once_closed() -> None:
    calls: list[int] = []

    async def refresh() -> None:
        calls.append(1)

    throttled = ThrottledRefresh(refresh, every_s=0.2)
    throttled.poke()
    await asyncio.sleep(0.05)
    throttled.poke()  # waits for the interval
    throttled._closed = True  # what the page's on_delete does
    await asyncio.sleep(0.3)
    assert calls == [1]
