"""Running the pullers: one run per source at a time, a `sync_runs` record for each, snapshots stored only when a
pull succeeds (the last good data stays otherwise), alerts when a source keeps failing or LiteLLM exceeds a bill."""
from __future__ import annotations

import asyncio
import logging
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    CompoundSelect,
    Engine,
    ScalarSelect,
    Select,
    case,
    func,
    insert,
    literal,
    select,
    true,
    union_all,
    update,
)
from typing_extensions import TypedDict

from services.accounts.refusals import RefusedRequest
from services.alerting import alerts
from services.alerting.alerts import AlertOut
from services.core.errors import Conflict
from services.core.scrub import scrub
from services.core.settings import SourceSettings
from services.core.tables import SYNC_RUNS
from services.live.hub import EventHub
from services.live.topics import SyncFinished
from services.sources.base import Puller, PullResult, SourceError
from services.sources.snapshots import store_snapshots
from services.spend.reconciliation import reconcile_last_days

FAILURES_BEFORE_ALERT = 3
LITELLM_SOURCES = ('litellm',)
PROVIDER_SOURCES = ('openai_direct', 'anthropic_direct', 'openrouter_direct')
ALL_SOURCES = LITELLM_SOURCES + PROVIDER_SOURCES
NEWEST = (SYNC_RUNS.c.started_at.desc(), SYNC_RUNS.c.id.desc())  # sync runs, the newest first
UTC_ZONE = ZoneInfo('UTC')  # provider bills and LiteLLM days are UTC days
log = logging.getLogger(__name__)


class SyncRunOut(TypedDict):
    id: int
    source: str
    status: str  # running, ok, error
    rows: int  # snapshot rows stored
    error: str | None  # why it failed (never a key)
    details: dict[str, Any]
    started_at: str
    finished_at: str | None


class SourceStatus(TypedDict):
    source: str  # litellm, openai_direct, anthropic_direct, openrouter_direct
    configured: bool  # its key or URL is set
    last_run: SyncRunOut | None
    last_success_at: str | None
    last_error: str | None  # the last failure's reason (never a key)
    last_error_at: str | None
    consecutive_failures: int  # an alert is raised from FAILURES_BEFORE_ALERT on


class SyncStatus(TypedDict):
    sources: list[SourceStatus]
    # requests refused for their token since this instance started (the callback's or SDK's pushes among them)
    refused_requests: list[RefusedRequest]


class SyncRuns(TypedDict):
    runs: list[SyncRunOut]


class UnknownSource(Conflict):
    pass


class SyncService:
    def __init__(self, engine: Engine, pullers: dict[str, Puller], hub: EventHub, lookback_days: int = 3,
                 tolerance: Decimal = Decimal('0.05'), secrets: tuple[str, ...] = ()) -> None:
        self.engine = engine
        self.secrets = secrets  # scrubbed from every error stored, alerted or logged
        self.pullers = pullers
        self.hub = hub
        self.lookback_days = lookback_days
        self.tolerance = tolerance
        self._locks = {name: asyncio.Lock() for name in pullers}

    async def aclose(self) -> None:
        for puller in self.pullers.values():
            await puller.aclose()

    async def run(self, source: str, today: date | None = None) -> SyncRunOut:
        """Pull the last `lookback_days` UTC days from one source and store them. Never raises for a failed pull:
        the failure is recorded in sync_runs (and alerted after FAILURES_BEFORE_ALERT in a row)."""
        if source not in self.pullers:
            raise UnknownSource(f'{source} is not configured: {SourceSettings.how_to_enable(source)}; configured: '
                                f'{", ".join(self.pullers) or "none"}')
        async with self._locks[source]:  # one run per source at a time
            today = today or datetime.now(UTC).date()
            since = today - timedelta(days=self.lookback_days - 1)
            run_id = await asyncio.to_thread(self._start_run, source)
            try:
                result = await self.pullers[source].pull(since, today)
            except SourceError as exc:
                return await asyncio.to_thread(self._finish_failed, run_id, source, f'{exc.kind}: {exc}')
            except Exception as exc:  # a bug in a puller must not stop the scheduler
                log.exception('sync of %s failed unexpectedly', source)
                return await asyncio.to_thread(self._finish_failed, run_id, source,
                                               f'internal: {type(exc).__name__}')
            return await asyncio.to_thread(self._finish_ok, run_id, source, result)

    async def run_many(self, sources: tuple[str, ...]) -> list[SyncRunOut]:
        return [await self.run(name) for name in sources if name in self.pullers]

    # --- database side (worker threads) ------------------------------------------------------------------------

    def _start_run(self, source: str) -> int:
        with self.engine.begin() as conn:
            return conn.execute(insert(SYNC_RUNS).values(source=source, started_at=datetime.now(UTC),
                                                         status='running', rows=0, details={})
                                .returning(SYNC_RUNS.c.id)).scalar_one()

    def _finish_ok(self, run_id: int, source: str, result: PullResult) -> SyncRunOut:
        with self.engine.begin() as conn:
            rows = store_snapshots(conn, source, result)
            conn.execute(update(SYNC_RUNS).where(SYNC_RUNS.c.id == run_id).values(
                finished_at=datetime.now(UTC), status='ok', rows=rows, details=result.details))
            alerts.resolve_key(conn, f'sync_failure:{source}')
            raised = self._check_gaps(conn)
            run = _run(conn, run_id)
        self.hub.publish(SyncFinished(source, 'ok'))
        alerts.publish_new(self.hub, raised)
        return run

    def _finish_failed(self, run_id: int, source: str, error: str) -> SyncRunOut:
        error = scrub(error, self.secrets, 2000)  # secrets out first, then cut
        with self.engine.begin() as conn:
            conn.execute(update(SYNC_RUNS).where(SYNC_RUNS.c.id == run_id).values(
                finished_at=datetime.now(UTC), status='error', error=error))
            failures = consecutive_failures(conn, source)
            raised: list[tuple[AlertOut | None, bool]] = []
            if failures >= FAILURES_BEFORE_ALERT:
                raised.append(alerts.raise_alert(conn, 'sync_failure', 'warning',
                                                 f'{source}: {failures} syncs in a row failed; last error: {error}',
                                                 f'sync_failure:{source}', {'source': source, 'failures': failures}))
            run = _run(conn, run_id)
        log.warning('sync of %s failed: %s', source, error)
        self.hub.publish(SyncFinished(source, 'error'))
        alerts.publish_new(self.hub, raised)
        return run

    def _check_gaps(self, conn: Any) -> list[tuple[AlertOut | None, bool]]:
        raised = []
        for cell in reconcile_last_days(conn, self.lookback_days, UTC_ZONE):
            key = f'reconciliation_gap:{cell.provider}:{cell.day.isoformat()}'
            if cell.gap_exceeds(self.tolerance):
                raised.append(alerts.raise_alert(
                    conn, 'reconciliation_gap', 'warning',
                    f'{cell.provider} on {cell.day}: LiteLLM reports ${cell.litellm / 1e6:.4f} but the provider '
                    f'billed ${(cell.billed or 0) / 1e6:.4f}', key,
                    {'provider': cell.provider, 'day': cell.day.isoformat(), 'litellm_micros': cell.litellm,
                     'billed_micros': cell.billed}))
            else:
                alerts.resolve_key(conn, key)
        return raised


