"""The LiteLLM puller against a real HTTP server on 127.0.0.1 serving the recorded LiteLLM shapes
(tests/fixtures/litellm): daily activity, spend logs, the Enterprise-only spend report, and the faults."""
from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
from sqlalchemy import Engine, select

from services.core.tables import SNAPSHOTS
from services.sources.base import PullResult, SnapshotRow, SourceError
from services.sources.litellm import DAILY, LOGS, REPORT, LiteLLMPuller
from services.sources.snapshots import store_snapshots
from tests.support.fake_api import FakeAPI, Reply, Request, closed_port_url
from tests.support.fixtures import FIXTURES as RECORDED

FIXTURES = RECORDED / 'litellm'
KEY = 'sk-master-0123456789abcdef'
ENTERPRISE = {'detail': {'error': '/spend/report endpoint You must be a LiteLLM Enterprise user to use this feature. '
                                  'If you have a license please set `LITELLM_LICENSE` in your env.'}}


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def metrics(spend: Any, prompt: int = 0, completion: int = 0, requests: int = 1, **extra: Any) -> dict[str, Any]:
    return {'metrics': {'spend': spend, 'prompt_tokens': prompt, 'completion_tokens': completion,
                        'cache_read_input_tokens': 0, 'cache_creation_input_tokens': 0,
                        'total_tokens': prompt + completion, 'successful_requests': requests, 'failed_requests': 0,
                        'api_requests': requests, **extra},
            'metadata': {}, 'api_key_breakdown': {}}


def day_item(day: str, models: dict[str, Any], providers: dict[str, Any]) -> dict[str, Any]:
    return {'date': day, 'metrics': {'spend': 0}, 'breakdown': {
        'models': models, 'providers': providers, 'model_groups': {}, 'mcp_servers': {}, 'endpoints': {},
        'entities': {}, 'api_keys': {}}}


def daily_page(results: list[dict[str, Any]], page: int, total_pages: int) -> dict[str, Any]:
    meta = {**fixture('user_daily_activity.json')['metadata'], 'page': page, 'total_pages': total_pages,
            'has_more': page < total_pages}
    return {'results': results, 'metadata': meta}


def log_row(request_id: str, start: str, spend: Any, model: str, provider: str | None, prompt: int = 0,
            completion: int = 0) -> dict[str, Any]:
    row = copy.deepcopy(fixture('spend_logs_rows.json')[0])
    row.update(request_id=request_id, startTime=start, endTime=start, spend=spend, model=model,
               custom_llm_provider=provider, prompt_tokens=prompt, completion_tokens=completion,
               total_tokens=prompt + completion)
    return row


def logs_page(rows: list[dict[str, Any]], page: int, total_pages: int, page_size: int = 3) -> dict[str, Any]:
    return {**fixture('spend_logs_v2_page.json'), 'data': rows, 'page': page, 'total_pages': total_pages,
            'page_size': page_size, 'total': total_pages * page_size}


@pytest.fixture
def proxy() -> Iterator[FakeAPI]:
    with FakeAPI() as server:
        yield server


def puller(url: str, **options: Any) -> LiteLLMPuller:
    return LiteLLMPuller(url, KEY, **{'timeout': 2.0, 'retries': 2, 'backoff_s': 0.01, **options})


async def pull(url: str, since: date, until: date | None = None, **options: Any) -> PullResult:
    source = puller(url, **options)
    try:
        return await source.pull(since, until or since)
    finally:
        await source.aclose()


async def pull_error(url: str, since: date = date(2025, 3, 27), **options: Any) -> SourceError:
    with pytest.raises(SourceError) as caught:
        await pull(url, since, **options)
    assert KEY not in str(caught.value)
    return caught.value


def by_key(result: PullResult) -> dict[tuple[date, str, str], tuple[int, int, int, int]]:
    assert all(row.source == 'litellm' for row in result.rows)
    return {(r.day, r.provider, r.model): (r.cost_micros, r.input_tokens, r.output_tokens, r.requests)
            for r in result.rows}


# --- /user/daily/activity ----------------------------------------------------------------------------------------

MAR27, MAR28 = date(2025, 3, 27), date(2025, 3, 28)


