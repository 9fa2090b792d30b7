"""OpenRouter as billed: the key's spend from GET /api/v1/key and, with a management key, the account's credits
from GET /api/v1/credits.

/key reports running totals in USD (today, this week, this month, all time), so the only day it can describe is
today (UTC): one row, provider 'openrouter', model '', cost = `usage_daily`; earlier days are never replaced. BYOK
usage is billed by the upstream provider, not by OpenRouter, so it is reported in `details` only, with the other
totals, the limit and what remains of it. /credits adds the account's total credits and usage to `details`; when it
fails, the pull still succeeds and `details['endpoints']` names the fault.
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import httpx

from services.sources.base import PullResult, SnapshotRow, SourceError, required, usd_micros
from services.sources.http import SourceClient

DEFAULT_URL = 'https://openrouter.ai'
KEY = '/api/v1/key'
CREDITS = '/api/v1/credits'
KEY_TOTALS = ('usage', 'usage_daily', 'usage_weekly', 'usage_monthly', 'limit', 'limit_remaining',
              'byok_usage', 'byok_usage_daily', 'byok_usage_weekly', 'byok_usage_monthly')


class OpenRouterPuller:
    """`api_key` is any key (the one LiteLLM uses will do); /credits needs a management key."""

    name = 'openrouter_direct'

    def __init__(self, api_key: str, base_url: str = DEFAULT_URL, *, management_key: str | None = None,
                 timeout: float = 20.0, retries: int = 3, backoff_s: float = 0.5,
                 transport: httpx.AsyncBaseTransport | None = None,
                 clock: Callable[[], datetime] | None = None) -> None:
        secrets = [api_key, management_key or '']
        options: dict[str, Any] = {'timeout': timeout, 'retries': retries, 'backoff_s': backoff_s,
                                   'transport': transport}
        self._client = SourceClient(base_url, {'Authorization': f'Bearer {api_key}'}, secrets, **options)
        self._management = (SourceClient(base_url, {'Authorization': f'Bearer {management_key}'}, secrets, **options)
                            if management_key else None)
        self._clock = clock or (lambda: datetime.now(UTC))

    async def aclose(self) -> None:
        await self._client.aclose()
        if self._management is not None:
            await self._management.aclose()

    async def pull(self, since: date, until: date) -> PullResult:
        today = self._clock().astimezone(UTC).date()
        key = required(await self._client.get_json(KEY), 'data', f'{KEY}: response')
        daily = usd_micros(required(key, 'usage_daily', f'{KEY}: data'), f'{KEY}: data.usage_daily')
        details: dict[str, Any] = {'key': {f'{name}_micros': _micros_or_none(key.get(name), f'{KEY}: data.{name}')
                                           for name in KEY_TOTALS}}
        details['key']['limit_reset'] = None if key.get('limit_reset') is None else str(key['limit_reset'])[:20]
        if self._management is not None:
            try:
                details['credits'] = await self._credits(self._management)
            except SourceError as exc:
                details['endpoints'] = {CREDITS: exc.kind}
        if not since <= today <= until:
            return PullResult([], set(), details)
        rows = [SnapshotRow(self.name, today, 'openrouter', '', daily)] if daily else []
        return PullResult(rows, {today}, details)

    @staticmethod
    async def _credits(client: SourceClient) -> dict[str, int]:
        data = required(await client.get_json(CREDITS), 'data', f'{CREDITS}: response')
        credits = usd_micros(required(data, 'total_credits', f'{CREDITS}: data'), f'{CREDITS}: data.total_credits')
        used = usd_micros(required(data, 'total_usage', f'{CREDITS}: data'), f'{CREDITS}: data.total_usage')
        return {'total_credits_micros': credits, 'total_usage_micros': used, 'remaining_micros': credits - used}


def _micros_or_none(value: Any, what: str) -> int | None:
    return None if value is None else usd_micros(value, what)
