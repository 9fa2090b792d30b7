"""Record one call made through a LiteLLM proxy from its HTTP response, for clients that cannot install the callback:
the cost LiteLLM charged is in the `x-litellm-response-cost` header, the tokens in the JSON body's `usage`.

    response = httpx.post(f'{proxy}/chat/completions', json=request, headers={'Authorization': f'Bearer {key}'})
    record_from_response(response, 'http://127.0.0.1:8080', token=sg_token, agent_id='planner', session_id='s-42')

Works with httpx and requests responses (anything with `.headers` and `.json()`), and with the OpenAI SDK's
`with_raw_response` results. Without the header (streamed responses, a model LiteLLM cannot price) the event carries
no cost and SpendGauge prices the tokens itself. Embedding, image, transcription and speech calls carry their kind and
units (images made with the size and quality asked for, a verbose transcription's duration, the characters spoken),
read from the request path and JSON body and from the answer. A failure to record is logged and returns None, unless
`raise_errors=True`; the helper never retries, so it costs the caller one short request at most.
"""
from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

import httpx

from services.integrations import api_root, split_litellm_model
from services.integrations.litellm_units import call_units
from services.integrations.litellm_units import count as _count

CALL_TYPES = {'/embeddings': 'embedding', '/images/generations': 'image_generation', '/images/edits': 'image_edit',
              '/audio/transcriptions': 'transcription', '/audio/speech': 'speech'}  # by the request path's end

log = logging.getLogger(__name__)
COST_HEADER = 'x-litellm-response-cost'


class SpendGaugeError(RuntimeError):
    """SpendGauge could not be reached or refused the event."""