def serve_daily_activity(proxy: FakeAPI) -> None:
    """Two pages; 2025-03-28 comes back on both (LiteLLM pages its rows, not its days)."""
    recorded_day = fixture('user_daily_activity.json')['results'][0]  # 2025-03-27, openai gpt-4o-mini
    page1 = [recorded_day, day_item('2025-03-28', {
        'gpt-4o': metrics('0.0125', 1000, 500, 2, unknown_new_metric=7),
        'claude-sonnet-4-5': metrics(0.0033, 100, 200, 1),
    }, {'openai': metrics('0.0125', 1000, 500, 2), 'anthropic': metrics(0.0034, 100, 200, 1)})]
    page2 = [day_item('2025-03-28', {
        'openai/gpt-4o': metrics(1.5e-06, 10, 0, 1),
        'my-finetune': metrics(0.02, 40, 60, 1),
    }, {'openai': metrics(1.5e-06, 10, 0, 1), 'vertex_ai': metrics(0.02, 40, 60, 1)}),
        day_item('2025-03-26', {'gpt-4o': metrics(9, 1, 1, 1)}, {'openai': metrics(9, 1, 1, 1)})]
    proxy.route(DAILY, daily_page(page1, 1, 2), query={'page': '1'})
    proxy.route(DAILY, daily_page(page2, 2, 2), query={'page': '2'})


async def test_daily_activity_pages_are_summed_per_day_provider_and_model(proxy: FakeAPI) -> None:
    serve_daily_activity(proxy)
    result = await pull(proxy.url, MAR27, MAR28, page_size=2)
    assert by_key(result) == {
        # the recorded shape: one openai model, $0.00001095 = 10.95 micro-USD, rounded half-even to 11
        (MAR27, 'openai', 'gpt-4o-mini'): (11, 37, 9, 1),
        # 2025-03-28, summed exactly then rounded once; in key order the running totals are
        #   anthropic/''            0.0001    (provider 0.0034 - its model 0.0033)  ->   100
        #   anthropic/claude        0.0033    running 0.0034                       ->  3400 - 100   = 3300
        #   google/''               0.02      vertex_ai; 'my-finetune' matches no provider of the day, so it stays
        #                                     on the provider's row                ->  23400 - 3400 = 20000
        #   openai/gpt-4o           0.0125 + 0.0000015 = 0.0125015, running 0.0359015 -> 35901.5 -> 35902 (even)
        #                                                                          -> 35902 - 23400 = 12502
        (MAR28, 'anthropic', ''): (100, 0, 0, 0),
        (MAR28, 'anthropic', 'claude-sonnet-4-5'): (3300, 100, 200, 1),
        (MAR28, 'google', ''): (20000, 40, 60, 1),
        (MAR28, 'openai', 'gpt-4o'): (12502, 1010, 500, 3),
    }
    assert sum(row.cost_micros for row in result.rows if row.day == MAR28) == 35902  # $0.0359015, rounded once
    assert result.days == {MAR27, MAR28}
    assert result.details == {'endpoints': {DAILY: 'used'}, 'used': DAILY, 'pages': 2}
    first, second = proxy.hits(DAILY)
    assert first.query == {'start_date': ['2025-03-27'], 'end_date': ['2025-03-28'], 'page': ['1'],
                           'page_size': ['2']}
    assert second.param('page') == '2'
    assert first.headers['authorization'] == f'Bearer {KEY}'
    assert proxy.hits(LOGS) == []


async def test_one_provider_day_books_every_model_to_it(proxy: FakeAPI) -> None:
    proxy.route(DAILY, daily_page([day_item('2025-03-28', {'my-finetune': metrics('0.5', 5, 5, 2)},
                                            {'together_ai': metrics('0.5', 5, 5, 2)})], 1, 1))
    result = await pull(proxy.url, MAR28)
    assert by_key(result) == {(MAR28, 'together', 'my-finetune'): (500_000, 5, 5, 2)}  # $0.5


async def test_models_that_exceed_their_provider_fall_back_to_provider_rows(proxy: FakeAPI) -> None:
    # 'gpt-4o' looks like OpenAI, but here most of it was served by Azure: booking it to openai would exceed
    # openai's $0.001 and double count, so the day is reported per provider only.
    proxy.route(DAILY, daily_page([day_item('2025-03-28', {'gpt-4o': metrics(0.004, 40, 4, 4)},
                                            {'openai': metrics(0.001, 10, 1, 1), 'azure': metrics(0.003, 30, 3, 3)})],
                                  1, 1))
    result = await pull(proxy.url, MAR28)
    assert by_key(result) == {(MAR28, 'azure', ''): (3000, 30, 3, 3), (MAR28, 'openai', ''): (1000, 10, 1, 1)}


