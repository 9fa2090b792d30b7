"""The OpenAI, Anthropic and OpenRouter pullers against a real HTTP server serving the researched response shapes
(tests/fixtures/providers), every fault a remote API can produce, and storing what they pull."""
from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import aclosing
from dataclasses import dataclass
from datetime import UTC, date, datetime
from itertools import pairwise
from typing import Any, TypedDict

import pytest
from sqlalchemy import Engine, select

from services.core.tables import SNAPSHOTS
from services.sources.anthropic import AnthropicPuller
from services.sources.base import Puller, PullResult, SnapshotRow, SourceError
from services.sources.openai import OpenAIPuller
from services.sources.openrouter import OpenRouterPuller
from services.sources.snapshots import store_snapshots
from tests.support.fake_api import FakeAPI, Reply, closed_port_url
from tests.support.fixtures import FIXTURES as RECORDED

FIXTURES = RECORDED / 'providers'

OPENAI_KEY = 'sk-admin-TESTKEY-openai-3f9a61'
ANTHROPIC_KEY = 'sk-ant-admin01-TESTKEY-anthropic-77c1e0'
OPENROUTER_KEY = 'sk-or-v1-TESTKEY-openrouter-5b2e48'
MANAGEMENT_KEY = 'sk-or-v1-TESTKEY-management-a0d4c3'
KEYS = (OPENAI_KEY, ANTHROPIC_KEY, OPENROUTER_KEY, MANAGEMENT_KEY)

OA_USAGE, OA_COSTS = '/v1/organization/usage/completions', '/v1/organization/costs'
AN_USAGE, AN_COSTS = '/v1/organizations/usage_report/messages', '/v1/organizations/cost_report'
OR_KEY, OR_CREDITS = '/api/v1/key', '/api/v1/credits'

D17, D18 = date(2026, 8, 17), date(2026, 8, 18)
NOW = datetime(2026, 8, 18, 12, 0, tzinfo=UTC)  # OpenRouter's "today" is the 18th
MINI, GPT41 = 'gpt-4o-mini-2024-07-18', 'gpt-4.1-2025-04-14'
SONNET, HAIKU = 'claude-sonnet-4-5-20250929', 'claude-haiku-4-5-20251001'

# Expected rows, by hand from the fixtures. Money is summed exactly per day and model, then rounded once.
OPENAI_ROWS = [
    # 17th, gpt-4.1 line items: 1.810228 + 0.131072 + 0.787216 = $2.728516
    SnapshotRow('openai_direct', D17, 'openai', GPT41, 2_728_516, 1_167_258, 98_402, 311),
    # 17th, gpt-4o-mini: 0.3156495 + 0.098304 + 0.2477262 = $0.6616797; the day's $3.3901957 rounds to 3_390_196,
    # so 3_390_196 - 2_728_516 = 661_680 (= 661_679.7 rounded)
    SnapshotRow('openai_direct', D17, 'openai', MINI, 661_680, 3_415_050, 412_877, 1842),
    # 18th, gpt-4.1: 1.62248 + 0.114688 + 0.698488 = $2.435656
    SnapshotRow('openai_direct', D18, 'openai', GPT41, 2_435_656, 1_040_616, 87_311, 276),
    # 18th, gpt-4o-mini: 0.3433146 + 0.1081344 + 0.273072 = $0.724521; day total $3.160177 as billed
    SnapshotRow('openai_direct', D18, 'openai', MINI, 724_521, 3_730_556, 455_120, 2017),
]
ANTHROPIC_ROWS = [
    # 17th, web search: 14 cents = $0.14, no model
    SnapshotRow('anthropic_direct', D17, 'anthropic', '', 140_000),
    # 17th, Haiku: 64.0219 + 47.552 = 111.5739 cents = $1.115739; tokens 640_219 uncached in, 95_104 out
    SnapshotRow('anthropic_direct', D17, 'anthropic', HAIKU, 1_115_739, 640_219, 95_104),
    # 17th, Sonnet: 361.3668 + 302.0655 + 117.33612 + 33.15375 = 813.92217 cents = $8.1392217; the day's
    # 939.49607 cents = $9.3949607 rounds to 9_394_961, so 9_394_961 - 140_000 - 1_115_739 = 8_139_222;
    # input 1_204_556 uncached + 3_911_204 cache read + 88_410 5m write + 0 1h write = 5_204_170
    SnapshotRow('anthropic_direct', D17, 'anthropic', SONNET, 8_139_222, 5_204_170, 201_377),
    # 18th, web search: 9 cents
    SnapshotRow('anthropic_direct', D18, 'anthropic', '', 90_000),
    # 18th, Sonnet: 345.2619 + 283.413 + 123.60993 + 27.36 + 7.3728 = 787.01763 cents = $7.8701763; the day's
    # 796.01763 cents rounds to 7_960_176, so 7_960_176 - 90_000 = 7_870_176;
    # input 1_150_873 + 4_120_331 + 72_960 + 12_288 = 5_356_452
    SnapshotRow('anthropic_direct', D18, 'anthropic', SONNET, 7_870_176, 5_356_452, 188_942),
]
# usage_daily $6.1204, for today (the 18th)
OPENROUTER_ROWS = [SnapshotRow('openrouter_direct', D18, 'openrouter', '', 6_120_400)]


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def assert_clean(text: str) -> None:
    for key in KEYS:
        assert key not in text


