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
from zoneinfo import ZoneInfo

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger

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

    def add_daily(self, job_id: str, func: Callable[[], object], hour: int, minute: int, zone: ZoneInfo,
                  misfire_grace: timedelta = timedelta(hours=1)) -> None:
        """A job once a day at a local time of `zone` (daylight saving as the zone has it), led like the others. A
        run missed by up to `misfire_grace` (the server was restarting) still runs."""
        self.scheduler.add_job(self.led(func), CronTrigger(hour=hour, minute=minute, timezone=zone), id=job_id,
                               name=job_id, replace_existing=True,
                               misfire_grace_time=int(misfire_grace.total_seconds()))

    def led(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """`func`, run only while this instance leads (None otherwise): a coroutine function on the loop, a plain
        one in a worker thread. A run that the server's shutdown cancels ends quietly, not as a failed job."""
        async def call(*args: Any) -> Any:
            if inspect.iscoroutinefunction(func):
                return await func(*args)
            return await asyncio.to_thread(func, *args)

        @wraps(func)
        async def run(*args: Any) -> Any:
            try:
                if await asyncio.to_thread(self.is_leader):  # a database round trip: off the loop
                    return await call(*args)
            except asyncio.CancelledError:
                log.info('%s: cancelled by the shutdown', getattr(func, '__name__', func))
            return None
        return run

    def stop(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
