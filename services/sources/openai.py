"""OpenAI as billed: money from /v1/organization/costs, tokens and requests from /v1/organization/usage/completions,
per UTC day and model.

How the two combine: only the costs endpoint carries money (OpenAI says usage may not reconcile with the invoice,
costs does), and only the usage endpoint carries tokens. Costs are asked for by line item. A line item whose text
before the first comma is a model the usage endpoint reported in this pull ('gpt-4.1-2025-04-14, output') is booked
to that model's row; every other cost (embeddings, images, another line-item format, no line item) goes to the
model '' row. So each billed dollar lands in exactly one row, a model without a matching line item has cost 0, and
a day's rows add up to the day's billed total, summed exactly and rounded once (`split_micros`).
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
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

DEFAULT_URL = 'https://api.openai.com'
COSTS = '/v1/organization/costs'
USAGE = '/v1/organization/usage/completions'


class OpenAIPuller:
    """Needs an admin key (sk-admin-...)."""

    name = 'openai_direct'

    def __init__(self, api_key: str, base_url: str = DEFAULT_URL, *, timeout: float = 20.0, retries: int = 3,
                 backoff_s: float = 0.5, max_pages: int = MAX_PAGES,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._client = SourceClient(base_url, {'Authorization': f'Bearer {api_key}'}, [api_key], timeout=timeout,
                                    retries=retries, backoff_s=backoff_s, max_pages=max_pages, transport=transport)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def pull(self, since: date, until: date) -> PullResult:
        days = days_between(since, until)
        window = {'start_time': _unix(since), 'end_time': _unix(until + timedelta(days=1)), 'bucket_width': '1d'}

        counts: dict[tuple[date, str], list[int]] = defaultdict(lambda: [0, 0, 0])
        usage_params = {**window, 'group_by': 'model', 'limit': 31}
        async for page in self._client.pages(USAGE, usage_params, lambda page: has_more_cursor(page, USAGE)):
            for day, result, what in _results(page, USAGE, days):
                total = counts[day, str(result.get('model') or '')[:200]]
                for i, key in enumerate(('input_tokens', 'output_tokens', 'num_model_requests')):
                    total[i] += whole(required(result, key, what), f'{what}.{key}')

        models = {model for _, model in counts if model}
        costs: dict[date, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
        cost_params = {**window, 'group_by': 'line_item', 'limit': 180}
        async for page in self._client.pages(COSTS, cost_params, lambda page: has_more_cursor(page, COSTS)):
            for day, result, what in _results(page, COSTS, days):
                amount = required(result, 'amount', what)
                value = usd_amount(required(amount, 'value', f'{what}.amount'), f'{what}.amount.value')
                currency = amount.get('currency')
                if currency is not None and str(currency).lower() != 'usd':
                    raise SourceError('malformed', f'{what}.amount.currency is {str(currency)[:10]!r}, not USD')
                costs[day][_model_of(result.get('line_item'), models)] += value

        micros = {day: split_micros(by_model) for day, by_model in costs.items()}
        keys = set(counts) | {(day, model) for day, parts in micros.items() for model in parts}
        rows = []
        for day, model in sorted(keys):
            cost = micros.get(day, {}).get(model, 0)
            tokens_in, tokens_out, requests = counts.get((day, model), (0, 0, 0))
            if cost or tokens_in or tokens_out or requests:
                rows.append(SnapshotRow(self.name, day, 'openai', model, cost, tokens_in, tokens_out, requests))
        return PullResult(rows, days)


def _unix(day: date) -> int:
    return int(datetime.combine(day, time(), UTC).timestamp())


def _model_of(line_item: Any, models: set[str]) -> str:
    head = str(line_item or '').split(',', 1)[0].strip()
    return head if head in models else ''


def _results(page: Any, path: str, days: set[date]) -> Iterator[tuple[date, dict[str, Any], str]]:
    """(day, result, its name for errors) for every result in a page's daily buckets within `days`."""
    buckets = required(page, 'data', f'{path}: response')
    if not isinstance(buckets, list):
        raise SourceError('malformed', f'{path}: response.data is not a list')
    for i, bucket in enumerate(buckets):
        what = f'{path}: data[{i}]'
        start = required(bucket, 'start_time', what)
        if isinstance(start, str) and start.isdigit():
            start = int(start)
        day = utc_day(start, f'{what}.start_time')
        results = required(bucket, 'results', what)
        if not isinstance(results, list):
            raise SourceError('malformed', f'{what}.results is not a list')
        if day not in days:
            continue
        for j, result in enumerate(results):
            if not isinstance(result, dict):
                raise SourceError('malformed', f'{what}.results[{j}] is not an object')
            yield day, result, f'{what}.results[{j}]'