@pytest.fixture(autouse=True)
def _no_key_in_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.DEBUG)
    yield
    records = caplog.get_records('setup') + caplog.get_records('call')
    if not records:
        return  # skipped before anything ran (no PostgreSQL); every test that runs logs (httpx logs each request)
    for record in records:
        assert_clean(record.getMessage())
        assert_clean(record.exc_text or '')


@pytest.fixture
def fake() -> Iterator[FakeAPI]:
    with FakeAPI() as api:
        yield api
        assert api.errors == []


def serve_pages(fake: FakeAPI, path: str, body: dict[str, Any], *before: Reply) -> None:
    """Serve the body's buckets one per page, linked by cursors (the body's own `next_page` first); `before` are
    replies given to the first request(s) before page 1."""
    buckets = body['data']
    cursors = [body.get('next_page') or 'page_2'] + [f'page_{i + 2}' for i in range(1, len(buckets) - 1)]
    for i, bucket in enumerate(buckets):
        more = i + 1 < len(buckets)
        page = {**body, 'data': [bucket], 'has_more': more, 'next_page': cursors[i] if more else None}
        if i == 0:
            fake.route(path, *before, page)
        else:
            fake.route(path, page, query={'page': cursors[i - 1]})


def serve_all(fake: FakeAPI, faults: dict[str, list[Reply]] | None = None) -> None:
    """Every provider endpoint from the fixtures, multi-page where a report has several days."""
    faults = faults or {}
    for path, name in ((OA_USAGE, 'openai_usage_completions.json'), (OA_COSTS, 'openai_costs.json'),
                       (AN_USAGE, 'anthropic_usage_messages.json'), (AN_COSTS, 'anthropic_cost_report.json')):
        serve_pages(fake, path, load(name), *faults.get(path, []))
    fake.route(OR_KEY, *faults.get(OR_KEY, []), load('openrouter_key.json'))
    fake.route(OR_CREDITS, *faults.get(OR_CREDITS, []), load('openrouter_credits.json'))


@dataclass(frozen=True)
class Provider:
    make: Callable[..., Puller]
    first: str  # the endpoint a pull asks first
    rows: list[SnapshotRow]


class Timing(TypedDict):
    timeout: float
    retries: int
    backoff_s: float


FAST: Timing = {'timeout': 2.0, 'retries': 2, 'backoff_s': 0.01}
PROVIDERS = {
    'openai': Provider(lambda url, **kw: OpenAIPuller(OPENAI_KEY, url, **{**FAST, **kw}), OA_USAGE, OPENAI_ROWS),
    'anthropic': Provider(lambda url, **kw: AnthropicPuller(ANTHROPIC_KEY, url, **{**FAST, **kw}), AN_USAGE,
                          ANTHROPIC_ROWS),
    'openrouter': Provider(lambda url, **kw: OpenRouterPuller(OPENROUTER_KEY, url, management_key=MANAGEMENT_KEY,
                                                              clock=lambda: NOW, **{**FAST, **kw}),
                           OR_KEY, OPENROUTER_ROWS),
}
each_provider = pytest.mark.parametrize('provider', list(PROVIDERS.values()), ids=list(PROVIDERS))


async def pull(puller: Puller, since: date = D17, until: date = D18) -> PullResult:
    async with aclosing(puller):
        return await puller.pull(since, until)


