"""The HTTP side of every puller: one long-lived client per source, explicit timeouts, retries with backoff on
5xx and dropped connections, Retry-After honoured on 429, bounded pagination, and errors that never carry a key."""
from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

from services.core.scrub import scrub
from services.sources.base import SourceError

log = logging.getLogger(__name__)
MAX_PAGES = 200  # a cursor that never ends stops here
MAX_RETRY_AFTER_S = 120.0


class SourceClient:
    """GET JSON from one API. `secrets` are scrubbed from every message this client produces."""

    def __init__(self, base_url: str, headers: dict[str, str], secrets: list[str], *, timeout: float = 20.0,
                 retries: int = 3, backoff_s: float = 0.5, max_pages: int = MAX_PAGES,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip('/')
        self._secrets = [s for s in secrets if s]
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_pages = max_pages
        self._client = httpx.AsyncClient(base_url=self.base_url, headers=headers, transport=transport,
                                         timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)))

    async def aclose(self) -> None:
        await self._client.aclose()

    def scrub(self, text: str) -> str:
        """Uncut: the sync service scrubs again with every configured secret, and only then cuts."""
        return scrub(text, self._secrets)

    async def get_json(self, path: str, params: dict[str, Any] | None = None,
                       not_available: Callable[[httpx.Response], bool] | None = None) -> Any:
        """The decoded JSON body of a GET. Raises SourceError; `not_available(response)` marks answers that mean
        "this endpoint does not exist or is not licensed here" (kind 'unavailable', never retried)."""
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self._client.get(path, params=params)
            except httpx.TimeoutException:
                error = SourceError('timeout', f'{path}: no answer within {self._client.timeout.read} s')
            except httpx.TransportError as exc:
                error = SourceError('connection', self.scrub(f'{path}: cannot connect ({type(exc).__name__})'))
            else:
                if not_available is not None and not_available(response):
                    raise SourceError('unavailable', f'{path}: not available on this server ({response.status_code})')
                if response.status_code in (401, 403):
                    raise SourceError('auth', f'{path}: the key was refused ({response.status_code})')
                if response.status_code == 404:
                    raise SourceError('unavailable', f'{path}: not found (404)')
                if response.status_code == 429:
                    wait = _retry_after(response, self.backoff_s * 2 ** attempt)
                    error = SourceError('rate_limited', f'{path}: rate limited (429), retry after {wait:.1f} s')
                    if attempt <= self.retries and wait <= MAX_RETRY_AFTER_S:
                        log.info('%s: rate limited, waiting %.1f s as asked', self.base_url + path, wait)
                        await asyncio.sleep(wait)
                        continue
                    raise error
                if response.status_code >= 500:  # with the server's reason when it gave one in JSON (LiteLLM
                    reason = json_reason(response)  # without its database: "DB not connected ...")
                    error = SourceError('server', self.scrub(f'{path}: server error {response.status_code}'
                                                             + (f': {reason}' if reason else '')))
                elif response.status_code >= 400:
                    raise SourceError('unavailable' if response.status_code == 405 else 'server',
                                      self.scrub(f'{path}: refused ({response.status_code}): {_detail(response)}'))
                else:
                    try:
                        return response.json()
                    except ValueError:
                        raise SourceError('malformed', f'{path}: the answer is not JSON') from None
            if attempt > self.retries:
                raise error
            await asyncio.sleep(self.backoff_s * 2 ** (attempt - 1) * (1 + random.random() / 4))

    async def pages(self, path: str, params: dict[str, Any], next_params: Callable[[Any], dict[str, Any] | None],
                    **kwargs: Any) -> AsyncIterator[Any]:
        """Each page's JSON; `next_params(page)` gives the parameters of the next page, or None after the last.
        A cursor that repeats or runs past `max_pages` is an error, not an endless loop."""
        seen: set[str] = set()
        for _ in range(self.max_pages):
            page = await self.get_json(path, params, **kwargs)
            yield page
            following = next_params(page)
            if following is None:
                return
            marker = repr(sorted(following.items()))
            if marker in seen:
                raise SourceError('pagination', f'{path}: the next-page cursor repeats')
            seen.add(marker)
            params = {**params, **following}
        raise SourceError('pagination', f'{path}: more than {self.max_pages} pages; giving up')


def has_more_cursor(page: Any, path: str) -> dict[str, str] | None:
    """`next_params` for the `has_more` + `next_page` convention (OpenAI, Anthropic): {'page': cursor} or None."""
    if not isinstance(page, dict) or page.get('has_more') not in (True, 'true'):
        return None
    cursor = page.get('next_page')
    if not cursor:
        raise SourceError('malformed', f'{path}: response.next_page is missing although has_more is true')
    return {'page': str(cursor)}


def _retry_after(response: httpx.Response, default: float) -> float:
    value = response.headers.get('retry-after', '')
    try:
        return max(0.0, float(value))
    except ValueError:
        return default


def _detail(response: httpx.Response) -> str:
    """What the server said, uncut: it is scrubbed before it is ever cut (services/sources/sync.py)."""
    reason = json_reason(response)
    return reason if reason is not None else response.text


def json_reason(response: httpx.Response) -> str | None:
    """The reason in a JSON error body (`{"error": {"message": ...}}`, `{"detail": {"error": ...}}`, ...); None when
    the body is not JSON (an HTML error page says nothing worth keeping)."""
    try:
        body = response.json()
    except ValueError:
        return None
    for _ in range(3):  # the reason sits at most this deep in the shapes seen
        if not isinstance(body, dict):
            break
        key = next((k for k in ('message', 'error', 'detail') if body.get(k)), None)
        if key is None:
            break
        body = body[key]
    return str(body) if body not in (None, '', {}) else None