def consecutive_failures(conn: Any, source: str) -> int:
    return int(conn.execute(select(_failures_in_a_row(source))).scalar_one())


def sync_status(conn: Any, configured: list[str]) -> list[SourceStatus]:
    """Per source: configured or not, the last run, the last success and the last error: two statements in all
    (the dashboard reloads this each time a pull ends)."""
    latest, in_a_row = _status_statements()
    found: dict[tuple[str, str], Any] = {(row.source, row.what): row for row in conn.execute(latest)}
    failures = conn.execute(in_a_row).one()
    result: list[SourceStatus] = []
    for source, failed in zip(ALL_SOURCES, failures, strict=True):
        last, success, failure = (found.get((source, what)) for what in ('last', 'ok', 'error'))
        result.append({'source': source, 'configured': source in configured,
                       'last_run': _public(last) if last else None,
                       'last_success_at': success.finished_at.isoformat() if success else None,
                       'last_error': failure.error if failure else None,
                       'last_error_at': failure.finished_at.isoformat() if failure and failure.finished_at else None,
                       'consecutive_failures': int(failed)})
    return result


@cache
def _status_statements() -> tuple[CompoundSelect, Select]:
    """Built once: each source's last, last good and last failed run, as (what, the run's columns) rows; and each
    source's failures in a row, one column per source."""
    picks = []
    for source in ALL_SOURCES:
        for what, condition in (('last', true()), ('ok', SYNC_RUNS.c.status == 'ok'),
                                ('error', SYNC_RUNS.c.status == 'error')):
            picks.append(select(literal(what).label('what'), *SYNC_RUNS.c)
                         .where(SYNC_RUNS.c.source == source, condition).order_by(*NEWEST).limit(1).subquery())
    latest = union_all(*(select(pick) for pick in picks))
    return latest, select(*(_failures_in_a_row(source).label(f'f{n}') for n, source in enumerate(ALL_SOURCES)))


def _failures_in_a_row(source: str, limit: int = 50) -> ScalarSelect[Any]:
    """The source's failed runs since its last finished run that did not fail (counted up to `limit`)."""
    recent = (select(SYNC_RUNS.c.status, func.row_number().over(order_by=NEWEST).label('n'))
              .where(SYNC_RUNS.c.source == source, SYNC_RUNS.c.status != 'running')
              .order_by(*NEWEST).limit(limit).subquery())
    first_other = func.min(case((recent.c.status != 'error', recent.c.n)))
    return select(func.coalesce(first_other - 1, func.count())).select_from(recent).scalar_subquery()


def _run(conn: Any, run_id: int) -> SyncRunOut:
    return _public(conn.execute(select(SYNC_RUNS).where(SYNC_RUNS.c.id == run_id)).one())


def _public(row: Any) -> SyncRunOut:
    return {'id': row.id, 'source': row.source, 'status': row.status, 'rows': row.rows, 'error': row.error,
            'details': row.details or {}, 'started_at': row.started_at.isoformat(),
            'finished_at': row.finished_at.isoformat() if row.finished_at else None}