async def failure(puller: Puller, since: date = D17, until: date = D18) -> SourceError:
    with pytest.raises(SourceError) as caught:
        await pull(puller, since, until)
    assert_clean(str(caught.value))
    return caught.value


def gaps(fake: FakeAPI, path: str) -> list[float]:
    times = [r.at for r in fake.hits(path)]
    return [b - a for a, b in pairwise(times)]


# --- what each puller makes of the fixtures ---------------------------------------------------------------------

async def test_openai_rows_from_fixtures(fake: FakeAPI) -> None:
    serve_all(fake)
    result = await pull(PROVIDERS['openai'].make(fake.url))

    assert result.rows == OPENAI_ROWS
    assert result.days == {D17, D18}
    assert sum(r.cost_micros for r in result.rows if r.day == D17) == 3_390_196  # $3.3901957 billed
    assert sum(r.cost_micros for r in result.rows if r.day == D18) == 3_160_177  # $3.1601770 billed
    usage, costs = fake.hits(OA_USAGE), fake.hits(OA_COSTS)
    assert len(usage) == 2 and len(costs) == 2  # both followed next_page to a second page
    for request in usage + costs:
        assert request.headers['authorization'] == f'Bearer {OPENAI_KEY}'
        assert request.param('start_time') == '1786924800'  # 2026-08-17T00:00Z
        assert request.param('end_time') == '1787097600'  # 2026-08-19T00:00Z, exclusive
        assert request.param('bucket_width') == '1d'
    assert usage[0].param('group_by') == 'model' and costs[0].param('group_by') == 'line_item'
    assert usage[0].param('page') is None
    assert usage[1].param('page') == load('openai_usage_completions.json')['next_page']


async def test_anthropic_rows_from_fixtures(fake: FakeAPI) -> None:
    serve_all(fake)
    result = await pull(PROVIDERS['anthropic'].make(fake.url))

    assert result.rows == ANTHROPIC_ROWS
    assert result.days == {D17, D18}
    assert sum(r.cost_micros for r in result.rows if r.day == D17) == 9_394_961  # 939.49607 cents
    assert sum(r.cost_micros for r in result.rows if r.day == D18) == 7_960_176  # 796.01763 cents
    usage, costs = fake.hits(AN_USAGE), fake.hits(AN_COSTS)
    assert len(usage) == 2 and len(costs) == 2
    assert costs[1].param('page') == 'page_2'
    for request in usage + costs:
        assert request.headers['x-api-key'] == ANTHROPIC_KEY
        assert request.headers['anthropic-version'] == '2023-06-01'
        assert 'authorization' not in request.headers
        assert request.param('starting_at') == '2026-08-17T00:00:00Z'
        assert request.param('ending_at') == '2026-08-19T00:00:00Z'
    assert usage[0].param('group_by[]') == 'model' and costs[0].param('group_by[]') == 'description'


async def test_openrouter_row_for_today_and_credits_in_details(fake: FakeAPI) -> None:
    serve_all(fake)
    result = await pull(PROVIDERS['openrouter'].make(fake.url))

    assert result.rows == OPENROUTER_ROWS
    assert result.days == {D18}  # running totals describe today only; the 17th is left alone
    assert result.details['key'] == {
        'usage_micros': 1_234_567_800,  # $1234.5678 all time
        'usage_daily_micros': 6_120_400,
        'usage_weekly_micros': 41_873_100,  # $41.8731
        'usage_monthly_micros': 187_418_700,  # $187.4187
        'limit_micros': 500_000_000,  # $500
        'limit_remaining_micros': 312_581_300,  # $312.5813
        'byok_usage_micros': 0, 'byok_usage_daily_micros': 0, 'byok_usage_weekly_micros': 0,
        'byok_usage_monthly_micros': 0, 'limit_reset': 'monthly'}
    # $1500 - $1391.0412 = $108.9588
    assert result.details['credits'] == {'total_credits_micros': 1_500_000_000, 'total_usage_micros': 1_391_041_200,
                                         'remaining_micros': 108_958_800}
    assert fake.hits(OR_KEY)[0].headers['authorization'] == f'Bearer {OPENROUTER_KEY}'
    assert fake.hits(OR_CREDITS)[0].headers['authorization'] == f'Bearer {MANAGEMENT_KEY}'


