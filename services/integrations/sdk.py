"""A small Python client for agents: ask before a call, record after it.

    sg = SpendGauge('http://127.0.0.1:8080', token='...')
    with sg.guard(agent_id='planner', model='gpt-4o', provider='openai', estimated_cost_usd='0.02') as call:
        response = llm(...)                      # not reached when the budget blocks it: BudgetBlocked
        call.usage(input_tokens=1200, output_tokens=300)

    @sg.guarded(agent_id='coder', model='gpt-4o', usage=lambda r: {'input_tokens': r.usage.prompt_tokens, ...})
    def ask(prompt): ...

SpendGauge being unreachable never stops an agent by default (`fail_open=True`): the check then answers allow,
with the reason, and the record is dropped with a warning. A server too busy to take usage (503 or 429) gets the
record again after its Retry-After, up to `busy_retries` times, under the same event id (so it counts once).
"""
from __future__ import annotations

import functools
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from services.integrations import SDK_USER_AGENT

log = logging.getLogger(__name__)
T = TypeVar('T')
ATTRIBUTION = ('agent_id', 'session_id', 'user_id', 'project', 'task_id', 'tags', 'provider', 'model')
BUSY = (429, 503)  # the server asks to send it again later


class BudgetBlocked(RuntimeError):
    """The budget says no: the call was not made."""

    def __init__(self, decision: dict[str, Any]) -> None:
        super().__init__('; '.join(decision.get('reasons') or ['blocked by a budget policy']))
        self.decision = decision


@dataclass
class Call:
    """One guarded call: the check's answer, and the usage to record when it is done."""

    decision: dict[str, Any]
    event_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    recorded: dict[str, Any] | None = None
    _usage: dict[str, Any] | None = None

    def usage(self, input_tokens: int = 0, output_tokens: int = 0, cache_read_tokens: int = 0,
              cache_write_tokens: int = 0, cost_usd: Decimal | str | float | None = None, *,
              kind: str | None = None, audio_seconds: Decimal | str | float | None = None, characters: int = 0,
              images: dict[str, Any] | None = None, **extra: Any) -> None:
        """What the call used. Beyond text tokens: `kind` (chat, embedding, image, audio_transcription,
        audio_speech), `audio_seconds`, `characters` spoken, `images` ({'count': 2, 'size': '1024x1024',
        'quality': 'hd'}), and in `extra` the audio and image parts of the tokens (audio_input_tokens,
        audio_output_tokens, image_input_tokens, image_output_tokens) or any other event field."""
        units = {'kind': kind, 'audio_seconds': None if audio_seconds is None else str(audio_seconds),
                 'characters': characters or None, 'images': images}
        self._usage = {'input_tokens': input_tokens, 'output_tokens': output_tokens,
                       'cache_read_tokens': cache_read_tokens, 'cache_write_tokens': cache_write_tokens,
                       **({'cost_usd': str(cost_usd)} if cost_usd is not None else {}),
                       **{k: v for k, v in units.items() if v is not None}, **extra}


