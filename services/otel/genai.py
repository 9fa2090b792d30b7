"""A span following the OpenTelemetry GenAI semantic conventions, as a usage event (the dict POST /api/v1/usage
takes), or why it is not one.

Read: the provider (`gen_ai.provider.name`, formerly `gen_ai.system`), the model (`gen_ai.response.model`, the one
billed, else `gen_ai.request.model`), tokens (`gen_ai.usage.input_tokens` / `output_tokens`, formerly
`prompt_tokens` / `completion_tokens`), cached tokens under each name instrumentations use, the conversation
(`gen_ai.conversation.id`, `session.id`) and the agent (`gen_ai.agent.name`, `gen_ai.agent.id`). The agent and the
conversation are looked up on the span, then on its ancestors in the same export (an agent framework sets them on
its `invoke_agent` span, the parent of the model calls), then on the resource; else the agent is the resource's
`service.name`.

Not calls (ignored): spans without model and usage (HTTP, database, tool spans), agent and workflow spans (their
usage, where given, sums the calls beneath them, which are recorded themselves) and calls that report no usage.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from services.integrations import litellm_provider
from services.otel.otlp import Scalar, Span

SOURCE = 'otel'
PROVIDER_KEYS = ('gen_ai.provider.name', 'gen_ai.system')
MODEL_KEYS = ('gen_ai.response.model', 'gen_ai.request.model')
INPUT_KEYS = ('gen_ai.usage.input_tokens', 'gen_ai.usage.prompt_tokens')
OUTPUT_KEYS = ('gen_ai.usage.output_tokens', 'gen_ai.usage.completion_tokens')
CACHE_READ_KEYS = ('gen_ai.usage.cache_read.input_tokens',  # semantic conventions 1.37+
                   'gen_ai.usage.cache_read_input_tokens',  # OpenLLMetry (OpenAI's cached_tokens, Anthropic's)
                   'gen_ai.usage.input_tokens.cached', 'gen_ai.usage.input_tokens_details.cached',
                   'llm.usage.cache_read_input_tokens')
CACHE_WRITE_KEYS = ('gen_ai.usage.cache_creation.input_tokens', 'gen_ai.usage.cache_creation_input_tokens',
                    'gen_ai.usage.input_tokens.cache_write')
AGENT_KEYS = ('gen_ai.agent.name', 'gen_ai.agent.id')
SESSION_KEYS = ('gen_ai.conversation.id', 'session.id', 'traceloop.association.properties.session_id')
USER_KEYS = ('user.id', 'enduser.id', 'traceloop.association.properties.user_id')
# gen_ai.operation.name of spans that are not one model call; OpenLLMetry marks its own with traceloop.span.kind
NOT_CALLS = frozenset({'invoke_agent', 'create_agent', 'execute_tool', 'invoke_workflow'})
TRACELOOP_CONTAINERS = frozenset({'workflow', 'task', 'agent', 'tool'})
# gen_ai.provider.name / gen_ai.system values -> our provider ids (genai-prices'); others are kept in lower case
PROVIDERS = {
    'aws.bedrock': 'aws', 'az.ai.inference': 'azure', 'az.ai.openai': 'azure', 'azure.ai.inference': 'azure',
    'azure.ai.openai': 'azure', 'gcp.gemini': 'google', 'gcp.vertex_ai': 'google', 'gcp.gen_ai': 'google',
    'vertex_ai': 'google', 'mistral_ai': 'mistral', 'xai': 'x-ai', 'ibm.watsonx.ai': 'ibm',
}
MAX_LABEL = 200
MAX_LATENCY_MS = 86_400_000
MAX_ANCESTORS = 64


@dataclass(frozen=True)
class Mapped:
    """One span's fate: `event` when it is an LLM call, `problem` when it is malformed, neither when ignored."""
    event: dict[str, Any] | None = None
    problem: str | None = None


IGNORED = Mapped()


class Lineage:
    """The spans of one export by (trace, span id), to find what a span's ancestors say."""

    def __init__(self, spans: list[Span]) -> None:
        self._spans = {(s.trace_id, s.span_id): s for s in spans if s.problem is None}

    def first(self, span: Span, keys: tuple[str, ...]) -> str | None:
        """The first of `keys` set on the span, an ancestor of it in this export, or its resource."""
        current: Span | None = span
        for _ in range(MAX_ANCESTORS):
            if current is None:
                break
            found = _text(current.attributes, keys)
            if found:
                return found
            current = self._spans.get((span.trace_id, current.parent_span_id)) if current.parent_span_id else None
        return _text(span.resource, keys)


