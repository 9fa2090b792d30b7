"""`spendgauge prune` as a real subprocess through a real server (`--url`) and on its database (`--db`), the REST
route behind it, and the daily job of SPENDGAUGE_RETENTION_DAYS: events go, every total the API shows stays."""
from __future__ import annotations

import json
import random
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from services.core.db import create_db_engine
from services.live.hub import EventHub
from services.usage.ledger import Ledger
from services.usage.pricing import Pricer
from tests.support.cli import assert_one_line_error, assert_usage_error, cli, ok
from tests.support.servers import start_server
from tests.support.wait import eventually

ZONE = 'Europe/Berlin'
ADMIN = 'a' * 32
TIME_LEFT = {'resets_in_s', 'resets_in'}  # how long until the period ends: moves with the clock


def history(now: datetime, days: int, count: int) -> list[dict[str, Any]]:
    rng = random.Random(days)
    events = []
    for n in range(count):
        ts = now - timedelta(minutes=rng.randrange(1, days * 24 * 60))
        age = (now - ts).days
        provider, model = rng.choice((('openai', 'gpt-4o'), ('anthropic', 'claude-sonnet-4-5')))
        events.append({'event_id': f'p{n}', 'ts': ts.isoformat(), 'provider': provider, 'model': model,
                       'channel': rng.choice(('litellm', 'direct')), 'agent_id': rng.choice(('planner', 'coder')),
                       'user_id': rng.choice(('ann', 'bob')), 'tags': rng.sample(('eval', 'prod'), rng.randrange(3)),
                       'session_id': f's{age // 3}', 'task_id': f't{age // 10}',
                       'cost_usd': f'0.{rng.randrange(1, 99999):05d}', 'input_tokens': 100, 'output_tokens': 20})
    return events


def midnight_before(ts: datetime, zone: ZoneInfo) -> datetime:
    midnight = datetime.combine(ts.astimezone(zone).date(), time(0), zone)
    return (midnight if midnight <= ts else midnight - timedelta(days=1)).astimezone(UTC)


def without_time_left(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_time_left(v) for k, v in value.items() if k not in TIME_LEFT}
    if isinstance(value, list):
        return [without_time_left(v) for v in value]
    return value


def everything_shown(api: httpx.Client, today: str, first: str) -> dict[str, Any]:
    def get(path: str, **params: Any) -> Any:
        response = api.get(path, params=params)
        assert response.status_code == 200, response.text
        return without_time_left(response.json())

    shown = {f'summary {p}': get('/budget/summary', period=p) for p in ('day', 'week', 'month')}
    for by in ('agent', 'provider', 'model', 'channel'):
        shown[f'by-{by}'] = get(f'/budget/by-{by}', **{'from': first, 'to': today})
    for kind in ('summary', 'trend', 'comparison'):
        shown[f'report {kind}'] = get(f'/reports/{kind}', **{'from': first, 'to': today})
    shown['history'] = get('/budget/history', days=40)
    shown['reconciliation'] = get('/budget/reconciliation', days=40)
    shown['sessions'] = get('/sessions', limit=100)
    shown['agents'] = get('/agents')
    shown['tasks'] = get('/tasks', limit=100)
    shown['policies'] = get('/policies')
    return shown


def usage_ids(api: httpx.Client, **params: Any) -> tuple[set[str], str | None]:
    ids: set[str] = set()
    cursor = None
    while True:
        page = api.get('/usage', params={**params, 'limit': 1000, **({'cursor': cursor} if cursor else {})}).json()
        ids.update(item['event_id'] for item in page['items'])
        if not (cursor := page['next_cursor']):
            return ids, page['pruned_before']