class SpendGauge:
    def __init__(self, url: str | None = None, token: str | None = None, *, timeout: float = 5.0,
                 fail_open: bool = True, busy_retries: int = 5, max_retry_wait_s: float = 5.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        url = url or os.environ.get('SPENDGAUGE_URL', 'http://127.0.0.1:8080')
        token = token or os.environ.get('SPENDGAUGE_API_TOKEN') or None
        headers = {'User-Agent': SDK_USER_AGENT, **({'Authorization': f'Bearer {token}'} if token else {})}
        if busy_retries < 0 or max_retry_wait_s < 0:
            raise ValueError('busy_retries and max_retry_wait_s cannot be negative')
        self.fail_open = fail_open
        self.busy_retries = busy_retries
        self.max_retry_wait_s = max_retry_wait_s
        self._client = httpx.Client(base_url=url.rstrip('/') + '/api/v1', headers=headers, timeout=timeout,
                                    transport=transport)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> SpendGauge:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def check(self, **request: Any) -> dict[str, Any]:
        """`POST /api/v1/check`: decision (allow, warn, throttle, block), reasons, retry_after_s, eco_mode."""
        try:
            response = self._client.post('/check', json=_clean(request))
        except httpx.TransportError as exc:
            return self._unreachable(exc)
        if response.status_code >= 500:
            return self._unreachable(RuntimeError(f'server error {response.status_code}'))
        body = response.json()
        if response.status_code >= 400:
            raise ValueError(f'check refused ({response.status_code}): {body.get("detail")}')
        return body

    def record(self, **event: Any) -> dict[str, Any] | None:
        """`POST /api/v1/usage` (source `sdk`): the stored event, or None when SpendGauge could not be reached or
        stayed too busy to take it. Bad usage raises ValueError with the server's reason."""
        body = _clean({'source': 'sdk', **event})
        body.setdefault('event_id', uuid.uuid4().hex)  # sent again when the server is busy: counted once
        for attempt in range(self.busy_retries + 1):
            try:
                response = self._client.post('/usage', json=body)
            except httpx.TransportError as exc:
                if not self.fail_open:
                    raise
                log.warning('SpendGauge unreachable, usage not recorded: %s', type(exc).__name__)
                return None
            if response.status_code not in BUSY or attempt == self.busy_retries:
                break
            wait = _retry_after(response, self.max_retry_wait_s)
            log.info('SpendGauge busy (HTTP %d), sending the usage again in %.1f s', response.status_code, wait)
            time.sleep(wait)
        if response.status_code >= 500 or response.status_code in BUSY:
            if not self.fail_open:
                raise RuntimeError(f'SpendGauge could not take the usage (HTTP {response.status_code})')
            log.warning('SpendGauge could not take the usage (HTTP %d), not recorded', response.status_code)
            return None
        answer = response.json()
        if response.status_code >= 400:
            raise ValueError(f'usage refused ({response.status_code}): {answer.get("detail")}')
        return answer

    @contextmanager
    def guard(self, **request: Any) -> Iterator[Call]:
        """Check before the block (BudgetBlocked when blocked), record the usage given to `call.usage()` after it,
        also when the block raises (the tokens were spent). The check reserves its estimate under the call's event
        id until that usage arrives, so guards running at once cannot overshoot a limit; a block that gives no usage
        lets the reservation go."""
        event_id = uuid.uuid4().hex
        decision = self.check(**request, reserve=True, event_id=event_id)
        if decision.get('decision') == 'block':
            raise BudgetBlocked(decision)
        call = Call(decision, event_id)
        try:
            yield call
        finally:
            if call._usage is not None:
                attribution = {k: v for k, v in request.items() if k in ATTRIBUTION}
                call.recorded = self.record(event_id=call.event_id, **attribution, **call._usage)
            elif 'reservation' in decision:
                self.release(event_id)

    def release(self, event_id: str) -> bool:
        """Let the estimate a check reserved go (the call did not happen); False when nothing was held."""
        try:
            response = self._client.delete(f'/check/reservations/{quote(event_id, safe="")}')
        except httpx.TransportError as exc:
            log.warning('SpendGauge unreachable, reservation not released (it expires): %s', type(exc).__name__)
            return False
        return response.status_code == 200 and bool(response.json().get('released'))

    def guarded(self, usage: Callable[[Any], dict[str, Any]], **request: Any) -> Callable[[Callable[..., T]],
                                                                                        Callable[..., T]]:
        """Decorator form of `guard`: `usage(result)` turns the function's result into token counts (and cost)."""
        def wrap(function: Callable[..., T]) -> Callable[..., T]:
            @functools.wraps(function)
            def wrapper(*args: Any, **kwargs: Any) -> T:
                with self.guard(**request) as call:
                    result = function(*args, **kwargs)
                    call.usage(**usage(result))
                return result
            return wrapper
        return wrap

    def _unreachable(self, exc: Exception) -> dict[str, Any]:
        if not self.fail_open:
            raise exc
        log.warning('SpendGauge unreachable, allowing the call: %s', type(exc).__name__)
        return {'decision': 'allow', 'allowed': True, 'reasons': ['SpendGauge unreachable: allowed (fail open)'],
                'policies': [], 'eco_mode': False}


def _retry_after(response: httpx.Response, cap: float) -> float:
    try:
        return min(max(float(response.headers.get('retry-after', '')), 0.0), cap)
    except ValueError:
        return min(1.0, cap)


def _clean(values: dict[str, Any]) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Decimal) else v) for k, v in values.items() if v is not None}
