"""A LiteLLM callback that records every successful call in SpendGauge, live.

SDK:
    import litellm
    from services.integrations.litellm_logger import SpendGaugeLogger
    litellm.callbacks = [SpendGaugeLogger(url='http://127.0.0.1:8080', token='...')]

Proxy (config.yaml; SPENDGAUGE_URL, SPENDGAUGE_API_TOKEN and the ENV_OPTIONS below in the proxy's environment):
    litellm_settings:
      callbacks: services.integrations.litellm_logger.spendgauge_callback

Each call becomes one usage event: event_id = LiteLLM's call id, cost = LiteLLM's `response_cost` (so SpendGauge
stores what LiteLLM charged; without one, or when LiteLLM could not price the call, SpendGauge prices it), tokens
and cache tokens from the standard logging object, the kind of call and its units beyond text tokens (audio and image
tokens, images generated, a transcription's seconds, a speech call's characters: litellm_units.py), agent_id /
session_id / task_id / user_id / project / tags from the request metadata (SDK `metadata={...}`, the proxy's request
`metadata`, or `x-spendgauge-agent-id`-style headers at the proxy).

The hook only appends the event to a bounded in-memory queue (the oldest event is dropped, and counted, when it is
full); a background thread posts batches to /api/v1/usage/batch, retrying with backoff while SpendGauge is down.
Nothing here raises into the LLM call or waits on the network. LiteLLM hands a call to its callbacks after the call
has returned (on its logging threads, or for an async call on its logging worker): `flush()` first waits for that
hand-over, then for delivery; `close()` does the same and stops (also run at interpreter exit). In async code use
`await aflush()` and `await aclose()`. litellm itself is optional: without it the class is a plain object.
"""
from __future__ import annotations

import asyncio
import atexit
import logging
import math
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal
from urllib.parse import quote

import httpx

from services.integrations import CALLBACK_USER_AGENT, api_root, litellm_handoff, split_litellm_model
from services.integrations.litellm_units import call_units
from services.integrations.litellm_units import count as _count

try:  # litellm is optional: SpendGauge does not need it, the proxy and SDK users have it
    from litellm.integrations.custom_logger import CustomLogger as _Base
except ImportError:  # pragma: no cover - exercised only where litellm is missing
    _Base = object  # type: ignore[assignment,misc]

log = logging.getLogger(__name__)
DEFAULT_URL = 'http://127.0.0.1:8080'
MAX_BATCH = 10_000  # what POST /api/v1/usage/batch accepts
ATTRIBUTION = ('agent_id', 'session_id', 'task_id', 'user_id', 'project')
NO_USER = 'default_user_id'  # what LiteLLM's proxy names the owner of a call made with the master key
CLIENT_TAG_PREFIX = 'user-agent:'  # LiteLLM tags every proxy call with its client's User-Agent: not our tags
ALIASES = {'agent': 'agent_id', 'session': 'session_id', 'task': 'task_id', 'user': 'user_id'}
HEADER_PREFIX = 'x-spendgauge-'  # x-spendgauge-agent-id: planner -> agent_id
Outcome = Literal['ok', 'retry', 'discard']


class ConfigError(ValueError):
    """A SPENDGAUGE_* variable has a value the logger cannot use; the message names the variable."""


