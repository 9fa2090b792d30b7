"""Running the pullers: sync runs, last good data kept, failure and gap alerts, the scheduler on the app's loop, and
the whole path through a real server and the CLI. The sources are real pullers against a fake API on 127.0.0.1."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from services.alerting import alerts
from services.core.tables import SNAPSHOTS
from services.live.hub import EventHub
from services.live.topics import LiveEvent, SyncFinished
from services.sources.jobs import SyncJobs
from services.sources.openrouter import OpenRouterPuller
from services.sources.sync import SyncService, sync_status
from services.usage.ledger import Ledger
from services.usage.pricing import Pricer
from tests.support.fake_api import FakeAPI, Reply
from tests.support.fixtures import FIXTURES as RECORDED
from tests.support.servers import clean_env, start_server

FIXTURES = RECORDED / 'providers'
KEY = 'sk-or-v1-secret-test-key'
KEY_PATH = '/api/v1/key'
TODAYS_USAGE = 6_120_400  # usage_daily $6.1204 in openrouter_key.json


def key_body() -> dict:
    return json.loads((FIXTURES / 'openrouter_key.json').read_text())


@pytest.fixture
def fake() -> Iterator[FakeAPI]:
    with FakeAPI() as api:
        yield api


def service(engine: Engine, fake: FakeAPI, hub: EventHub | None = None) -> SyncService:
    puller = OpenRouterPuller(KEY, fake.url, retries=0, backoff_s=0.01, timeout=2)
    return SyncService(engine, {'openrouter_direct': puller}, hub or EventHub(), lookback_days=3)


async def test_a_successful_run_stores_the_day_and_is_recorded(engine: Engine, fake: FakeAPI) -> None:
    fake.route(KEY_PATH, key_body())
    hub = EventHub()
    seen: list[LiveEvent] = []
    hub.subscribe(seen.append)
    sync = service(engine, fake, hub)
    run = await sync.run('openrouter_direct')
    await sync.aclose()
    assert (run['status'], run['rows'], run['error']) == ('ok', 1, None)
    with engine.connect() as conn:
        rows = conn.execute(select(SNAPSHOTS.c.source, SNAPSHOTS.c.provider, SNAPSHOTS.c.cost_micros)).all()
        status = {s['source']: s for s in sync_status(conn, ['openrouter_direct'])}
    assert rows == [('openrouter_direct', 'openrouter', TODAYS_USAGE)]
    assert status['openrouter_direct']['last_success_at'] == run['finished_at']
    assert status['openai_direct']['configured'] is False
    assert [(e.topic, e.status) for e in seen if isinstance(e, SyncFinished)] == [('sync', 'ok')]


async def test_failures_keep_the_last_good_data_and_alert_on_the_third(engine: Engine, fake: FakeAPI) -> None:
    body = key_body()
    fake.route(KEY_PATH, body, Reply({'error': {'message': f'bad key {KEY}'}}, status=401))
    sync = service(engine, fake)
    assert (await sync.run('openrouter_direct'))['status'] == 'ok'
    for attempt in range(1, 4):
        run = await sync.run('openrouter_direct')
        assert run['status'] == 'error' and run['error'] is not None and run['error'].startswith('auth:')
        assert KEY not in run['error']
        with engine.connect() as conn:
            open_alerts = alerts.list_alerts(conn, type='sync_failure')
            stored: Sequence[int] = conn.execute(select(SNAPSHOTS.c.cost_micros)).scalars().all()
        assert stored == [TODAYS_USAGE], 'a failed pull must not touch the last good data'
        assert len(open_alerts) == (1 if attempt == 3 else 0)
    assert 'openrouter_direct: 3 syncs in a row failed' in open_alerts[0]['message']
    fake.route(KEY_PATH, body)
    assert (await sync.run('openrouter_direct'))['status'] == 'ok'
    with engine.connect() as conn:
        assert alerts.list_alerts(conn, type='sync_failure') == [], 'a success resolves the alert'
        assert KEY not in json.dumps(sync_status(conn, ['openrouter_direct']))
    await sync.aclose()


async def test_litellm_above_the_bill_raises_a_gap_alert(engine: Engine, fake: FakeAPI) -> None:
    Ledger(engine, Pricer(), EventHub()).record(
        {'model': 'openai/gpt-4o-mini', 'provider': 'openrouter', 'channel': 'litellm', 'cost_usd': '9.00'})
    fake.route(KEY_PATH, key_body())  # billed today: $6.1204, LiteLLM saw $9
    sync = service(engine, fake)
    await sync.run('openrouter_direct')
    await sync.aclose()
    with engine.connect() as conn:
        gaps = alerts.list_alerts(conn, type='reconciliation_gap')
    assert len(gaps) == 1 and gaps[0]['data']['billed_micros'] == TODAYS_USAGE
    assert gaps[0]['data']['litellm_micros'] == 9_000_000


async def test_the_scheduler_runs_pulls_on_the_apps_loop(engine: Engine, fake: FakeAPI) -> None:
    fake.route(KEY_PATH, key_body())
    sync = service(engine, fake)
    jobs = SyncJobs(sync, litellm_minutes=15, providers_minutes=0.5 / 60)  # every half second
    jobs.start(first_run_delay=timedelta(0))
    try:
        assert [job.id for job in jobs.scheduler.get_jobs()] == ['sync:providers']
        deadline = asyncio.get_running_loop().time() + 10
        while len(fake.hits(KEY_PATH)) < 3:
            assert asyncio.get_running_loop().time() < deadline, 'the job did not run three times'
            await asyncio.sleep(0.05)
    finally:
        jobs.stop()
        await sync.aclose()
    job_defaults = jobs.scheduler._job_defaults  # coalesced, one instance at a time
    assert job_defaults['coalesce'] is True and job_defaults['max_instances'] == 1


def test_sync_through_the_api_and_the_cli(fake: FakeAPI, tmp_path: Path) -> None:
    fake.route(KEY_PATH, key_body())
    srv = start_server(tmp_path, SPENDGAUGE_OPENROUTER_KEY=KEY, SPENDGAUGE_OPENROUTER_URL=fake.url,
                       SPENDGAUGE_PROVIDERS_SYNC_MINUTES='600')
    try:
        with srv.client() as api:
            runs = api.post('/sync/all').json()['runs']
            assert [(r['source'], r['status'], r['rows']) for r in runs] == [('openrouter_direct', 'ok', 1)]
            summary = api.get('/budget/summary').json()
            assert summary['by_channel']['direct']['spent_micros'] == TODAYS_USAGE
            assert summary['spent_micros'] == TODAYS_USAGE and summary['recorded_micros'] == 0
            status = {s['source']: s for s in api.get('/sync/status').json()['sources']}
            assert status['openrouter_direct']['last_success_at'] is not None
            recon = api.get('/budget/reconciliation', params={'days': 1}).json()['items']
            today = datetime.now(UTC).date().isoformat()
            assert [(i['day'], i['provider'], i['billed_micros']) for i in recon] == \
                [(today, 'openrouter', TODAYS_USAGE)]
        cli = subprocess.run([sys.executable, '-m', 'app', 'sync', '--url', srv.url], capture_output=True, text=True,
                             env=clean_env(SPENDGAUGE_ENV_FILE=''), timeout=60)
        assert cli.returncode == 0 and cli.stdout.strip() == 'openrouter_direct: ok, 1 row'
    finally:
        srv.stop()
    assert KEY not in srv.log()


async def test_an_error_is_scrubbed_before_it_is_cut(engine: Engine, fake: FakeAPI) -> None:
    """A refusal that echoes a configured secret (here one the puller itself does not know) right where the stored
    error is cut: cut first, its prefix would be kept; scrubbed first, nothing of it is."""
    other = 'smtp-Passw0rd-0123456789'
    run = None
    for padding in range(1960, 2000, 7):  # the secret straddles the 2,000 characters a run keeps
        fake.route(KEY_PATH, Reply({'error': {'message': 'x' * padding + other + ' Bearer abc.def-123456'}},
                                   status=400))
        puller = OpenRouterPuller(KEY, fake.url, retries=0, backoff_s=0.01, timeout=2)
        sync = SyncService(engine, {'openrouter_direct': puller}, EventHub(), lookback_days=3, secrets=(other,))
        run = await sync.run('openrouter_direct')
        await sync.aclose()
        assert run['status'] == 'error' and run['error'] is not None
        assert len(run['error']) <= 2000
        assert other[:6] not in run['error'], run['error'][-60:]
    with engine.connect() as conn:
        assert other[:6] not in json.dumps(sync_status(conn, ['openrouter_direct']))


@pytest.mark.parametrize('statuses, failures', [
    ([], 0),
    (['ok', 'error', 'error'], 2),
    (['error', 'ok', 'error', 'running'], 1),  # a run still going is not counted, nor does it end the streak
    (['error'] * 3 + ['ok'], 0),
    (['error'] * 60, 50),  # counted up to 50
    (['ok', 'error', 'error', 'error'], 3),
])
def test_each_sources_status_in_two_statements(engine: Engine, statuses: list[str], failures: int) -> None:
    """Oldest first; openrouter_direct gets `statuses`, openai_direct one good run, the others none."""
    from services.core.tables import SYNC_RUNS
    from tests.support.queries import counting_queries

    start = datetime(2026, 11, 1, tzinfo=UTC)
    runs: list[dict[str, Any]] = [
        {'source': 'openrouter_direct', 'status': status, 'started_at': start + timedelta(minutes=n),
         'finished_at': None if status == 'running' else start + timedelta(minutes=n, seconds=5),
         'error': f'error {n}' if status == 'error' else None, 'rows': n, 'details': {}}
        for n, status in enumerate(statuses)]
    runs.append({'source': 'openai_direct', 'status': 'ok', 'started_at': start, 'finished_at': start, 'error': None,
                 'rows': 3, 'details': {}})
    with engine.begin() as conn:
        conn.execute(SYNC_RUNS.insert(), runs)
    with engine.connect() as conn, counting_queries(engine, selects_only=True) as statements:
        status = {s['source']: s for s in sync_status(conn, ['openrouter_direct'])}
    assert len(statements) == 2
    mine = status['openrouter_direct']
    assert mine['configured'] and not status['openai_direct']['configured']
    assert mine['consecutive_failures'] == failures
    last = mine['last_run']
    assert (last['rows'] if last else None) == (len(statuses) - 1 if statuses else None)
    errors = [n for n, s in enumerate(statuses) if s == 'error']
    assert mine['last_error'] == (f'error {errors[-1]}' if errors else None)
    goods = [n for n, s in enumerate(statuses) if s == 'ok']
    assert mine['last_success_at'] == ((start + timedelta(minutes=goods[-1], seconds=5)).isoformat() if goods else None)
    other = status['openai_direct']['last_run']
    assert status['openai_direct']['consecutive_failures'] == 0 and other is not None and other['rows'] == 3
    assert status['litellm']['last_run'] is None and status['anthropic_direct']['last_success_at'] is None
