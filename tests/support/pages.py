"""Helpers for tests through NiceGUI's simulated user."""
from __future__ import annotations

import asyncio
from collections.abc import Callable


async def settle(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, 'condition not met in time'
        await asyncio.sleep(0.05)


# should_see's retries (0.1 s apart): up to 30 s, what a loaded two-core CI machine has needed for a login that
# takes 0.6 s when idle. It passes as soon as the element shows, so only a failure pays for it.
PATIENT = 300
