"""Anthropic as billed, from the Admin API: money from /v1/organizations/cost_report, tokens from
/v1/organizations/usage_report/messages, per UTC day and model.

The cost report is grouped by description, which names the model of every token cost; costs without a model (web
search, code execution) go to the model '' row. Amounts are cents as decimal strings ('123.45' = $1.2345), summed
exactly and rounded once per day (`split_micros`), so a day's rows add up to its billed total and each cost lands in
one row. Input tokens = uncached + cache reads + cache writes (5 min and 1 h). The usage report counts no requests.
Priority Tier is billed separately and is not in the cost report, so it is not in these rows either.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import httpx

from services.sources.base import (
    PullResult,
    SnapshotRow,
    SourceError,
    days_between,
    required,
    split_micros,
    usd_amount,
    utc_day,
    whole,
)
from services.sources.http import MAX_PAGES, SourceClient, has_more_cursor

DEFAULT_URL = 'https://api.anthropic.com'
API_VERSION = '2023-06-01'
COSTS = '/v1/organizations/cost_report'
USAGE = '/v1/organizations/usage_report/messages'
CENTS = Decimal('0.01')


def auth_headers(api_key: str) -> dict[str, str]:
    return {'x-api-key': api_key, 'anthropic-version': API_VERSION}


class AnthropicPuller:
    """Needs an Admin API key (sk-ant-admin...)."""

    name = 'anthropic_direct'

    def __init__(self, api_key: str, base_url: str = DEFAULT_URL, *, timeout: float = 20.0, retries: int = 3,
                 backoff_s: float = 0.5, max_pages: int = MAX_PAGES,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._client = SourceClient(base_url, auth_headers(api_key), [api_key], timeout=timeout, retries=retries,
                                    backoff_s=backoff_s, max_pages=max_pages, transport=transport)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def pull(self, since: date, until: date) -> PullResult:
        days = days_between(since, until)
        window = {'starting_at': f'{since.isoformat()}T00:00:00Z', 'bucket_width': '1d', 'limit': 31,
                  'ending_at': f'{(until + timedelta(days=1)).isoformat()}T00:00:00Z'}

        counts: dict[tuple[date, str], list[int]] = defaultdict(lambda: [0, 0])
        usage_params = {**window, 'group_by[]': 'model'}
        async for page in self._client.pages(USAGE, usage_params, lambda page: has_more_cursor(page, USAGE)):
            for day, result, what in _results(page, USAGE, days):
                cache_writes = result.get('cache_creation') or {}
                if not isinstance(cache_writes, dict):
                    raise SourceError('malformed', f'{what}.cache_creation is not an object')
                total = counts[day, str(result.get('model') or '')[:200]]
                total[0] += (whole(required(result, 'uncached_input_tokens', what), f'{what}.uncached_input_tokens')
                             + whole(result.get('cache_read_input_tokens'), f'{what}.cache_read_input_tokens')
                             + sum(whole(cache_writes.get(key), f'{what}.cache_creation.{key}')
                                   for key in ('ephemeral_5m_input_tokens', 'ephemeral_1h_input_tokens')))
                total[1] += whole(required(result, 'output_tokens', what), f'{what}.output_tokens')

        costs: dict[date, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
        cost_params = {**window, 'group_by[]': 'description'}
        async for page in self._client.pages(COSTS, cost_params, lambda page: has_more_cursor(page, COSTS)):
            for day, result, what in _results(page, COSTS, days):
                value = usd_amount(required(result, 'amount', what), f'{what}.amount', CENTS)
                currency = result.get('currency')
                if currency is not None and str(currency).upper() != 'USD':
                    raise SourceError('malformed', f'{what}.currency is {str(currency)[:10]!r}, not USD')
                costs[day][str(result.get('model') or '')[:200]] += value

        micros = {day: split_micros(by_model) for day, by_model in costs.items()}
        keys = set(counts) | {(day, model) for day, parts in micros.items() for model in parts}
        rows = []
        for day, model in sorted(keys):
            cost = micros.get(day, {}).get(model, 0)
            tokens_in, tokens_out = counts.get((day, model), (0, 0))
            if cost or tokens_in or tokens_out:
                rows.append(SnapshotRow(self.name, day, 'anthropic', model, cost, tokens_in, tokens_out))
        return PullResult(rows, days)


def _results(page: Any, path: str, days: set[date]) -> Iterator[tuple[date, dict[str, Any], str]]:
    """(day, result, its name for errors) for every result in a page's daily buckets within `days`."""
    buckets = required(page, 'data', f'{path}: response')
    if not isinstance(buckets, list):
        raise SourceError('malformed', f'{path}: response.data is not a list')
    for i, bucket in enumerate(buckets):
        what = f'{path}: data[{i}]'
        day = utc_day(required(bucket, 'starting_at', what), f'{what}.starting_at')
        results = required(bucket, 'results', what)
        if not isinstance(results, list):
            raise SourceError('malformed', f'{what}.results is not a list')
        if day not in days:
            continue
        for j, result in enumerate(results):
            if not isinstance(result, dict):
                raise SourceError('malformed', f'{what}.results[{j}] is not an object')
            yield day, result, f'{what}.results[{j}]'