def test_prune_through_the_server_and_on_the_database_keeps_every_total(database_url: str, tmp_path: Path) -> None:
    zone = ZoneInfo(ZONE)
    now = datetime.now(UTC)
    today = now.astimezone(zone).date()
    first = str(today - timedelta(days=35))
    server = start_server(tmp_path, database_url, token=ADMIN, SPENDGAUGE_TZ=ZONE)
    try:
        with server.client() as api:
            for fields in ({'scope': 'user', 'period': 'month'}, {'scope': 'tag', 'period': 'week'},
                           {'scope': 'tag', 'scope_value': 'eval', 'period': 'custom', 'period_start': first,
                            'period_end': str(today)}):
                assert api.post('/policies', json={'name': str(fields), 'limit_usd': '10000', **fields}).is_success
            for task in range(4):
                assert api.post('/tasks', json={'id': f't{task}', 'title': f'task {task}'}).is_success
            events = history(now, 36, 800)
            assert api.post('/usage/batch', json={'events': events}).json()['stored'] == len(events)
            reader = api.post('/tokens', json={'name': 'grafana', 'role': 'read'}).json()['token']
            before = everything_shown(api, str(today), first)

            # a read-only token may not prune, through the CLI or the API
            line = assert_one_line_error(cli('prune', '--older-than', '20d', '--url', server.url, '--token', reader,
                                             cwd=tmp_path), 1)
            assert '403' in line and 'admin' in line
            with server.client(reader) as read_only:
                assert read_only.post('/usage/prune', json={'older_than_days': 20}).status_code == 403
            for body in ({'older_than_days': 0}, {'older_than_days': 100_000}, {'older_than_days': '20d'}, {}):
                refused = api.post('/usage/prune', json=body)
                assert refused.status_code == 422 and 'older_than_days' in refused.json()['detail'], refused.text

            cutoff = midnight_before(now - timedelta(days=20), zone)
            old = {e['event_id'] for e in events if datetime.fromisoformat(e['ts']) < cutoff}
            local = f'{cutoff.astimezone(zone):%Y-%m-%d} 00:00 {ZONE}'
            dry = ok(cli('prune', '--older-than', '20d', '--dry-run', '--url', server.url, cwd=tmp_path,
                         SPENDGAUGE_API_TOKEN=ADMIN))
            assert dry.stdout == f'would prune {len(old):,} usage events before {local} (dry run: nothing deleted)\n'
            assert usage_ids(api) == ({e['event_id'] for e in events}, None)

            done = ok(cli('prune', '--older-than', '20d', '--url', server.url, '--token', ADMIN, cwd=tmp_path))
            assert done.stdout.startswith(f'pruned {len(old):,} usage events before {local}; ')
            assert usage_ids(api) == ({e['event_id'] for e in events} - old, cutoff.isoformat())
            assert usage_ids(api, to=cutoff.isoformat()) == (set(), cutoff.isoformat())
            assert api.get('/usage/retention').json() == {'pruned_before': cutoff.isoformat(), 'retention_days': None,
                                                          'day_zone': ZONE}
            assert everything_shown(api, str(today), first) == before

            # on the database itself, beside the running server (which hears of it and recounts)
            later = midnight_before(now - timedelta(days=7), zone)
            direct = ok(cli('prune', '--older-than', '7d', '--json', '--db', server.database_url, cwd=tmp_path,
                            SPENDGAUGE_TZ=ZONE))  # the server's settings, as from its .env
            between = sum(cutoff <= datetime.fromisoformat(e['ts']) < later for e in events)
            assert json.loads(direct.stdout)['events'] == between > 0
            assert usage_ids(api)[1] == later.isoformat()
            assert api.post('/policies', json={'name': 'a recount', 'limit_usd': '1'}).is_success  # recounts
            after = everything_shown(api, str(today), first)
            after['policies']['items'] = [p for p in after['policies']['items'] if p['name'] != 'a recount']
            after['policies']['count'] -= 1
            assert after == before
    finally:
        server.stop()


def test_a_bad_age_is_refused_with_a_message(tmp_path: Path) -> None:
    assert_usage_error(cli('prune', '--older-than', '0d', '--db', f'sqlite:///{tmp_path / "x.db"}', cwd=tmp_path),
                       '--older-than', 'at least 1d')
    assert_usage_error(cli('prune', '--older-than', '6 months', cwd=tmp_path), '--older-than', 'e.g. 180d')
    assert not (tmp_path / 'x.db').exists()


def test_the_daily_job_prunes_by_the_setting(database_url: str, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    events = history(now, 40, 300)
    engine = create_db_engine(database_url)
    try:
        Ledger(engine, Pricer(), EventHub()).record_batch(events)
    finally:
        engine.dispose()
    cutoff = midnight_before(now - timedelta(days=30), ZoneInfo('UTC'))
    server = start_server(tmp_path, database_url, SPENDGAUGE_RETENTION_DAYS='30d')
    try:
        with server.client() as api:
            eventually(lambda: api.get('/usage/retention').json()['pruned_before'] is not None, timeout=20)
            assert api.get('/usage/retention').json() == {'pruned_before': cutoff.isoformat(), 'retention_days': 30,
                                                          'day_zone': 'UTC'}
            assert usage_ids(api)[0] == {e['event_id'] for e in events if datetime.fromisoformat(e['ts']) >= cutoff}
            history_points = api.get('/budget/history', params={'days': 41}).json()['points']
            assert sum(p['requests'] for p in history_points) == len(events)  # the totals still count them all
    finally:
        server.stop()