def _is_duration(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _flag(name: str, text: str) -> bool:
    value = text.lower()
    if value in ('1', 'true', 'yes', 'on'):
        return True
    if value in ('0', 'false', 'no', 'off'):
        return False
    raise ConfigError(f'{name} must be 1, true, yes or on (or 0, false, no, off), got {text!r}')


def _seconds(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not _is_duration(value):
        raise ConfigError(f'{name} must be a number of seconds above 0, got {text!r}')
    return value


def _whole(low: int, high: int) -> Callable[[str, str], int]:
    def parse(name: str, text: str) -> int:
        if not text.isdigit() or not low <= int(text) <= high:
            raise ConfigError(f'{name} must be a whole number from {low} to {high:,}, got {text!r}')
        return int(text)
    return parse


# Environment variable -> (SpendGaugeLogger option, parser), for the proxy's `spendgauge_callback`.
ENV_OPTIONS: dict[str, tuple[str, Callable[[str, str], Any]]] = {
    'SPENDGAUGE_ENFORCE': ('enforce', _flag),
    'SPENDGAUGE_REJECT_THROTTLE': ('reject_throttle', _flag),
    'SPENDGAUGE_CHECK_TIMEOUT_S': ('check_timeout_s', _seconds),
    'SPENDGAUGE_BATCH_SIZE': ('batch_size', _whole(1, MAX_BATCH)),
    'SPENDGAUGE_FLUSH_INTERVAL_S': ('flush_interval_s', _seconds),
    'SPENDGAUGE_MAX_QUEUE': ('max_queue', _whole(1, 10_000_000)),
    'SPENDGAUGE_SEND_TIMEOUT_S': ('timeout_s', _seconds),
    'SPENDGAUGE_MAX_BACKOFF_S': ('max_backoff_s', _seconds),
    'SPENDGAUGE_EXIT_TIMEOUT_S': ('exit_timeout_s', _seconds),
}


def env_options(environ: Mapping[str, str]) -> dict[str, Any]:
    """The logger options that `environ` sets (an empty variable counts as unset); ConfigError for a bad value."""
    found: dict[str, Any] = {}
    for name, (option, parse) in ENV_OPTIONS.items():
        text = environ.get(name, '').strip()
        if text:
            found[option] = parse(name, text)
    return found


class SpendGaugeLogger(_Base):
    """Register with `litellm.callbacks = [SpendGaugeLogger(url=..., token=...)]`."""

    def __init__(self, url: str = DEFAULT_URL, token: str | None = None, *, batch_size: int = 200,
                 flush_interval_s: float = 1.0, max_queue: int = 10_000, timeout_s: float = 5.0,
                 backoff_s: float = 0.5, max_backoff_s: float = 30.0, exit_timeout_s: float = 5.0,
                 transport: httpx.BaseTransport | None = None, enforce: bool = False,
                 reject_throttle: bool = False, check_timeout_s: float = 2.0) -> None:
        if _Base is not object:
            super().__init__()
        self.enforce = enforce
        self.reject_throttle = reject_throttle
        self.check_timeout_s = check_timeout_s
        self.check_url = api_root(url) + '/check'
        self._check_client: httpx.AsyncClient | None = None
        if not 1 <= batch_size <= MAX_BATCH or max_queue < 1:
            raise ValueError(f'batch_size must be 1..{MAX_BATCH} and max_queue at least 1')
        for name, seconds in (('flush_interval_s', flush_interval_s), ('timeout_s', timeout_s),
                              ('backoff_s', backoff_s), ('max_backoff_s', max_backoff_s),
                              ('exit_timeout_s', exit_timeout_s), ('check_timeout_s', check_timeout_s)):
            if not _is_duration(seconds):
                raise ValueError(f'{name} must be a number of seconds above 0, got {seconds!r}')
        self.batch_url = api_root(url) + '/usage/batch'
        self._headers = {'User-Agent': CALLBACK_USER_AGENT, **({'Authorization': f'Bearer {token}'} if token else {})}
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.max_queue = max_queue
        self.timeout_s = timeout_s
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.exit_timeout_s = exit_timeout_s
        self._transport = transport
        self._reset_state()
        self.counts = dict.fromkeys(('recorded', 'delivered', 'duplicate', 'rejected', 'dropped', 'discarded',
                                     'failed_attempts', 'hook_errors', 'token_refused'), 0)
        ref = weakref.ref(self)
        atexit.register(_close_at_exit, ref)
        if hasattr(os, 'register_at_fork'):
            os.register_at_fork(after_in_child=lambda: _after_fork(ref))

    @classmethod
    def from_env(cls, **options: Any) -> SpendGaugeLogger:
        """A logger set up by the environment: SPENDGAUGE_URL (default http://127.0.0.1:8080), SPENDGAUGE_API_TOKEN
        and the options in ENV_OPTIONS; `options` given here win. A value it cannot use raises ConfigError."""
        url = os.environ.get('SPENDGAUGE_URL', '').strip() or DEFAULT_URL
        if not url.lower().startswith(('http://', 'https://')):
            raise ConfigError(f'SPENDGAUGE_URL must be an http:// or https:// URL, got {url!r}')
        return cls(url, os.environ.get('SPENDGAUGE_API_TOKEN', '').strip() or None,
                   **{**env_options(os.environ), **options})

    def _reset_state(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._poke = threading.Event()  # cuts a retry wait short (flush, close)
        self._queue: deque[dict[str, Any]] = deque()
        self._in_flight = 0
        self._thread: threading.Thread | None = None
        self._flushing = 0
        self._closed = False
        self._stop_at: float | None = None  # close(): give up retrying at this monotonic time
        self._down = False
        self._token_refused = False

    # --- LiteLLM hooks: never raise, never wait ----------------------------------------------------------------

    def log_success_event(self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any) -> None:
        self._record(kwargs, response_obj, start_time, end_time)

    async def async_log_success_event(self, kwargs: dict[str, Any], response_obj: Any, start_time: Any,
                                      end_time: Any) -> None:
        self._record(kwargs, response_obj, start_time, end_time)

    async def async_pre_call_hook(self, user_api_key_dict: Any, cache: Any, data: dict,
                                  call_type: Any) -> Exception | str | dict[str, Any] | None:
        """At the proxy, with `enforce=True`: ask SpendGauge's `/check` before the call and reject it (HTTP 429)
        when the budget blocks it, or also when it throttles with `reject_throttle=True`. SpendGauge unreachable or
        slow (`check_timeout_s`): the call goes ahead. Returns None (LiteLLM's type: None leaves the call as it is).

        The check reserves its estimate under the LiteLLM call id, which the usage this logger sends carries, so
        concurrent calls cannot overshoot a limit; a failed call releases it."""
        if not self.enforce:
            return None
        try:
            body = check_request(data)
        except Exception:
            log.exception('SpendGauge: could not read the request for a budget check')
            return None
        try:
            response = await self._checks().post(self.check_url, json=body)
            response.raise_for_status()
            answer = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            log.warning('SpendGauge: budget check failed (%s); the call goes ahead', type(exc).__name__)
            return None
        decision = answer.get('decision')
        if decision == 'block' or (decision == 'throttle' and self.reject_throttle):
            raise BudgetRejected(decision, answer)
        return None

    async def async_log_failure_event(self, kwargs: dict[str, Any], response_obj: Any, start_time: Any,
                                      end_time: Any) -> None:
        """The call failed: let the estimate its check reserved go at once rather than when the hold expires."""
        call_id = _label(kwargs.get('litellm_call_id'))
        if not self.enforce or not call_id:
            return
        try:
            await self._checks().delete(f'{self.check_url}/reservations/{quote(call_id, safe="")}')
        except httpx.HTTPError as exc:
            log.debug('SpendGauge: could not release the reservation of %s (%s)', call_id, type(exc).__name__)

    def _checks(self) -> httpx.AsyncClient:
        if self._check_client is None:
            self._check_client = httpx.AsyncClient(timeout=self.check_timeout_s, headers=self._headers)
        return self._check_client

    def _record(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        try:
            event = litellm_event(kwargs, response_obj, start_time, end_time)
            if event is not None:
                self.enqueue(event)
        except Exception:  # a bug here must never reach the LLM call
            with self._cond:
                self.counts['hook_errors'] += 1
                first = self.counts['hook_errors'] == 1
            if first:
                log.exception('SpendGauge: could not record a LiteLLM call (reported once)')

    # --- queue -------------------------------------------------------------------------------------------------

    def enqueue(self, event: dict[str, Any]) -> None:
        """Queue one usage event for delivery; when the queue is full the oldest one is dropped."""
        with self._cond:
            if self._closed:
                self.counts['dropped'] += 1
                return
            full = len(self._queue) >= self.max_queue
            if full:
                self._queue.popleft()
                self.counts['dropped'] += 1
            self._queue.append(event)
            self.counts['recorded'] += 1
            if len(self._queue) == 1 or len(self._queue) >= self.batch_size:
                self._cond.notify_all()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name='spendgauge-logger', daemon=True)
                self._thread.start()
        if full and self.counts['dropped'] == 1:
            log.warning('SpendGauge: %d events waiting, the queue is full; dropping the oldest (see stats())',
                        self.max_queue)

    def stats(self) -> dict[str, int]:
        """Counters (recorded, delivered, duplicate, rejected, dropped, discarded, failed_attempts, hook_errors,
        token_refused: deliveries refused for the token, kept and retried) and what is waiting now (queued,
        in_flight)."""
        with self._cond:
            return {**self.counts, 'queued': len(self._queue), 'in_flight': self._in_flight}

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until LiteLLM has handed this logger the calls made so far (see litellm_handoff), then send what is
        queued and wait until it is delivered. False when the timeout ran out first. On an event loop, use
        `await aflush()`: a blocking flush there cannot wait for LiteLLM's async callbacks."""
        deadline = time.monotonic() + timeout
        handed_over = litellm_handoff.drain(deadline)
        return self._deliver_queued(deadline) and handed_over

    async def aflush(self, timeout: float = 10.0) -> bool:
        """`flush()` for async code: right after `await litellm.acompletion(...)` the call is still on its way."""
        deadline = time.monotonic() + timeout
        handed_over = await litellm_handoff.adrain(deadline)
        return await asyncio.to_thread(self._deliver_queued, deadline) and handed_over

    def _deliver_queued(self, deadline: float) -> bool:
        with self._cond:
            self._flushing += 1
            self._cond.notify_all()
        self._poke.set()
        try:
            with self._cond:
                while self._queue or self._in_flight:
                    left = deadline - time.monotonic()
                    if left <= 0 or self._thread is None or not self._thread.is_alive():
                        return False
                    self._cond.wait(min(left, 0.1))
                return True
        finally:
            with self._cond:
                self._flushing -= 1

    def close(self, timeout: float = 10.0) -> bool:
        """Wait for LiteLLM's hand-over as `flush()` does, deliver what is queued (retrying until `timeout` runs
        out), then stop. True when nothing was lost."""
        deadline = time.monotonic() + timeout
        handed_over = litellm_handoff.drain(deadline)
        with self._cond:
            if self._closed:
                return not self._queue and not self._in_flight and handed_over
            self._closed = True
            self._stop_at = deadline
            self._cond.notify_all()
            thread, discarded = self._thread, self.counts['discarded']
        self._poke.set()
        if thread is not None:
            thread.join(max(deadline - time.monotonic(), 0) + self.timeout_s + 1)
        with self._cond:
            delivered = not self._queue and not self._in_flight and self.counts['discarded'] == discarded
        return delivered and handed_over

    async def aclose(self, timeout: float = 10.0) -> bool:
        """`close()` for async code: waits for the calls just made (`await litellm.acompletion(...)`) first."""
        deadline = time.monotonic() + timeout
        handed_over = await litellm_handoff.adrain(deadline)
        if self._check_client is not None:
            await self._check_client.aclose()
            self._check_client = None
        return await asyncio.to_thread(self.close, max(deadline - time.monotonic(), 0)) and handed_over

    # --- sender thread -----------------------------------------------------------------------------------------

    def _run(self) -> None:
        with httpx.Client(headers=self._headers, timeout=self.timeout_s, transport=self._transport) as client:
            while True:
                batch = self._next_batch()
                if not batch:
                    return
                try:
                    self._deliver(client, batch)
                except Exception:  # e.g. an event that is not JSON: lose the batch, not the thread
                    log.exception('SpendGauge: could not send %d events', len(batch))
                    with self._cond:
                        self.counts['discarded'] += len(batch)
                        self._in_flight = 0
                        self._cond.notify_all()

    def _next_batch(self) -> list[dict[str, Any]]:
        with self._cond:
            while not self._queue:
                if self._closed:
                    return []
                self._cond.wait()
            if len(self._queue) < self.batch_size and not (self._flushing or self._closed):
                self._cond.wait(self.flush_interval_s)  # gather more; woken early by a full batch or a flush
            count = min(self.batch_size, len(self._queue))
            batch = [self._queue.popleft() for _ in range(count)]
            self._in_flight = count
            return batch

    def _deliver(self, client: httpx.Client, batch: list[dict[str, Any]]) -> None:
        delay = self.backoff_s
        while True:
            self._poke.clear()
            outcome, wait = self._post(client, batch)
            if outcome != 'retry':
                break
            self.counts['failed_attempts'] += 1
            pause = wait if wait is not None else delay
            with self._cond:
                left = None if self._stop_at is None else self._stop_at - time.monotonic()
                if left is not None and left <= 0:
                    lost = len(batch) + len(self._queue)
                    self._queue.clear()
                    self.counts['discarded'] += lost
                    log.error('SpendGauge: closing with %d events undelivered (%s unreachable)', lost,
                              self.batch_url)
                    break
            self._poke.wait(pause if left is None else min(pause, left))
            delay = min(delay * 2, self.max_backoff_s)
        with self._cond:
            self._in_flight = 0
            self._cond.notify_all()

    def _post(self, client: httpx.Client, batch: list[dict[str, Any]]) -> tuple[Outcome, float | None]:
        try:
            response = client.post(self.batch_url, json={'events': batch})
        except httpx.HTTPError as exc:
            self._went_down(f'{type(exc).__name__}')
            return 'retry', None
        if response.status_code in (408, 429) or response.status_code >= 500:
            self._went_down(f'HTTP {response.status_code}')
            return 'retry', _retry_after(response, self.max_backoff_s)
        if response.status_code in (401, 403):  # a wrong or rotated token: keep the events until it is put right
            self.counts['token_refused'] += 1
            if not self._token_refused:
                self._token_refused = True
                log.error('SpendGauge refused the token (HTTP %d: %s); keeping the events and retrying: give the '
                          'callback a token with the ingest role (spendgauge token create --role ingest)',
                          response.status_code, response.text[:200])
            return 'retry', self.max_backoff_s
        if response.status_code >= 400:  # 413, 422...: sending it again will not help
            self.counts['discarded'] += len(batch)
            log.error('SpendGauge refused %d events (HTTP %d): %s', len(batch), response.status_code,
                      response.text[:200])
            return 'discard', None
        if self._down:
            self._down = False
            log.warning('SpendGauge at %s is reachable again', self.batch_url)
        if self._token_refused:
            self._token_refused = False
            log.warning('SpendGauge accepts the token again; sending the kept events')
        try:
            body = response.json()
            counts = {key: int(body.get(key, 0)) for key in ('stored', 'duplicate', 'rejected')}
        except (ValueError, AttributeError, TypeError):
            counts = {'stored': len(batch), 'duplicate': 0, 'rejected': 0}
        self.counts['delivered'] += counts['stored']
        self.counts['duplicate'] += counts['duplicate']
        self.counts['rejected'] += counts['rejected']
        if counts['rejected']:
            reasons = [r.get('reason') for r in body.get('results', []) if r.get('status') == 'rejected'][:3]
            log.warning('SpendGauge rejected %d events: %s', counts['rejected'], reasons)
        return 'ok', None

    def _went_down(self, why: str) -> None:
        if not self._down:
            self._down = True
            log.warning('SpendGauge at %s is not answering (%s); keeping events and retrying', self.batch_url, why)


def litellm_event(kwargs: Any, response_obj: Any = None, start_time: Any = None,
                  end_time: Any = None) -> dict[str, Any] | None:
    """The usage event for one successful LiteLLM call, from the kwargs LiteLLM hands its callbacks; None for a
    failed call or one without a model."""
    slo = kwargs.get('standard_logging_object') or {}
    if slo.get('status', 'success') != 'success':
        return None
    provider, model = split_litellm_model(slo.get('model') or kwargs.get('model'),
                                          slo.get('custom_llm_provider') or kwargs.get('custom_llm_provider'))
    if not model:
        return None
    slo_meta = slo.get('metadata') or {}
    usage = _usage(slo_meta, slo.get('hidden_params') or {}, response_obj)
    # image calls count input_tokens / output_tokens (the Images API's usage), all others prompt / completion
    input_tokens = (_count(slo.get('prompt_tokens')) or _count(usage.get('prompt_tokens'))
                    or _count(usage.get('input_tokens')))
    output_tokens = (_count(slo.get('completion_tokens')) or _count(usage.get('completion_tokens'))
                     or _count(usage.get('output_tokens')))
    details = usage.get('prompt_tokens_details') or {}
    cache_read = _count(usage.get('cache_read_input_tokens')) or _count(details.get('cached_tokens'))
    cache_write = (_count(usage.get('cache_creation_input_tokens')) or _count(details.get('cache_creation_tokens'))
                   or _count(details.get('cache_write_tokens')))
    if cache_read + cache_write > input_tokens:  # a provider whose prompt count leaves the cache out
        input_tokens += cache_read + cache_write
    units = call_units(kwargs, slo, usage, response_obj, input_tokens, output_tokens)
    input_tokens, output_tokens = units.pop('input_tokens'), units.pop('output_tokens')
    call_id = kwargs.get('litellm_call_id') or slo.get('litellm_call_id') or slo.get('id')
    event: dict[str, Any] = {
        'event_id': _label(call_id), 'ts': _iso(slo.get('startTime'), start_time), 'provider': provider or None,
        'model': model[:200], 'channel': 'litellm', 'source': 'litellm_callback',
        'input_tokens': input_tokens, 'output_tokens': output_tokens,
        'cache_read_tokens': cache_read, 'cache_write_tokens': cache_write, **units,
        'latency_ms': _latency_ms(slo, start_time, end_time),
        'metadata': {k: v for k, v in (
            ('call_type', slo.get('call_type') or kwargs.get('call_type')), ('model_group', slo.get('model_group')),
            ('response_id', slo.get('id')), ('trace_id', slo.get('trace_id')), ('cache_hit', slo.get('cache_hit')),
            ('key_alias', slo_meta.get('user_api_key_alias')), ('team', slo_meta.get('user_api_key_team_alias')),
        ) if v not in (None, '')},
    }
    # LiteLLM logs a cost of 0 for a call it could not price (DALL-E 3 in HD at 1024x1792, say): SpendGauge prices it
    failed = slo.get('response_cost_failure_debug_info')
    cost = None if failed else _usd(kwargs.get('response_cost', slo.get('response_cost')))
    if cost is not None:
        event['cost_usd'] = cost
    event.update(_attribution(kwargs, slo, slo_meta))
    return event


class BudgetRejected(Exception):
    """Raised from the proxy's pre-call hook: LiteLLM answers the client with this status and message."""

    def __init__(self, decision: str, answer: dict[str, Any]) -> None:
        reasons = '; '.join(answer.get('reasons') or []) or 'over budget'
        super().__init__(f'SpendGauge {decision}: {reasons}')
        self.status_code = 429  # the proxy answers with the status_code, message and headers of what its hook raises
        self.message = self.detail = str(self)
        # a block is no rate limit: the OpenAI and Anthropic SDKs retry a 429 unless told not to
        self.headers = {'x-should-retry': 'false'} if decision == 'block' else {}
        if answer.get('retry_after_s'):
            self.headers['Retry-After'] = str(answer['retry_after_s'])
        self.answer = answer


CHARS_PER_TOKEN = 4  # a rough estimate of the prompt's tokens; no tokenizer download at the proxy


def check_request(data: dict[str, Any]) -> dict[str, Any]:
    """The `/check` body for a proxy request: attribution from its metadata and x-spendgauge-* headers, the model,
    and estimated tokens (the prompt's characters / 4, `max_tokens` for the output)."""
    meta = data.get('metadata') or data.get('litellm_metadata') or {}
    headers = ((data.get('proxy_server_request') or {}).get('headers')) or {}
    slo_meta = {'requester_metadata': meta, 'requester_custom_headers': headers,
                'user_api_key_user_id': meta.get('user_api_key_user_id')}
    found = _attribution({'user': data.get('user')}, {}, slo_meta)
    body: dict[str, Any] = {k: v for k, v in found.items() if v}
    model = _label(data.get('model'))
    if model:
        provider, name = split_litellm_model(model)
        body['model'] = name
        if provider:
            body['provider'] = provider
        text = sum(len(str(m.get('content') or '')) for m in data.get('messages') or [] if isinstance(m, dict))
        body['estimated_input_tokens'] = math.ceil(text / CHARS_PER_TOKEN)
        body['estimated_output_tokens'] = _count(data.get('max_tokens') or data.get('max_completion_tokens'))
    call_id = _label(data.get('litellm_call_id'))
    if call_id:  # the id the callback's usage event will carry: the estimate is held until it arrives
        body.update(reserve=True, event_id=call_id)
    return body


# --- helpers ---------------------------------------------------------------------------------------------------

def _attribution(kwargs: Any, slo: dict[str, Any], slo_meta: dict[str, Any]) -> dict[str, Any]:
    """agent_id, session_id, task_id, user_id, project and tags; later sources win over earlier ones."""
    found: dict[str, str] = {}
    fallbacks = {'user_id': slo.get('end_user') or kwargs.get('user') or slo_meta.get('user_api_key_user_id'),
                 'session_id': slo.get('session_id'),
                 'project': slo_meta.get('user_api_key_project_alias')}
    for key, value in fallbacks.items():
        if (label := _label(value)) and not (key == 'user_id' and label == NO_USER):
            found[key] = label
    params_meta = (kwargs.get('litellm_params') or {}).get('metadata') or {}
    headers = slo_meta.get('requester_custom_headers') or {}
    from_headers = {k.lower().removeprefix(HEADER_PREFIX).replace('-', '_'): v for k, v in headers.items()
                    if isinstance(k, str) and k.lower().startswith(HEADER_PREFIX)}
    tags: list[str] = []
    for source in (slo_meta.get('spend_logs_metadata'), slo_meta.get('requester_metadata'), params_meta,
                   from_headers):
        if not isinstance(source, dict):
            continue
        for key, value in source.items():
            name = ALIASES.get(key, key)
            if name in ATTRIBUTION and (label := _label(value)) and not (name == 'user_id' and label == NO_USER):
                found[name] = label
        extra = source.get('tags')
        tags += [extra] if isinstance(extra, str) else extra if isinstance(extra, list) else []
    tags = [*(slo.get('request_tags') or []), *tags]
    unique = list(dict.fromkeys(t for t in (_label(tag) for tag in tags)
                                if t and not t.lower().startswith(CLIENT_TAG_PREFIX)))[:50]
    return {**found, 'tags': unique}


def _usage(slo_meta: dict[str, Any], hidden: dict[str, Any], response_obj: Any) -> dict[str, Any]:
    usage = slo_meta.get('usage_object') or hidden.get('usage_object')
    if not usage:
        usage = getattr(response_obj, 'usage', None) or (response_obj.get('usage') if isinstance(response_obj, dict)
                                                         else None)
    if usage is not None and not isinstance(usage, dict):
        usage = usage.model_dump() if hasattr(usage, 'model_dump') else dict(getattr(usage, '__dict__', {}))
    return usage or {}


def _usd(value: Any) -> str | None:
    """LiteLLM's float cost as a decimal string read through its text (no float arithmetic), or None."""
    if value is None or isinstance(value, bool):
        return None
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return None
    return str(amount) if amount.is_finite() and amount >= 0 else None


def _label(value: Any) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    text = str(value).replace('\x00', '').strip()[:200]
    return text or None


def _iso(epoch: Any, start_time: Any) -> str | None:
    try:
        if isinstance(epoch, int | float) and math.isfinite(epoch) and epoch > 0:
            return datetime.fromtimestamp(epoch, UTC).isoformat()
        if isinstance(start_time, datetime):
            return start_time.astimezone(UTC).isoformat()  # LiteLLM's datetimes are naive local time
    except (OverflowError, OSError, ValueError):
        pass
    return None


def _latency_ms(slo: dict[str, Any], start_time: Any, end_time: Any) -> int | None:
    start, end = slo.get('startTime'), slo.get('endTime')
    seconds = None
    if isinstance(start, int | float) and isinstance(end, int | float):
        seconds = end - start
    elif isinstance(start_time, datetime) and isinstance(end_time, datetime):
        seconds = (end_time - start_time).total_seconds()
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return None
    return min(round(seconds * 1000), 86_400_000)


def _retry_after(response: httpx.Response, cap: float) -> float | None:
    try:
        return min(max(float(response.headers.get('retry-after', '')), 0.0), cap)
    except ValueError:
        return None


def _close_at_exit(ref: weakref.ref[SpendGaugeLogger]) -> None:
    logger = ref()
    if logger is not None:
        litellm_handoff.run_left_behind()
        if logger._thread is not None:
            logger.close(logger.exit_timeout_s)


def _after_fork(ref: weakref.ref[SpendGaugeLogger]) -> None:
    """In a forked worker: fresh locks and no thread; the parent still owns (and sends) what was queued."""
    logger = ref()
    if logger is not None:
        logger._reset_state()


def __getattr__(name: str) -> Any:
    """`spendgauge_callback`: one logger from the environment, made on first use (for the proxy's config)."""
    if name == 'spendgauge_callback':
        instance = globals().get('_instance')
        if instance is None:
            instance = globals()['_instance'] = SpendGaugeLogger.from_env()
        return instance
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
