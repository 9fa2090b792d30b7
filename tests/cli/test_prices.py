"""`spendgauge prices update|recalculate|audit` as real subprocesses against a real server (and on its database with
--db), the price data served by a real HTTP server on 127.0.0.1: a changed copy of genai-prices' bundled data."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from tests.support.cli import assert_one_line_error, assert_usage_error, cli, ok
from tests.support.fake_api import FakeAPI
from tests.support.price_data import serve
from tests.support.servers import start_server
from tests.support.wait import eventually

GPT_4O = {('openai', 'gpt-4o'): {'input_mtok': 5, 'cache_read_mtok': 2.5, 'output_mtok': 20}}
CALL = {'model': 'gpt-4o', 'provider': 'openai', 'input_tokens': 1000, 'output_tokens': 500}
OLD_COST, NEW_COST = 1000 * 2.5 + 500 * 10, 1000 * 5 + 500 * 20  # micro-USD


def record(api: httpx.Client, **fields: Any) -> dict[str, Any]:
    response = api.post('/usage', json={**CALL, **fields})
    assert response.status_code in (200, 201), response.text
    return response.json()


def spent(api: httpx.Client) -> int:
    return api.get('/budget/summary', params={'period': 'week'}).json()['spent_micros']


def test_update_recalculate_and_audit_through_a_server(tmp_path: Path, database_url: str) -> None:
    server = start_server(tmp_path, database_url, SPENDGAUGE_DAILY_LIMIT_USD='none')
    yesterday = datetime.now(UTC) - timedelta(days=1)
    try:
        with server.client() as api, FakeAPI() as fake:
            old = record(api, ts=yesterday.isoformat(), agent_id='coder', session_id='s1', tags=['eval'])
            reported = record(api, ts=yesterday.isoformat(), cost_usd='0.123456')
            assert old['cost_micros'] == OLD_COST
            url = serve(fake, GPT_4O)

            shown = ok(cli('prices', 'update', '--data-url', url, '--url', server.url, cwd=tmp_path)).stdout
            assert f'prices now from {url}' in shown
            assert '1 of the 1 models in use changed' in shown
            assert '2.500000 -> 5.000000' in shown and '10.000000 -> 20.000000' in shown
            assert record(api)['cost_micros'] == NEW_COST  # new calls: the new price at once
            assert fake.hits()  # fetched when asked, from the local server only

            before = spent(api)
            day = yesterday.date().isoformat()
            dry = ok(cli('prices', 'recalculate', '--from', day, '--dry-run', '--url', server.url, cwd=tmp_path))
            assert 'would re-price 1 of 2 events' in dry.stdout and 'dry run: nothing changed' in dry.stdout
            assert spent(api) == before

            done = ok(cli('prices', 'recalculate', '--from', day, '--url', server.url, cwd=tmp_path)).stdout
            assert 're-priced 1 of 2 events' in done and f'(+{(NEW_COST - OLD_COST) / 1e6:.6f})' in done
            assert spent(api) == before + NEW_COST - OLD_COST
            events = {e['event_id']: e for e in api.get('/usage', params={'limit': 10}).json()['items']}
            assert events[old['event_id']]['cost_micros'] == NEW_COST
            assert events[reported['event_id']] == {k: v for k, v in reported.items() if k != 'status'}

            audit = ok(cli('prices', 'audit', '--json', '--url', server.url, cwd=tmp_path))
            assert '"events_changed": 1' in audit.stdout and '"status": "done"' in audit.stdout

            refused = cli('prices', 'recalculate', '--from', 'last week', '--url', server.url, cwd=tmp_path)
            assert 'from: not an ISO date' in assert_one_line_error(refused, 2)
            assert_usage_error(cli('prices', 'recalculate', '--url', server.url, cwd=tmp_path), '--from')
            assert_usage_error(cli('prices', 'audit', '--limit', '0', cwd=tmp_path), '--limit')
            gone = cli('prices', 'update', '--data-url', fake.url + '/nothing', '--url', server.url, cwd=tmp_path)
            assert 'answered 404' in assert_one_line_error(gone, 1)
        port = int(server.url.rsplit(':', 1)[1])
        server.stop()
        server = start_server(tmp_path, database_url, port=port, SPENDGAUGE_DAILY_LIMIT_USD='none')
        with server.client() as api:
            assert record(api)['cost_micros'] == NEW_COST  # the stored data, after a restart, with no fetch
            assert api.get('/prices/data').json()['url'] == url
    finally:
        server.stop()


def test_an_update_on_the_database_reaches_the_running_server(tmp_path: Path, database_url: str) -> None:
    server = start_server(tmp_path, database_url, SPENDGAUGE_DAILY_LIMIT_USD='none')
    try:
        with server.client() as api, FakeAPI() as fake:
            assert record(api)['cost_micros'] == OLD_COST
            ok(cli('prices', 'update', '--data-url', serve(fake, GPT_4O), '--db', database_url, cwd=tmp_path))

            def priced_anew() -> bool:
                return record(api)['cost_micros'] == NEW_COST

            eventually(priced_anew, timeout=15)
            recalculated = ok(cli('prices', 'recalculate', '--from', '2026-01-01', '--json', '--db', database_url,
                                  cwd=tmp_path)).stdout
            assert '"events_newly_priced": 0' in recalculated
            eventually(lambda: spent(api) == NEW_COST * (len(api.get('/usage').json()['items'])), timeout=15)
    finally:
        server.stop()