async def test_openrouter_without_management_key_or_today(fake: FakeAPI) -> None:
    serve_all(fake)
    puller = OpenRouterPuller(OPENROUTER_KEY, fake.url, clock=lambda: NOW, **FAST)
    result = await pull(puller, D17, D17)  # today (the 18th) is outside the range

    assert result.rows == [] and result.days == set()
    assert 'credits' not in result.details
    assert fake.hits(OR_CREDITS) == []


async def test_openrouter_credits_refused_does_not_fail_the_pull(fake: FakeAPI) -> None:
    body = {'error': {'code': 403, 'message': 'Only management keys can perform this operation'}}
    serve_all(fake, {OR_CREDITS: [Reply(body, status=403)]})
    result = await pull(PROVIDERS['openrouter'].make(fake.url))

    assert result.rows == OPENROUTER_ROWS
    assert result.details['endpoints'] == {OR_CREDITS: 'auth'}
    assert 'credits' not in result.details


async def test_lenient_parsing_strings_floats_and_unknown_fields(fake: FakeAPI) -> None:
    bucket = {'start_time': '1787011200', 'end_time': 1787097600, 'surprise': {'nested': [1]}}
    fake.route(OA_USAGE, {'data': [{**bucket, 'results': [
        {'model': MINI, 'input_tokens': '1000', 'output_tokens': 20.0, 'num_model_requests': '3', 'new_field': 'x'},
    ]}], 'has_more': False})
    fake.route(OA_COSTS, {'data': [{**bucket, 'results': [
        {'amount': {'value': '0.1234567', 'currency': 'USD'}, 'line_item': f'{MINI}, input'},
        {'amount': {'value': 2.5e-06}, 'line_item': 'Image models'},  # $0.0000025 rounds half-even to 2 micro-USD
    ]}]})  # no has_more at all: one page
    fake.route(AN_USAGE, {'data': [{'starting_at': '2026-08-18T00:00:00+00:00', 'results': [
        {'model': SONNET, 'uncached_input_tokens': '5', 'output_tokens': 7, 'cache_creation': None},
    ]}], 'has_more': 'false'})
    fake.route(AN_COSTS, {'data': [{'starting_at': '2026-08-18T00:00:00Z', 'results': [
        {'amount': 150, 'model': SONNET},  # a JSON number of cents: $1.50
        {'amount': '0.00005', 'model': SONNET},  # 0.00005 cents = $0.0000005: 1.50 + 0.0000005 rounds to 1_500_000
    ]}]})
    fake.route(OR_KEY, {'data': {'usage_daily': '1.25', 'limit': None, 'limit_remaining': None, 'extra': True}})

    assert (await pull(PROVIDERS['openai'].make(fake.url), D18, D18)).rows == [
        SnapshotRow('openai_direct', D18, 'openai', '', 2),
        SnapshotRow('openai_direct', D18, 'openai', MINI, 123_457, 1000, 20, 3),  # $0.1234567 rounds up
    ]
    assert (await pull(PROVIDERS['anthropic'].make(fake.url), D18, D18)).rows == [
        SnapshotRow('anthropic_direct', D18, 'anthropic', SONNET, 1_500_000, 5, 7)]
    result = await pull(OpenRouterPuller(OPENROUTER_KEY, fake.url, clock=lambda: NOW, **FAST))
    assert result.rows == [SnapshotRow('openrouter_direct', D18, 'openrouter', '', 1_250_000)]
    assert result.details['key']['limit_micros'] is None and result.details['key']['usage_micros'] is None


# --- faults -----------------------------------------------------------------------------------------------------

@each_provider
async def test_timeout(fake: FakeAPI, provider: Provider) -> None:
    fake.route(provider.first, Reply({}, delay=2.0))
    started = time.monotonic()
    error = await failure(provider.make(fake.url, timeout=0.2, retries=1))

    assert error.kind == 'timeout'
    assert len(fake.hits(provider.first)) == 2  # retried once
    assert time.monotonic() - started < 1.5


@each_provider
async def test_connection_refused(provider: Provider) -> None:
    error = await failure(provider.make(closed_port_url(), retries=1))
    assert error.kind == 'connection'


@each_provider
@pytest.mark.parametrize('status', [401, 403])
async def test_refused_key(fake: FakeAPI, provider: Provider, status: int) -> None:
    key = {OA_USAGE: OPENAI_KEY, AN_USAGE: ANTHROPIC_KEY, OR_KEY: OPENROUTER_KEY}[provider.first]
    fake.route(provider.first, Reply({'error': {'message': f'Incorrect API key provided: {key}'}}, status=status))
    error = await failure(provider.make(fake.url))

    assert error.kind == 'auth'
    assert len(fake.hits()) == 1  # never retried


