"""Helpers for tests through NiceGUI's simulated user."""
from __future__ import annotations

import asyncio
from collections.abc import Callable


async def settle(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, 'condition not met in time'
        await asyncio.sleep(0.05)