def usage_event(span: Span, lineage: Lineage) -> Mapped:
    if span.problem:
        return Mapped(problem=span.problem)
    attributes = span.attributes
    if attributes.get('gen_ai.operation.name') in NOT_CALLS or \
            attributes.get('traceloop.span.kind') in TRACELOOP_CONTAINERS:
        return IGNORED
    try:
        input_tokens, output_tokens, cache_read, cache_write = (
            _count(attributes, keys) for keys in (INPUT_KEYS, OUTPUT_KEYS, CACHE_READ_KEYS, CACHE_WRITE_KEYS))
    except ValueError as exc:
        return Mapped(problem=str(exc))
    model = _text(attributes, MODEL_KEYS)
    reported = any(n is not None for n in (input_tokens, output_tokens, cache_read, cache_write))
    if not reported:
        return IGNORED  # not an LLM call, or one that failed or reported no usage: nothing to count
    if not model:
        return Mapped(problem='gen_ai.usage.* without a model (gen_ai.request.model or gen_ai.response.model)')
    try:
        ts = _time(span.start_ns)
    except ValueError as exc:
        return Mapped(problem=str(exc))
    cached = (cache_read or 0) + (cache_write or 0)
    input_total = input_tokens or 0
    if cached > input_total:  # counted apart from the input, as Anthropic's API does; ours includes them
        input_total += cached
    event: dict[str, Any] = {
        'event_id': span.key, 'source': SOURCE, 'channel': 'direct', 'ts': ts, 'model': model,
        'provider': provider_id(_text(attributes, PROVIDER_KEYS)),
        'agent_id': _label(lineage.first(span, AGENT_KEYS) or _service(span.resource)),
        'session_id': _label(lineage.first(span, SESSION_KEYS)),
        'user_id': _label(lineage.first(span, USER_KEYS)),
        'input_tokens': input_total, 'output_tokens': output_tokens or 0,
        'cache_read_tokens': cache_read or 0, 'cache_write_tokens': cache_write or 0,
        'latency_ms': _latency(span.start_ns, span.end_ns), 'metadata': _metadata(span, model),
    }
    if attributes.get('gen_ai.operation.name') == 'embeddings' or attributes.get('llm.request.type') == 'embedding':
        event['kind'] = 'embedding'
    return Mapped(event=event)


def provider_id(name: str | None) -> str | None:
    """'aws.bedrock' -> 'aws', 'OpenAI' -> 'openai'; None when not given (the ledger infers it from the model)."""
    if not name:
        return None
    text = name.strip().lower()
    return PROVIDERS.get(text) or litellm_provider(text) or None


def _text(attributes: Mapping[str, Scalar], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = attributes.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
        if isinstance(value, int) and not isinstance(value, bool):  # an id sent as a number
            return str(value)
    return None


def _count(attributes: Mapping[str, Scalar], keys: tuple[str, ...]) -> int | None:
    """The first of `keys` present, as a token count; None when none is. Raises ValueError for a bad value."""
    for key in keys:
        if key not in attributes:
            continue
        value = attributes[key]
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # some instrumentations (JavaScript) send every number as a double
        elif isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f'{key}: a token count (an integer, 0 or more) is expected, got {value!r}')
        return value
    return None


def _time(start_ns: int) -> datetime | None:
    if start_ns <= 0:
        return None  # not given: the ledger takes now
    try:
        return datetime.fromtimestamp(start_ns / 1e9, UTC)
    except (OverflowError, OSError, ValueError):
        raise ValueError(f'startTimeUnixNano: {start_ns} is not a time') from None


def _latency(start_ns: int, end_ns: int) -> int | None:
    if start_ns <= 0 or end_ns < start_ns:
        return None
    latency = (end_ns - start_ns) // 1_000_000
    return latency if latency <= MAX_LATENCY_MS else None


def _service(resource: Mapping[str, Scalar]) -> str | None:
    name = _text(resource, ('service.name',))
    return None if name is None or name.startswith('unknown_service') else name  # the SDK's default


def _label(value: str | None) -> str | None:
    return value[:MAX_LABEL] if value else None


def _metadata(span: Span, model: str) -> dict[str, Any]:
    otel: dict[str, Any] = {'trace_id': span.trace_id, 'span_id': span.span_id}
    if span.name:
        otel['span'] = span.name[:MAX_LABEL]
    if span.scope:
        otel['scope'] = span.scope[:MAX_LABEL]
    operation = _text(span.attributes, ('gen_ai.operation.name', 'llm.request.type'))
    if operation:
        otel['operation'] = operation[:MAX_LABEL]
    requested = _text(span.attributes, ('gen_ai.request.model',))
    if requested and requested != model:
        otel['request_model'] = requested[:MAX_LABEL]
    return {'otel': otel}