async def test_an_error_body_echoing_the_key_is_scrubbed(fake: FakeAPI) -> None:
    fake.route(OA_USAGE, Reply({'error': {'message': f'bad request for key {OPENAI_KEY}'}}, status=400))
    error = await failure(PROVIDERS['openai'].make(fake.url))
    assert error.kind == 'server'
    assert 'bad request for key ***' in str(error)


@each_provider
async def test_rate_limited_waits_as_asked(fake: FakeAPI, provider: Provider) -> None:
    serve_all(fake, {provider.first: [Reply({'error': 'slow down'}, status=429, headers={'Retry-After': '0.3'})]})
    result = await pull(provider.make(fake.url, backoff_s=0.01))

    assert result.rows == provider.rows
    [gap, *_] = gaps(fake, provider.first)
    assert 0.28 <= gap < 2  # Retry-After, not the 0.01 s backoff


async def test_rate_limited_for_ever_fails(fake: FakeAPI) -> None:
    fake.route(OA_USAGE, Reply(status=429, headers={'Retry-After': '0.05'}))
    error = await failure(PROVIDERS['openai'].make(fake.url, retries=2))
    assert error.kind == 'rate_limited'
    assert len(fake.hits(OA_USAGE)) == 3


@each_provider
async def test_server_errors_retried_with_backoff_then_success(fake: FakeAPI, provider: Provider) -> None:
    serve_all(fake, {provider.first: [Reply(status=503), Reply({'error': 'oops'}, status=500)]})
    result = await pull(provider.make(fake.url, backoff_s=0.05, retries=2))

    assert result.rows == provider.rows
    first, second, *_ = gaps(fake, provider.first)
    assert first >= 0.05 and second >= 0.1  # 0.05 s, then twice that (plus jitter)


@each_provider
async def test_server_errors_for_ever_fail(fake: FakeAPI, provider: Provider) -> None:
    fake.route(provider.first, Reply(status=502))
    error = await failure(provider.make(fake.url, retries=2))

    assert error.kind == 'server'
    assert '502' in str(error)
    assert len(fake.hits(provider.first)) == 3


@each_provider
async def test_malformed_json(fake: FakeAPI, provider: Provider) -> None:
    fake.route(provider.first, Reply(raw=b'{"data": [{"start'))
    error = await failure(provider.make(fake.url))

    assert error.kind == 'malformed'
    assert len(fake.hits()) == 1  # a broken body is not retried


