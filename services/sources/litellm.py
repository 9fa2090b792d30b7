"""Spend that went through a LiteLLM proxy, per UTC day, provider and model, pulled with the master key.

Endpoints, in order; one that is missing (404) or licensed only for LiteLLM Enterprise (a 400 saying so) is marked
'unavailable' in `details['endpoints']` and the next is tried:

1. GET /user/daily/activity: LiteLLM's daily aggregates (the admin's global view). Pages split the underlying rows,
   so a day may come back on several pages; they are summed. A day carries a breakdown by model and one by provider
   but no model x provider cross: a model goes to a provider when the day has one provider, or its name says which
   (a 'vertex_ai/...' prefix, else what the price registry knows it as) and that provider is in the day's list.
   Spend no model accounts for stays on its provider as model ''. When that does not add up (a model booked to a
   provider exceeds the provider's total), the day falls back to one row per provider, so no dollar moves.
2. GET /spend/logs/v2: one row per call, summed per day, provider (custom_llm_provider) and model.
3. GET /global/spend/report (Enterprise): per day, team and model; the provider comes from the model name.

Money is summed exactly as Decimal and each day rounded once (`split_micros`), so a day's rows add up to its total.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx

from services.integrations import litellm_provider, split_litellm_model
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
from services.sources.http import MAX_PAGES, SourceClient
from services.usage.pricing import Pricer

DAILY = '/user/daily/activity'
LOGS = '/spend/logs/v2'
REPORT = '/global/spend/report'
UNKNOWN = 'unknown'
SLACK = Decimal('0.000001')  # a model may exceed its provider's total by this much (float sums on LiteLLM's side)


@dataclass
class _Sum:
    spend: Decimal = Decimal(0)
    input_tokens: int = 0
    output_tokens: int = 0
    requests: int = 0

    def add(self, other: _Sum) -> None:
        self.spend += other.spend
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.requests += other.requests

    def minus(self, other: _Sum) -> _Sum:
        """What is left of self after other, never below zero."""
        return _Sum(max(self.spend - other.spend, Decimal(0)), max(self.input_tokens - other.input_tokens, 0),
                    max(self.output_tokens - other.output_tokens, 0), max(self.requests - other.requests, 0))

    def __bool__(self) -> bool:
        return bool(self.spend or self.input_tokens or self.output_tokens or self.requests)


Sums = dict[date, dict[tuple[str, str], _Sum]]  # day -> (provider, model) -> totals


class LiteLLMPuller:
    """`master_key` is the proxy's master key (spend routes are admin routes)."""

    name = 'litellm'

    def __init__(self, base_url: str, master_key: str, *, timeout: float = 20.0, retries: int = 3,
                 backoff_s: float = 0.5, page_size: int = 1000, max_pages: int = MAX_PAGES,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._client = SourceClient(base_url, {'Authorization': f'Bearer {master_key}'}, [master_key],
                                    timeout=timeout, retries=retries, backoff_s=backoff_s, max_pages=max_pages,
                                    transport=transport)
        self.page_size = page_size
        self._pricer: Pricer | None = None

    async def aclose(self) -> None:
        await self._client.aclose()

    async def pull(self, since: date, until: date) -> PullResult:
        days = days_between(since, until)
        endpoints: dict[str, str] = {}
        reasons: list[str] = []
        readers = ((DAILY, self._daily), (LOGS, self._logs), (REPORT, self._report))
        for path, read in readers:
            sums: Sums = defaultdict(lambda: defaultdict(_Sum))
            try:
                pages = await read(since, until, days, sums)
            except SourceError as exc:
                if exc.kind != 'unavailable':
                    raise
                endpoints[path] = 'unavailable'
                reasons.append(str(exc))
                continue
            endpoints[path] = 'used'
            return PullResult(self._rows(sums), days, {'endpoints': endpoints, 'used': path, 'pages': pages})
        raise SourceError('unavailable', 'no LiteLLM spend endpoint is available: ' + '; '.join(reasons))

    # --- /user/daily/activity ----------------------------------------------------------------------------------

    async def _daily(self, since: date, until: date, days: set[date], sums: Sums) -> int:
        params = {'start_date': since.isoformat(), 'end_date': until.isoformat(), 'page': 1,
                  'page_size': self.page_size}
        pages = 0
        async for page in self._client.pages(DAILY, params, _next_page(DAILY, params, _daily_has_more),
                                             not_available=enterprise_only):
            pages += 1
            for i, item in enumerate(_list(required(page, 'results', f'{DAILY}: response'), f'{DAILY}: results')):
                what = f'{DAILY}: results[{i}]'
                day = utc_day(required(item, 'date', what), f'{what}.date')
                if day in days:
                    self._daily_item(item, what, sums[day])
        return pages

    def _daily_item(self, item: dict[str, Any], what: str, day: dict[tuple[str, str], _Sum]) -> None:
        breakdown = item.get('breakdown') or {}
        models = _entries(breakdown.get('models'), f'{what}.breakdown.models')
        providers: dict[str, _Sum] = defaultdict(_Sum)
        for name, metrics in _entries(breakdown.get('providers'), f'{what}.breakdown.providers').items():
            providers[litellm_provider(name) or UNKNOWN].add(metrics)
        if not models and not providers:
            metrics = _metrics(required(item, 'metrics', what), f'{what}.metrics')
            if metrics:
                day[UNKNOWN, ''].add(metrics)
            return
        booked: dict[tuple[str, str], _Sum] = defaultdict(_Sum)
        for name, metrics in models.items():
            provider, model = self._provider_of(name, set(providers))
            if provider:
                booked[provider, model].add(metrics)
        per_provider: dict[str, _Sum] = defaultdict(_Sum)
        for (provider, _), metrics in booked.items():
            per_provider[provider].add(metrics)
        if providers and any(m.spend > providers[p].spend + SLACK for p, m in per_provider.items()):
            booked, per_provider = defaultdict(_Sum), defaultdict(_Sum)  # it does not add up: providers only
        for key, metrics in booked.items():
            day[key].add(metrics)
        for provider, total in providers.items():
            rest = total.minus(per_provider[provider])
            if rest:
                day[provider, ''].add(rest)

    def _provider_of(self, name: str, providers: set[str]) -> tuple[str, str]:
        """(provider, model) for a model of the daily breakdown; provider '' when it cannot be told apart."""
        prefixed, model = split_litellm_model(name)
        if len(providers) == 1:
            return next(iter(providers)), model
        guess = prefixed or self._infer(model)
        if not providers:
            return guess or UNKNOWN, model
        return (guess, model) if guess in providers else ('', model)

    # --- /spend/logs/v2 ----------------------------------------------------------------------------------------

    async def _logs(self, since: date, until: date, days: set[date], sums: Sums) -> int:
        # 'YYYY-MM-DD' alone would mean midnight: ask up to the next midnight and keep only the days asked for.
        params = {'start_date': f'{since.isoformat()} 00:00:00',
                  'end_date': f'{(until + timedelta(days=1)).isoformat()} 00:00:00',
                  'page': 1, 'page_size': self.page_size, 'sort_by': 'startTime', 'sort_order': 'asc'}
        seen: set[str] = set()
        pages = 0
        async for page in self._client.pages(LOGS, params, _next_page(LOGS, params, self._logs_has_more),
                                             not_available=enterprise_only):
            pages += 1
            for i, row in enumerate(_list(required(page, 'data', f'{LOGS}: response'), f'{LOGS}: data')):
                what = f'{LOGS}: data[{i}]'
                request_id = str(row.get('request_id') or '')
                if request_id and request_id in seen:
                    continue  # a row that moved to the next page while paging
                seen.add(request_id)
                day = _day_of_time(required(row, 'startTime', what), f'{what}.startTime')
                if day not in days:
                    continue
                provider, model = split_litellm_model(row.get('model') or row.get('model_group'),
                                                      row.get('custom_llm_provider'))
                provider = provider or self._infer(model) or UNKNOWN
                spend = _spend(required(row, 'spend', what), f'{what}.spend')
                sums[day][provider, model[:200]].add(_Sum(
                    spend, whole(row.get('prompt_tokens'), f'{what}.prompt_tokens'),
                    whole(row.get('completion_tokens'), f'{what}.completion_tokens'), 1))
        return pages

    def _logs_has_more(self, page: dict[str, Any], current: int) -> bool:
        data = page.get('data') or []
        total_pages = page.get('total_pages')
        if total_pages is None or page.get('total_is_capped') in (True, 'true'):
            return len(data) >= self.page_size  # no (or a capped) count: go on while pages come back full
        return bool(data) and current < whole(total_pages, f'{LOGS}: total_pages')

    # --- /global/spend/report ----------------------------------------------------------------------------------

    async def _report(self, since: date, until: date, days: set[date], sums: Sums) -> int:
        # Older proxies exclude end_date, newer ones include it: ask one day more, keep only the days asked for.
        params = {'start_date': since.isoformat(), 'end_date': (until + timedelta(days=1)).isoformat(),
                  'group_by': 'team'}
        body = await self._client.get_json(REPORT, params, not_available=enterprise_only)
        for i, item in enumerate(_list(body, f'{REPORT}: response')):
            what = f'{REPORT}: [{i}]'
            day = _day_of_time(required(item, 'group_by_day', what), f'{what}.group_by_day')
            if day not in days:
                continue
            groups = item.get('teams', item.get('customers')) or []
            for j, group in enumerate(_list(groups, f'{what}.teams')):
                self._report_group(group, f'{what}.teams[{j}]', sums[day])
        return 1

    def _report_group(self, group: dict[str, Any], what: str, day: dict[tuple[str, str], _Sum]) -> None:
        booked = Decimal(0)
        for k, entry in enumerate(_list(group.get('metadata') or [], f'{what}.metadata')):
            spend = _spend(required(entry, 'spend', f'{what}.metadata[{k}]'), f'{what}.metadata[{k}].spend')
            provider, model = split_litellm_model(str(entry.get('model') or ''))
            day[provider or self._infer(model) or UNKNOWN, model[:200]].add(_Sum(spend))
            booked += spend
        total = group.get('total_spend')
        rest = (_spend(total, f'{what}.total_spend') if total is not None else booked) - booked
        if rest > SLACK:
            day[UNKNOWN, ''].add(_Sum(rest))

    # --- shared ------------------------------------------------------------------------------------------------

    def _infer(self, model: str) -> str:
        """The provider the price registry knows this model under, or ''."""
        if not model:
            return ''
        if self._pricer is None:
            self._pricer = Pricer()
        return self._pricer.provider_of(model) or ''

    def _rows(self, sums: Sums) -> list[SnapshotRow]:
        rows = []
        for day in sorted(sums):
            totals = {key: total for key, total in sums[day].items() if total}
            micros = split_micros({'\0'.join(key): total.spend for key, total in totals.items()})
            for (provider, model), total in sorted(totals.items()):
                rows.append(SnapshotRow(self.name, day, provider, model, micros['\0'.join((provider, model))],
                                        total.input_tokens, total.output_tokens, total.requests))
        return rows


def enterprise_only(response: httpx.Response) -> bool:
    """LiteLLM's answer for a route that needs an Enterprise license: 400 (or 403) "...LiteLLM Enterprise user..."."""
    return response.status_code in (400, 403) and 'enterprise' in response.text.lower()


def _next_page(path: str, params: dict[str, Any],
               has_more: Callable[[dict[str, Any], int], bool]) -> Callable[[Any], dict[str, Any] | None]:
    """`next_params` for page-number pagination. The page a server says it sent is trusted over the one asked for,
    so a server that ignores `page` is caught as a repeating cursor instead of being read again and again."""
    asked = [int(params['page'])]

    def following(page: Any) -> dict[str, Any] | None:
        if not isinstance(page, dict):
            raise SourceError('malformed', f'{path}: the response is not an object')
        meta = page.get('metadata')
        if not isinstance(meta, dict):
            meta = page
        current = whole(meta.get('page'), f'{path}: page') or asked[0]
        if not has_more(page, current):
            return None
        asked[0] = current + 1
        return {'page': current + 1}

    return following


def _daily_has_more(page: dict[str, Any], current: int) -> bool:
    meta = page.get('metadata')
    if not isinstance(meta, dict):
        return False
    more = meta.get('has_more')
    if more is not None:
        return more in (True, 'true', 'True')
    total_pages = meta.get('total_pages')
    return total_pages is not None and current < whole(total_pages, f'{DAILY}: metadata.total_pages')


def _entries(value: Any, what: str) -> dict[str, _Sum]:
    """A breakdown dict {name: {metrics: {...}, ...}} as {name: totals}."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SourceError('malformed', f'{what} is not an object')
    return {str(name)[:200]: _metrics(required(entry, 'metrics', f'{what}[{name!r}]'), f'{what}[{name!r}].metrics')
            for name, entry in value.items()}


def _metrics(value: Any, what: str) -> _Sum:
    requests = value.get('api_requests') if isinstance(value, dict) else None
    if requests is None and isinstance(value, dict):
        requests = whole(value.get('successful_requests'), what) + whole(value.get('failed_requests'), what)
    return _Sum(_spend(required(value, 'spend', what), f'{what}.spend'),
                whole(value.get('prompt_tokens'), f'{what}.prompt_tokens'),
                whole(value.get('completion_tokens'), f'{what}.completion_tokens'),
                whole(requests, f'{what}.api_requests'))


def _spend(value: Any, what: str) -> Decimal:
    amount = usd_amount(value, what)
    if amount < 0:
        raise SourceError('malformed', f'{what}: negative spend')
    return amount


def _list(value: Any, what: str) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise SourceError('malformed', f'{what} is not a list')
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise SourceError('malformed', f'{what}[{i}] is not an object')
    return value


def _day_of_time(value: Any, what: str) -> date:
    """The UTC day of a timestamp; LiteLLM's times are UTC, so one without an offset is read as UTC too."""
    if isinstance(value, str) and len(value) > 10:
        try:
            parsed = datetime.fromisoformat(value.replace('Z', '+00:00'))
        except ValueError:
            raise SourceError('malformed', f'{what}: not a time: {value[:40]!r}') from None
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC).date()
    return utc_day(value, what)