async def test_daily_activity_stored_replaces_the_days(proxy: FakeAPI, engine: Engine) -> None:
    serve_daily_activity(proxy)
    result = await pull(proxy.url, MAR27, MAR28, page_size=2)
    with engine.begin() as conn:
        store_snapshots(conn, 'litellm', PullResult([SnapshotRow('litellm', MAR28, 'openai', 'old', 99)], {MAR28}))
        assert store_snapshots(conn, 'litellm', result) == 5
        stored = conn.execute(select(SNAPSHOTS.c.day, SNAPSHOTS.c.cost_micros)
                              .where(SNAPSHOTS.c.source == 'litellm')).all()
    assert sorted((day, cost) for day, cost in stored) == sorted((r.day, r.cost_micros) for r in result.rows)
    assert sum(cost for day, cost in stored if day == MAR28) == 35902  # the old row is gone


# --- fallbacks -----------------------------------------------------------------------------------------------------

JUN10 = date(2024, 6, 10)


def serve_spend_logs(proxy: FakeAPI) -> None:
    page1 = [
        log_row('r1', '2024-06-10T12:00:00.000Z', 2e-06, 'llama3-8b-8192', 'groq', 20, 80),  # the recorded row
        log_row('r2', '2024-06-10T12:01:00Z', 2.5e-07, 'gpt-4o-mini', 'openai', 10, 5),
        log_row('r3', '2024-06-10T12:02:00+00:00', '0.00000025', 'gpt-4o-mini', 'openai', 10, 5),
    ]
    page2 = [
        log_row('r3', '2024-06-10T12:02:00+00:00', '0.00000025', 'gpt-4o-mini', 'openai', 10, 5),  # moved pages
        log_row('r4', '2024-06-10T23:59:59.900', 2.5e-07, 'openai/gpt-4o-mini', None, 10, 5),  # no offset: UTC
        log_row('r5', '2024-06-10T13:00:00Z', 0.001, 'vertex_ai/gemini-2.0-flash', 'vertex_ai', 1000, 100),
        log_row('r6', '2024-06-10T14:00:00Z', 0.0008, 'claude-3-5-haiku-20241022', None, 500, 100),
        log_row('r7', '2024-06-11T00:00:00Z', 5, 'gpt-4o-mini', 'openai', 1, 1),  # the next day: not asked for
    ]
    page3 = [log_row('r8', '2024-06-10T15:00:00Z', 2.5e-07, 'gpt-4o-mini', 'openai', 10, 5)]
    proxy.route(LOGS, logs_page(page1, 1, 3), query={'page': '1'})
    proxy.route(LOGS, logs_page(page2, 2, 3), query={'page': '2'})
    proxy.route(LOGS, logs_page(page3, 3, 3), query={'page': '3'})


async def test_spend_logs_when_daily_activity_is_missing(proxy: FakeAPI) -> None:
    serve_spend_logs(proxy)  # no /user/daily/activity route: 404
    result = await pull(proxy.url, JUN10, page_size=3)
    assert by_key(result) == {
        # anthropic inferred from the model name (no custom_llm_provider): $0.0008
        (JUN10, 'anthropic', 'claude-3-5-haiku-20241022'): (800, 500, 100, 1),
        (JUN10, 'google', 'gemini-2.0-flash'): (1000, 1000, 100, 1),  # vertex_ai, prefix cut
        (JUN10, 'groq', 'llama3-8b-8192'): (2, 20, 80, 1),  # the recorded row: $0.000002
        # r2, r3 (once), r4 and r8: 4 x $0.00000025 = $0.000001 = 1 micro-USD; rounded per row it would be 0
        (JUN10, 'openai', 'gpt-4o-mini'): (1, 40, 20, 4),
    }
    assert result.details == {'endpoints': {DAILY: 'unavailable', LOGS: 'used'}, 'used': LOGS, 'pages': 3}
    first = proxy.hits(LOGS)[0]
    assert first.query == {'start_date': ['2024-06-10 00:00:00'], 'end_date': ['2024-06-11 00:00:00'],
                           'page': ['1'], 'page_size': ['3'], 'sort_by': ['startTime'], 'sort_order': ['asc']}
    assert [hit.param('page') for hit in proxy.hits(LOGS)] == ['1', '2', '3']


