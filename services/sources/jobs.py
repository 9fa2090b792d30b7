"""The scheduled pulls: APScheduler 3 on the app's event loop. LiteLLM every 15 minutes, the providers' billing
APIs every hour (both configurable), explicit job ids, coalesced, never two runs of one job at once."""
from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import wraps
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from services.sources.sync import LITELLM_SOURCES, PROVIDER_SOURCES, SyncService

log = logging.getLogger(__name__)
FIRST_RUN_DELAY = timedelta(seconds=5)  # let the server finish starting before the first pull


class SyncJobs:
    """`is_leader` says whether this instance runs the jobs now (services/live/cluster.py): each run asks first, so
    instances sharing one PostgreSQL pull once, and another takes over when the leader goes away."""

    def __init__(self, sync: SyncService, litellm_minutes: float, providers_minutes: float,
                 is_leader: Callable[[], bool] = lambda: True) -> None:
        self.sync = sync
        self.is_leader = is_leader
        self.intervals = {'litellm': litellm_minutes, 'providers': providers_minutes}
        self.scheduler = AsyncIOScheduler(timezone=UTC, job_defaults={'coalesce': True, 'max_instances': 1,
                                                                      'misfire_grace_time': 300})

    def start(self, first_run_delay: timedelta = FIRST_RUN_DELAY) -> None:
        """Call on the running event loop (app start-up). Sources without a key get no job."""
        first = datetime.now(UTC) + first_run_delay
        for group, sources in (('litellm', LITELLM_SOURCES), ('providers', PROVIDER_SOURCES)):
            configured = tuple(s for s in sources if s in self.sync.pullers)
            if configured:
                self.scheduler.add_job(self.led(self.sync.run_many), 'interval', args=[configured], id=f'sync:{group}',
                                       name=f'pull {", ".join(configured)}', replace_existing=True,
                                       minutes=self.intervals[group], next_run_time=first)
        self.scheduler.start()
        log.info('scheduled pulls: %s', ', '.join(job.id for job in self.scheduler.get_jobs()) or 'none configured')

    def add_periodic(self, job_id: str, func: Callable[[], object], minutes: float,
                     first_run_delay: timedelta = FIRST_RUN_DELAY) -> None:
        """Another process-wide job on the same scheduler (e.g. the anomaly check every 5 minutes). A plain function
        runs in the scheduler's worker threads, a coroutine function on the loop."""
        self.scheduler.add_job(self.led(func), 'interval', id=job_id, name=job_id, replace_existing=True,
                               minutes=minutes, next_run_time=datetime.now(UTC) + first_run_delay)

    def led(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """`func`, run only while this instance leads (None otherwise)."""
        if inspect.iscoroutinefunction(func):
            @wraps(func)
            async def run_async(*args: Any) -> Any:
                if await asyncio.to_thread(self.is_leader):  # a database round trip: off the loop
                    return await func(*args)
                return None
            return run_async

        @wraps(func)
        def run(*args: Any) -> Any:
            return func(*args) if self.is_leader() else None
        return run

    def stop(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