def _drop(*keys: str | int) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A change to a fixture body: delete the item at `keys`."""
    def change(body: dict[str, Any]) -> dict[str, Any]:
        body = copy.deepcopy(body)
        parent: Any = body  # dicts and lists
        for key in keys[:-1]:
            parent = parent[key]
        del parent[keys[-1]]
        return body
    return change


@pytest.mark.parametrize(('provider', 'path', 'fixture', 'change', 'named'), [
    ('openai', OA_USAGE, 'openai_usage_completions.json', _drop('data', 0, 'results', 1, 'output_tokens'),
     f'{OA_USAGE}: data[0].results[1].output_tokens is missing'),
    ('openai', OA_COSTS, 'openai_costs.json', _drop('data', 0, 'results', 2, 'amount', 'value'),
     f'{OA_COSTS}: data[0].results[2].amount.value is missing'),
    ('openai', OA_COSTS, 'openai_costs.json', _drop('data'), f'{OA_COSTS}: response.data is missing'),
    ('openai', OA_USAGE, 'openai_usage_completions.json', _drop('next_page'),
     f'{OA_USAGE}: response.next_page is missing'),
    ('anthropic', AN_USAGE, 'anthropic_usage_messages.json',
     _drop('data', 0, 'results', 0, 'uncached_input_tokens'),
     f'{AN_USAGE}: data[0].results[0].uncached_input_tokens is missing'),
    ('anthropic', AN_COSTS, 'anthropic_cost_report.json', _drop('data', 0, 'results', 4, 'amount'),
     f'{AN_COSTS}: data[0].results[4].amount is missing'),
    ('anthropic', AN_COSTS, 'anthropic_cost_report.json', _drop('data', 1, 'starting_at'),
     f'{AN_COSTS}: data[1].starting_at is missing'),
    ('openrouter', OR_KEY, 'openrouter_key.json', _drop('data', 'usage_daily'),
     f'{OR_KEY}: data.usage_daily is missing'),
    ('openrouter', OR_KEY, 'openrouter_key.json', _drop('data'), f'{OR_KEY}: response.data is missing'),
])
async def test_missing_field_is_named(fake: FakeAPI, provider: str, path: str, fixture: str,
                                      change: Callable[[dict[str, Any]], dict[str, Any]], named: str) -> None:
    serve_all(fake)
    fake.route(path, change(load(fixture)))
    error = await failure(PROVIDERS[provider].make(fake.url))

    assert error.kind == 'malformed'
    assert named in str(error)


async def test_a_currency_other_than_usd_is_refused(fake: FakeAPI) -> None:
    serve_all(fake)
    body = load('anthropic_cost_report.json')
    body['data'][0]['results'][0]['currency'] = 'EUR'
    fake.route(AN_COSTS, body)
    error = await failure(PROVIDERS['anthropic'].make(fake.url))
    assert error.kind == 'malformed' and "'EUR', not USD" in str(error)


@pytest.mark.parametrize('provider', ['openai', 'anthropic'])
async def test_a_repeating_cursor_stops(fake: FakeAPI, provider: str) -> None:
    path = PROVIDERS[provider].first
    page = {'data': [], 'has_more': True, 'next_page': 'page_again'}
    fake.route(path, page)
    error = await failure(PROVIDERS[provider].make(fake.url))

    assert error.kind == 'pagination'
    assert [r.param('page') for r in fake.hits(path)] == [None, 'page_again']


@pytest.mark.parametrize('provider', ['openai', 'anthropic'])
async def test_an_endless_cursor_stops_at_max_pages(fake: FakeAPI, provider: str) -> None:
    path = PROVIDERS[provider].first
    fake.handler(path, lambda request: Reply({'data': [], 'has_more': True,
                                              'next_page': f'{request.param("page") or "page_"}1'}))
    error = await failure(PROVIDERS[provider].make(fake.url, max_pages=5))

    assert error.kind == 'pagination'
    assert len(fake.hits(path)) == 5


# --- storing ----------------------------------------------------------------------------------------------------

def stored(engine: Engine) -> list[tuple[date, str, int, int]]:
    with engine.connect() as conn:
        query = select(SNAPSHOTS.c.day, SNAPSHOTS.c.model, SNAPSHOTS.c.cost_micros, SNAPSHOTS.c.input_tokens)
        rows = conn.execute(query.where(SNAPSHOTS.c.source == 'openai_direct')).all()
    return sorted((day, model, cost, tokens) for day, model, cost, tokens in rows)


async def test_a_repulled_day_replaces_the_stored_one(fake: FakeAPI, engine: Engine) -> None:
    serve_all(fake)
    first = await pull(PROVIDERS['openai'].make(fake.url))
    with engine.begin() as conn:
        assert store_snapshots(conn, 'openai_direct', first) == 4

    # the 18th again, finalised: only gpt-4o-mini, $0.50 in two line items, 4000 tokens
    bucket = {'start_time': 1787011200, 'end_time': 1787097600}
    fake.route(OA_USAGE, {'data': [{**bucket, 'results': [
        {'model': MINI, 'input_tokens': 4000, 'output_tokens': 0, 'num_model_requests': 2}]}], 'has_more': False})
    fake.route(OA_COSTS, {'data': [{**bucket, 'results': [
        {'amount': {'value': 0.3, 'currency': 'usd'}, 'line_item': f'{MINI}, input'},
        {'amount': {'value': 0.2, 'currency': 'usd'}, 'line_item': f'{MINI}, output'}]}], 'has_more': False})
    second = await pull(PROVIDERS['openai'].make(fake.url), D18, D18)
    for _ in range(2):  # storing the same pull twice changes nothing
        with engine.begin() as conn:
            store_snapshots(conn, 'openai_direct', second)

    assert stored(engine) == [
        (D17, GPT41, 2_728_516, 1_167_258), (D17, MINI, 661_680, 3_415_050),  # the 17th untouched
        (D18, MINI, 500_000, 4000),  # not 724_521 + 500_000, and gpt-4.1's row is gone
    ]