async def test_enterprise_only_daily_activity_falls_back_to_spend_logs(proxy: FakeAPI) -> None:
    proxy.route(DAILY, Reply(ENTERPRISE, status=400))
    serve_spend_logs(proxy)
    result = await pull(proxy.url, JUN10, page_size=3)
    assert result.details['endpoints'] == {DAILY: 'unavailable', LOGS: 'used'}
    assert len(proxy.hits(DAILY)) == 1  # an answer, not a fault: never retried


async def test_global_spend_report_when_licensed(proxy: FakeAPI) -> None:
    proxy.route(REPORT, fixture('global_spend_report_team.json'))  # daily activity and spend logs: 404
    apr30 = date(2024, 4, 30)
    result = await pull(proxy.url, apr30)
    # running totals in key order: gpt-3.5-turbo 0.0000825 -> 82.5 -> 82 (even); + gpt-4 0.00123 = 0.0013125
    # -> 1312 (even) -> 1230; + chatgpt-v-2 (no known provider) 0.000214 = 0.0015265 = the team's total_spend
    # -> 1526 (even) -> 214
    assert by_key(result) == {(apr30, 'openai', 'gpt-3.5-turbo'): (82, 0, 0, 0),
                              (apr30, 'openai', 'gpt-4'): (1230, 0, 0, 0),
                              (apr30, 'unknown', 'chatgpt-v-2'): (214, 0, 0, 0)}
    assert result.details == {'endpoints': {DAILY: 'unavailable', LOGS: 'unavailable', REPORT: 'used'},
                              'used': REPORT, 'pages': 1}
    assert proxy.hits(REPORT)[0].query == {'start_date': ['2024-04-30'], 'end_date': ['2024-05-01'],
                                           'group_by': ['team']}


async def test_team_spend_no_model_accounts_for_is_kept(proxy: FakeAPI) -> None:
    report = fixture('global_spend_report_team.json')
    report[0]['teams'][0]['total_spend'] = '0.0025265'  # $0.001 more than its models
    proxy.route(REPORT, report)
    result = await pull(proxy.url, date(2024, 4, 30))
    assert by_key(result)[date(2024, 4, 30), 'unknown', ''][0] == 1000
    assert sum(row.cost_micros for row in result.rows) == 2526  # $0.0025265 -> 2526.5 -> 2526 (even)


async def test_nothing_available_is_an_unavailable_error(proxy: FakeAPI) -> None:
    proxy.route(REPORT, Reply(ENTERPRISE, status=400))
    error = await pull_error(proxy.url)
    assert error.kind == 'unavailable'
    assert DAILY in str(error) and LOGS in str(error) and REPORT in str(error)
    assert [len(proxy.hits(path)) for path in (DAILY, LOGS, REPORT)] == [1, 1, 1]


# --- faults --------------------------------------------------------------------------------------------------------

async def test_timeout(proxy: FakeAPI) -> None:
    proxy.route(DAILY, Reply(daily_page([], 1, 1), delay=3))
    started = time.monotonic()
    error = await pull_error(proxy.url, timeout=0.3, retries=1)
    assert error.kind == 'timeout'
    assert time.monotonic() - started < 2.5
    assert len(proxy.hits(DAILY)) == 2 and proxy.hits(LOGS) == []  # a fault is not a reason to fall back


async def test_connection_refused() -> None:
    error = await pull_error(closed_port_url())
    assert error.kind == 'connection'


async def test_refused_key(proxy: FakeAPI) -> None:
    proxy.route(DAILY, Reply({'error': {'message': f'Authentication Error, invalid key {KEY}', 'type': 'auth_error',
                                        'param': 'None', 'code': '401'}}, status=401))
    error = await pull_error(proxy.url)
    assert error.kind == 'auth'
    assert len(proxy.hits(DAILY)) == 1 and proxy.hits(LOGS) == []


async def test_rate_limit_waits_as_asked(proxy: FakeAPI) -> None:
    proxy.route(DAILY, Reply({'error': 'slow down'}, status=429, headers={'Retry-After': '1'}),
                fixture('user_daily_activity.json'))
    result = await pull(proxy.url, MAR27)
    assert by_key(result) == {(MAR27, 'openai', 'gpt-4o-mini'): (11, 37, 9, 1)}
    first, second = proxy.hits(DAILY)
    assert second.at - first.at >= 0.95


async def test_server_errors_are_retried(proxy: FakeAPI) -> None:
    proxy.route(DAILY, Reply(status=503), Reply(status=502), fixture('user_daily_activity.json'))
    result = await pull(proxy.url, MAR27)
    assert len(result.rows) == 1 and len(proxy.hits(DAILY)) == 3


