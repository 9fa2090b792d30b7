"""Ingest's own lane: `POST /usage` and `/usage/batch` do their work (parse, validate, price, write) on at most
`SPENDGAUGE_INGEST_WORKERS` threads of their own limiter, so a flood of ingest never holds the threads that other
routes run on, and `/check` (answered on the event loop without a thread) does not queue behind it.

Backpressure: a request that finds the workers busy waits its turn, in arrival order, as long as fewer than
`SPENDGAUGE_INGEST_QUEUE` requests and MAX_WAITING_BYTES of bodies wait before it (one always may, whatever its
size); beyond that it is
answered `503` with `Retry-After: 1` at once, its body not parsed and nothing stored: the client sends it again (the
LiteLLM callback does; an event with its `event_id` is counted once however often it is sent). A request let in is
carried out to the end: what was answered 200/201 is stored, and nothing is stored twice.
"""
from __future__ import annotations

import weakref
from asyncio import AbstractEventLoop, get_running_loop
from collections.abc import Callable
from typing import TypeVar

import anyio
from anyio.to_thread import run_sync
from fastapi import HTTPException, Request

from app.api.limits import MIB
from services.core.settings import get_settings

T = TypeVar('T')
MAX_WAITING_BYTES = 64 * MIB  # the bodies waiting in memory: two full 32 MiB batches
RETRY_AFTER_S = 1


class IngestBusy(HTTPException):
    """503 with Retry-After: too much ingest waits already. The connection stays open: the server passes over the
    rest of a refused body (closing it under a client still sending would reset the connection before the client
    reads the answer)."""

    def __init__(self) -> None:
        super().__init__(503, 'ingest is busy: too many usage requests wait already; send it again in '
                              f'{RETRY_AFTER_S} s (an event with its event_id is counted once)',
                         headers={'Retry-After': str(RETRY_AFTER_S)})


class Lane:
    def __init__(self, workers: int, max_waiting: int, max_waiting_bytes: int = MAX_WAITING_BYTES) -> None:
        self._turns = anyio.CapacityLimiter(workers)  # taken in arrival order, before the thread
        self._threads = anyio.CapacityLimiter(workers)  # run_sync's own: never waited on, a turn is held
        self.max_waiting = max_waiting
        self.max_waiting_bytes = max_waiting_bytes
        self.waiting = 0
        self.waiting_bytes = 0
        self.refused = 0  # answered 503 since start

    def admit(self, size: int) -> None:
        """Raise IngestBusy when the queue is full (before anything is read or parsed)."""
        if not self.waiting and self._turns.available_tokens >= 1:
            return  # it runs at once
        if self.waiting >= self.max_waiting or (self.waiting and self.waiting_bytes + size > self.max_waiting_bytes):
            self.refused += 1
            raise IngestBusy

    async def run(self, size: int, job: Callable[..., T], *args: object) -> T:
        """Run `job(*args)` on one of the lane's workers, after those waiting before it; `size`: the body's bytes.
        On the event loop only (the counts need no lock there). Once started the job runs to its end, also when
        the client goes away."""
        self.admit(size)
        self.waiting += 1
        self.waiting_bytes += size
        try:
            await self._turns.acquire()
        finally:
            self.waiting -= 1
            self.waiting_bytes -= size
        try:
            return await run_sync(job, *args, limiter=self._threads, abandon_on_cancel=False)
        finally:
            self._turns.release()


_lanes: weakref.WeakKeyDictionary[AbstractEventLoop, Lane] = weakref.WeakKeyDictionary()


def lane() -> Lane:
    """The lane of the running event loop (a test may run the app on more than one loop, one after another)."""
    loop = get_running_loop()
    found = _lanes.get(loop)
    if found is None:
        settings = get_settings()
        found = _lanes[loop] = Lane(settings.ingest_workers, settings.ingest_queue)
    return found


def request_size(request: Request) -> int:
    """The body's declared size (a chunked body has been read whole by then: counted as it is parsed)."""
    length = request.headers.get('content-length', '')
    return int(length) if length.isdigit() else 0