def event_from_response(response: Any, *, body: Mapping[str, Any] | None = None, model: str | None = None,
                        event_id: str | None = None, agent_id: str | None = None, session_id: str | None = None,
                        task_id: str | None = None, user_id: str | None = None, project: str | None = None,
                        tags: list[str] | None = None, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """The usage event for a LiteLLM proxy response (channel 'litellm'). Keyed by LiteLLM's call id it shares the
    callback's source, `litellm_callback`, so a call recorded both ways counts once; otherwise its source is `sdk`."""
    response = getattr(response, 'http_response', response)  # the OpenAI SDK's raw response wraps httpx's
    headers = {str(k).lower(): str(v) for k, v in (getattr(response, 'headers', None) or {}).items()}
    if body is None:
        body = _json(response)
    raw_usage = body.get('usage')
    usage: Mapping[str, Any] = raw_usage if isinstance(raw_usage, dict) else {}
    provider, name = split_litellm_model(headers.get('x-litellm-model-name') or body.get('model'))
    call_id = None if event_id else headers.get('x-litellm-call-id')
    event: dict[str, Any] = {
        'event_id': event_id or call_id or body.get('id') or uuid.uuid4().hex,
        'model': model or name or headers.get('x-litellm-model-group') or 'unknown',
        'provider': provider or None, 'channel': 'litellm', 'source': 'litellm_callback' if call_id else 'sdk',
        'agent_id': agent_id, 'session_id': session_id, 'task_id': task_id, 'user_id': user_id, 'project': project,
        'tags': list(tags or []), 'latency_ms': _latency(headers.get('x-litellm-response-duration-ms')),
        **_units(response, usage, body),
        'metadata': {**{k: v for k, v in (('model_group', headers.get('x-litellm-model-group')),
                                          ('model_id', headers.get('x-litellm-model-id')),
                                          ('response_id', body.get('id'))) if v}, **(metadata or {})},
    }
    cost = _usd(headers.get(COST_HEADER), COST_HEADER)
    if cost is None and usage.get('cost') is not None:  # include_cost_in_streaming_usage puts it in the body
        cost = _usd(usage.get('cost'), 'usage.cost')
    if cost is not None:
        event['cost_usd'] = cost
    return {k: v for k, v in event.items() if v is not None}


def record_from_response(response: Any, spendgauge_url: str, token: str | None = None, *, timeout: float = 5.0,
                         raise_errors: bool = False, client: httpx.Client | None = None,
                         **fields: Any) -> dict[str, Any] | None:
    """Record the call in SpendGauge; returns the stored event (with `cost_micros`), or None when that failed.
    `fields` are those of `event_from_response` (agent_id, session_id, task_id, user_id, project, tags, ...)."""
    event = event_from_response(response, **fields)
    url, headers = api_root(spendgauge_url) + '/usage', _auth(token)
    try:
        if client is not None:
            answer = client.post(url, json=event, headers=headers, timeout=timeout)
        else:
            answer = httpx.post(url, json=event, headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        _failed(f'cannot reach SpendGauge at {url}: {type(exc).__name__}', raise_errors)
        return None
    return _result(answer, raise_errors)


async def arecord_from_response(response: Any, spendgauge_url: str, token: str | None = None, *,
                                timeout: float = 5.0, raise_errors: bool = False,
                                client: httpx.AsyncClient | None = None, **fields: Any) -> dict[str, Any] | None:
    """`record_from_response` for async code."""
    event = event_from_response(response, **fields)
    url, headers = api_root(spendgauge_url) + '/usage', _auth(token)
    try:
        if client is not None:
            answer = await client.post(url, json=event, headers=headers, timeout=timeout)
        else:
            async with httpx.AsyncClient(timeout=timeout) as own:
                answer = await own.post(url, json=event, headers=headers)
    except httpx.HTTPError as exc:
        _failed(f'cannot reach SpendGauge at {url}: {type(exc).__name__}', raise_errors)
        return None
    return _result(answer, raise_errors)


def _tokens(usage: Mapping[str, Any], body: Mapping[str, Any]) -> dict[str, int]:
    """Token counts with input including cached tokens, from the three usage shapes LiteLLM answers with."""
    details = usage.get('prompt_tokens_details') or usage.get('input_tokens_details') or {}
    cache_read = _count(usage.get('cache_read_input_tokens')) or _count(details.get('cached_tokens'))
    cache_write = _count(usage.get('cache_creation_input_tokens')) or _count(details.get('cache_creation_tokens'))
    if 'prompt_tokens' in usage:  # chat completions: prompt_tokens includes the cache
        input_tokens, output_tokens = _count(usage.get('prompt_tokens')), _count(usage.get('completion_tokens'))
    elif body.get('type') == 'message' or 'cache_creation_input_tokens' in usage:  # Anthropic /v1/messages
        input_tokens = _count(usage.get('input_tokens')) + cache_read + cache_write
        output_tokens = _count(usage.get('output_tokens'))
    else:  # Responses API: input_tokens includes the cache
        input_tokens, output_tokens = _count(usage.get('input_tokens')), _count(usage.get('output_tokens'))
    return {'input_tokens': max(input_tokens, cache_read + cache_write), 'output_tokens': output_tokens,
            'cache_read_tokens': cache_read, 'cache_write_tokens': cache_write}


def _units(response: Any, usage: Mapping[str, Any], body: Mapping[str, Any]) -> dict[str, Any]:
    """The tokens, and for an embedding, image, transcription or speech call its kind and units."""
    tokens = _tokens(usage, body)
    request = getattr(response, 'request', None)
    try:
        path = urlsplit(str(request.url)).path.rstrip('/') if request is not None else ''
    except Exception:  # a request without a URL: no kind to tell
        path = ''
    call_type = next((t for end, t in CALL_TYPES.items() if path.endswith(end)), None)
    if call_type is None:
        return tokens
    asked = _request_json(request)
    units = call_units({'call_type': call_type, 'optional_params': asked, 'input': asked.get('input')}, {}, usage,
                       body, tokens['input_tokens'], tokens['output_tokens'])
    return {**tokens, **units}


def _request_json(request: Any) -> dict[str, Any]:
    """The request's JSON body (httpx: `content`, requests: `body`); {} for any other (a transcription's form)."""
    try:  # httpx raises for a streamed request body it has not read
        content = request.content if hasattr(request, 'content') else getattr(request, 'body', None)
        found = json.loads(content) if content else {}
    except Exception:
        return {}
    return found if isinstance(found, dict) else {}


def _json(response: Any) -> dict[str, Any]:
    try:
        body = response.json()
    except Exception:  # a streamed (SSE) or non-JSON body
        try:
            return _streamed(str(response.text))
        except Exception:  # not read, or not text: the header alone is still worth recording
            return {}
    return body if isinstance(body, dict) else {}


def _streamed(text: str) -> dict[str, Any]:
    """A streamed response's body as one JSON answer would have it: id, model and type from the first chunks, usage
    gathered from every chunk that carries it (OpenAI's last chunk with `stream_options.include_usage`, LiteLLM's
    `usage.cost`; Anthropic's `message_start` and `message_delta`)."""
    body: dict[str, Any] = {}
    usage: dict[str, Any] = {}
    for line in text.splitlines():
        data = line[5:].strip() if line.startswith('data:') else ''
        if not data or data == '[DONE]':
            continue
        try:
            chunk = json.loads(data)
        except ValueError:
            continue
        if not isinstance(chunk, dict):
            continue
        part = chunk.get('message') if chunk.get('type') == 'message_start' else chunk
        if not isinstance(part, dict):
            continue
        for key in ('id', 'model', 'type'):
            if part.get(key) and key not in body:
                body[key] = part[key]
        if isinstance(part.get('usage'), dict):
            usage.update({k: v for k, v in part['usage'].items() if v is not None})
    if usage:
        body['usage'] = usage
    return body


def _usd(value: Any, what: str) -> str | None:
    if value is None or value == '':
        return None
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        amount = Decimal('NaN')
    if not amount.is_finite() or amount < 0:
        log.warning('ignoring %s: not a cost: %r', what, str(value)[:40])
        return None
    return str(amount)


def _latency(value: str | None) -> int | None:
    try:
        return max(round(float(value)), 0) if value else None
    except (ValueError, OverflowError):
        return None


def _auth(token: str | None) -> dict[str, str]:
    return {'Authorization': f'Bearer {token}'} if token else {}


def _result(answer: httpx.Response, raise_errors: bool) -> dict[str, Any] | None:
    if answer.status_code >= 400:
        _failed(f'SpendGauge refused the event (HTTP {answer.status_code}): {answer.text[:200]}', raise_errors)
        return None
    return answer.json()


def _failed(message: str, raise_errors: bool) -> None:
    if raise_errors:
        raise SpendGaugeError(message)
    log.warning('%s', message)