async def test_server_error_that_persists(proxy: FakeAPI) -> None:
    proxy.route(DAILY, Reply({'detail': {'error': 'Database not connected'}}, status=500))
    error = await pull_error(proxy.url, retries=2)
    assert error.kind == 'server'
    assert str(error).endswith('server error 500: Database not connected')  # LiteLLM's reason, not just a status
    assert len(proxy.hits(DAILY)) == 3 and proxy.hits(LOGS) == []


async def test_malformed_json(proxy: FakeAPI) -> None:
    proxy.route(DAILY, Reply(raw=b'{"results": [{"date": "2025-03-27", '))
    assert (await pull_error(proxy.url)).kind == 'malformed'


@pytest.mark.parametrize(('path', 'body', 'named'), [
    (DAILY, {'metadata': {}}, 'results'),
    (DAILY, daily_page([{'breakdown': {}}], 1, 1), 'date'),
    (DAILY, daily_page([day_item('2025-03-27', {'gpt-4o': {'metrics': {'prompt_tokens': 3}}}, {})], 1, 1), 'spend'),
    (DAILY, daily_page([day_item('2025-03-27', {'gpt-4o': metrics('a lot')}, {})], 1, 1), 'spend'),
    (DAILY, daily_page([day_item('2025-03-27', {'gpt-4o': metrics(-1)}, {})], 1, 1), 'negative'),
    (LOGS, logs_page([{'request_id': 'r1', 'startTime': '2025-03-27T10:00:00Z', 'model': 'gpt-4o'}], 1, 1), 'spend'),
    (LOGS, logs_page([{'request_id': 'r1', 'spend': 0.1}], 1, 1), 'startTime'),
])
async def test_missing_or_broken_fields_are_malformed(proxy: FakeAPI, path: str, body: Any, named: str) -> None:
    proxy.route(path, body)
    error = await pull_error(proxy.url)
    assert error.kind == 'malformed'
    assert named in str(error)


async def test_missing_optional_fields_and_unknown_ones_are_fine(proxy: FakeAPI) -> None:
    item = {'date': '2025-03-27', 'brand_new_field': {'x': 1},
            'breakdown': {'models': {'gpt-4o': {'metrics': {'spend': '0.003'}}}}}  # no tokens, no providers
    proxy.route(DAILY, {'results': [item]})  # no metadata: one page
    result = await pull(proxy.url, MAR27)
    assert by_key(result) == {(MAR27, 'openai', 'gpt-4o'): (3000, 0, 0, 0)}


async def test_day_without_breakdown_uses_its_totals(proxy: FakeAPI) -> None:
    proxy.route(DAILY, {'results': [{'date': '2025-03-27', 'metrics': {'spend': 0.25, 'prompt_tokens': '12',
                                                                      'completion_tokens': 3.0}}]})
    result = await pull(proxy.url, MAR27)
    assert by_key(result) == {(MAR27, 'unknown', ''): (250_000, 12, 3, 0)}


async def test_endless_cursor_stops_at_the_page_limit(proxy: FakeAPI) -> None:
    def forever(request: Request) -> Reply:
        return Reply(daily_page([], int(request.param('page') or 1), 10**6))

    proxy.handler(DAILY, forever)
    error = await pull_error(proxy.url, max_pages=5)
    assert error.kind == 'pagination'
    assert len(proxy.hits(DAILY)) == 5


async def test_a_server_ignoring_the_page_is_caught_repeating(proxy: FakeAPI) -> None:
    proxy.route(DAILY, daily_page([], 1, 3))  # says "page 1 of 3, more to come" whatever is asked
    error = await pull_error(proxy.url)
    assert error.kind == 'pagination'
    assert 'repeats' in str(error)
    assert len(proxy.hits(DAILY)) == 2


async def test_spend_logs_with_full_pages_forever_stop_at_the_limit(proxy: FakeAPI) -> None:
    def full(request: Request) -> Reply:
        page = int(request.param('page') or 1)
        rows = [log_row(f'r{page}-{i}', '2025-03-27T10:00:00Z', 0.1, 'gpt-4o', 'openai') for i in range(2)]
        return Reply({**logs_page(rows, page, 0, 2), 'total_pages': None, 'total_is_capped': True})

    proxy.handler(LOGS, full)
    error = await pull_error(proxy.url, max_pages=4, page_size=2)
    assert error.kind == 'pagination'
    assert len(proxy.hits(LOGS)) == 4
