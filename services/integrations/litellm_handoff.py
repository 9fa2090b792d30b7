"""Waiting until LiteLLM has handed its finished calls to the callbacks.

LiteLLM runs success callbacks after the call has returned to its caller: a sync call's on its logging thread pool
(`litellm.litellm_core_utils.thread_pool_executor.executor`), an async call's from a task that queues them on its
logging worker (`litellm.litellm_core_utils.logging_worker.GLOBAL_LOGGING_WORKER`), which runs on the caller's event
loop. Until then the call is in neither SpendGaugeLogger's queue nor SpendGauge. Both are LiteLLM internals (read in
1.108.7 and 1.110.2): where one is missing or was never used, there is nothing to wait for. The modules are looked
up, never imported: a process that has not loaded them has made no call through them.
"""
from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import Any

log = logging.getLogger(__name__)
WORKER_MODULE = 'litellm.litellm_core_utils.logging_worker'
EXECUTOR_MODULE = 'litellm.litellm_core_utils.thread_pool_executor'
POLL_S = 0.005


def _worker() -> Any | None:
    return getattr(sys.modules.get(WORKER_MODULE), 'GLOBAL_LOGGING_WORKER', None)


def _executor() -> Any | None:
    return getattr(sys.modules.get(EXECUTOR_MODULE), 'executor', None)


def executor_backlog() -> int:
    """Tasks queued or running on LiteLLM's logging thread pool (its bounded pool counts both; a plain
    ThreadPoolExecutor, in older LiteLLM, shows only the queued ones)."""
    executor = _executor()
    if executor is None:
        return 0
    free = getattr(getattr(executor, '_pending_slots', None), '_value', None)  # a threading.Semaphore's count
    cap = getattr(executor, '_max_pending_tasks', None)
    if isinstance(cap, int) and isinstance(free, int):
        return max(cap - free, 0)
    queue = getattr(executor, '_work_queue', None)
    return queue.qsize() if queue is not None else 0


def _worker_loop(worker: Any) -> asyncio.AbstractEventLoop | None:
    """The running event loop LiteLLM's logging worker is bound to, if any."""
    loop = getattr(worker, '_bound_loop', None)
    return loop if isinstance(loop, asyncio.AbstractEventLoop) and loop.is_running() else None


def _worker_queued(worker: Any) -> int:
    queue = getattr(worker, '_queue', None)
    return queue.qsize() if queue is not None else 0


async def _drain_worker_here(worker: Any, deadline: float) -> bool:
    """On the worker's loop: let the logging tasks that the calls just made have scheduled run (each puts its
    callbacks on the worker's queue in its first step), then wait until the worker has run everything queued."""
    await asyncio.sleep(0)
    try:
        await asyncio.wait_for(worker.flush(), max(deadline - time.monotonic(), 0))
    except TimeoutError:
        return False
    return True


async def _wait_executor(deadline: float) -> bool:
    while executor_backlog():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(POLL_S)
    return True


def wait_executor(deadline: float) -> bool:
    """Block until LiteLLM's logging thread pool is idle; False when the deadline came first."""
    while executor_backlog():
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_S)
    return True


async def adrain(deadline: float) -> bool:
    """From a coroutine: wait for LiteLLM's logging worker and thread pool to be idle (`deadline` is a
    time.monotonic() value); False when the deadline came first or the worker's loop is not running."""
    await asyncio.sleep(0)  # the logging tasks of the calls just made run first: they bind the worker to this loop
    worker = _worker()
    drained = True
    if worker is not None:
        loop = _worker_loop(worker)
        if loop is asyncio.get_running_loop():
            drained = await _drain_worker_here(worker, deadline)
        elif loop is not None:
            future = asyncio.run_coroutine_threadsafe(_drain_worker_here(worker, deadline), loop)
            drained = await asyncio.wrap_future(future)
        else:
            drained = _worker_queued(worker) == 0
    return await _wait_executor(deadline) and drained


_warned_on_loop = False


def drain(deadline: float) -> bool:
    """From a thread: the same as `adrain`. Called on the worker's own loop it cannot wait for the worker without
    blocking it: it says so once (use `await logger.aflush()` there) and waits for the thread pool only."""
    global _warned_on_loop
    worker = _worker()
    drained = True
    if worker is not None:
        loop = _worker_loop(worker)
        if loop is not None and loop is _running_loop():
            if not _warned_on_loop:
                _warned_on_loop = True
                log.warning('SpendGauge: flush() on the event loop cannot wait for the async callbacks of LiteLLM; '
                            'use `await logger.aflush()` (or aclose()) in async code')
            drained = _worker_queued(worker) == 0
        elif loop is not None:
            future = asyncio.run_coroutine_threadsafe(_drain_worker_here(worker, deadline), loop)
            try:
                drained = future.result(max(deadline - time.monotonic(), 0) + 1)
            except TimeoutError:
                future.cancel()
                drained = False
        else:
            drained = _worker_queued(worker) == 0
    return wait_executor(deadline) and drained


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None



def run_left_behind() -> None:
    """At interpreter exit. LiteLLM's own exit handler runs the async callbacks that a finished event loop left on
    its worker's queue, but only after ours (it registered first), when the logger is closed: run it now instead
    (it empties the queue, so it does nothing when called again)."""
    worker = _worker()
    flush_on_exit = getattr(worker, '_flush_on_exit', None)
    if worker is not None and _worker_loop(worker) is None and _worker_queued(worker) and callable(flush_on_exit):
        flush_on_exit()
