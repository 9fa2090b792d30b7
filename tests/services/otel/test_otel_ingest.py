"""OTLP exports recorded through a real ledger on both databases: the recorded span shapes of three instrumentations
(tests/fixtures/otel/README.md says where each comes from), both encodings, and what is refused."""
from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from services.core.tables import EVENTS
from services.otel import otlp
from services.otel.ingest import Outcome, record_export
from services.usage.ledger import Ledger
from tests.support.otlp import as_protobuf

FIXTURES = Path(__file__).resolve().parents[2] / 'fixtures' / 'otel'


def fixture(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / f'{name}.json').read_text())
    return loaded


def record_json(ledger: Ledger, export: Any, encoding: str | None = None) -> Outcome:
    body = json.dumps(export).encode()
    return record_export(ledger, gzip.compress(body) if encoding == 'gzip' else body, otlp.JSON, encoding)


def events(engine: Engine) -> dict[str, dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(select(EVENTS).where(EVENTS.c.source == 'otel')).mappings().all()
    return {row['event_id']: dict(row) for row in rows}


def test_openai_v2_calls_are_recorded_priced_and_the_rest_ignored(ledger: Ledger, engine: Engine) -> None:
    outcome = record_json(ledger, fixture('openai_v2_chat'))
    assert (outcome.stored, outcome.duplicate, outcome.ignored, outcome.rejected) == (2, 0, 2, 0)
    stored = events(engine)
    chat = stored['5b8efff798038103d269b633813fc60c-eee19b7ec3c1b174']
    assert (chat['provider'], chat['model'], chat['agent_id'], chat['channel']) == (
        'openai', 'gpt-4o-mini-2024-07-18', 'support-bot', 'direct')
    assert (chat['input_tokens'], chat['output_tokens'], chat['cache_read_tokens']) == (1200, 80, 1024)
    assert chat['cost_source'] == 'priced' and chat['cost_micros'] > 0
    assert chat['latency_ms'] == 950
    assert chat['metadata']['otel']['request_model'] == 'gpt-4o-mini'
    embedding = stored['5b8efff798038103d269b633813fc60c-7a2190356ff5a9e1']
    assert (embedding['kind'], embedding['input_tokens'], embedding['output_tokens']) == ('embedding', 42, 0)
    # cached input is cheaper than fresh input: the same call without the cache costs more
    uncached = ledger.record({'model': 'gpt-4o-mini-2024-07-18', 'provider': 'openai', 'input_tokens': 1200,
                              'output_tokens': 80})[1]
    assert uncached['cost_micros'] > chat['cost_micros']


def test_openllmetry_anthropic_keeps_cache_writes_reads_and_the_association_properties(
        ledger: Ledger, engine: Engine) -> None:
    outcome = record_json(ledger, fixture('openllmetry_anthropic_workflow'), 'gzip')
    assert (outcome.stored, outcome.ignored, outcome.rejected) == (1, 1, 0)  # the workflow span is not a call
    [call] = events(engine).values()
    assert (call['provider'], call['model']) == ('anthropic', 'claude-3-5-sonnet-20241022')
    assert (call['input_tokens'], call['output_tokens'], call['cache_read_tokens'], call['cache_write_tokens']) == (
        2600, 300, 2000, 500)
    assert (call['agent_id'], call['session_id'], call['user_id']) == ('research-agent', 'ticket-4711', 'user-17')
    assert call['cost_source'] == 'priced'


def test_agent_spans_name_the_agent_of_their_calls_and_are_not_counted_twice(ledger: Ledger, engine: Engine) -> None:
    outcome = record_json(ledger, fixture('genai_agent_spans'))
    assert (outcome.stored, outcome.ignored, outcome.rejected) == (2, 2, 0)  # invoke_agent and execute_tool ignored
    stored = events(engine)
    assert {e['agent_id'] for e in stored.values()} == {'triage'}  # from the parent, not service.name
    assert {e['session_id'] for e in stored.values()} == {'conv-9f1c'}
    assert sum(e['input_tokens'] for e in stored.values()) == 6400  # the agent span's sum is not added again


def test_an_export_sent_again_records_nothing_twice_in_either_encoding(ledger: Ledger, engine: Engine) -> None:
    export = fixture('openai_v2_chat')
    first = record_export(ledger, as_protobuf(export), otlp.PROTOBUF, None)
    assert (first.stored, first.ignored) == (2, 2)
    before = events(engine)
    again = record_json(ledger, export, 'gzip')  # the same spans, now as JSON: the same calls
    assert (again.stored, again.duplicate, again.rejected) == (0, 2, 0)
    protobuf_again = record_export(ledger, gzip.compress(as_protobuf(export)), otlp.PROTOBUF, 'gzip')
    assert (protobuf_again.stored, protobuf_again.duplicate) == (0, 2)
    assert events(engine) == before


def test_the_protobuf_and_json_encodings_read_the_same_spans() -> None:
    for name in ('openai_v2_chat', 'openllmetry_anthropic_workflow', 'genai_agent_spans'):
        export = fixture(name)
        from_json = otlp.decode(json.dumps(export).encode(), otlp.JSON, None).spans
        from_protobuf = otlp.decode(as_protobuf(export), otlp.PROTOBUF, None).spans
        assert from_json == from_protobuf and from_json


def span(span_id: str, **attributes: Any) -> dict[str, Any]:
    values = {key: {'intValue': str(v)} if isinstance(v, int) else {'stringValue': v}
              for key, v in attributes.items()}
    return {'traceId': '1' * 32, 'spanId': span_id, 'name': 'chat', 'startTimeUnixNano': '1795000000000000000',
            'endTimeUnixNano': '1795000001000000000',
            'attributes': [{'key': k, 'value': v} for k, v in values.items()]}


def export_of(*spans: Any) -> dict[str, Any]:
    return {'resourceSpans': [{'resource': {'attributes': []}, 'scopeSpans': [{'scope': {}, 'spans': list(spans)}]}]}


GOOD = {'gen_ai.request.model': 'gpt-4o', 'gen_ai.usage.input_tokens': 10, 'gen_ai.usage.output_tokens': 5}


def test_malformed_spans_are_counted_with_their_reasons_and_never_refuse_the_rest(
        ledger: Ledger, engine: Engine) -> None:
    bad_tokens = span('a' * 16, **{**GOOD, 'gen_ai.usage.input_tokens': 'many'})
    negative = span('b' * 16, **GOOD)
    negative['attributes'][1]['value'] = {'intValue': '-3'}
    no_model = span('c' * 16, **{'gen_ai.usage.input_tokens': 7})
    bad_id = span('xyz', **GOOD)
    not_an_object = 'span'
    too_long_model = span('d' * 16, **{**GOOD, 'gen_ai.request.model': 'm' * 300})
    outcome = record_json(ledger, export_of(bad_tokens, negative, no_model, bad_id, not_an_object, too_long_model,
                                            span('e' * 16, **GOOD)))
    assert (outcome.stored, outcome.rejected) == (1, 6)
    message = outcome.error_message
    assert message.startswith('6 spans rejected: ') and message.endswith('; and 1 more')
    assert "gen_ai.usage.input_tokens: a token count (an integer, 0 or more) is expected, got 'many'" in message
    assert 'got -3' in message
    assert 'without a model' in message and 'spanId' in message and 'spans[4]: an object is expected' in message
    assert list(events(engine)) == ['1' * 32 + '-' + 'e' * 16]


def test_spans_that_are_not_llm_calls_are_ignored(ledger: Ledger, engine: Engine) -> None:
    outcome = record_json(ledger, export_of(span('a' * 16, **{'http.request.method': 'GET'}),
                                            span('b' * 16, **{'gen_ai.request.model': 'gpt-4o'}),  # no usage
                                            span('c' * 16, **{**GOOD, 'traceloop.span.kind': 'workflow'})))
    assert (outcome.stored, outcome.ignored, outcome.rejected) == (0, 3, 0)
    assert events(engine) == {}


def test_usage_counted_apart_from_cached_tokens_is_summed_into_the_input(ledger: Ledger, engine: Engine) -> None:
    """Anthropic's own counts leave cached tokens out of input_tokens; where an instrumentation passes them on so
    (more cached than input), the input is their sum, as ours includes them."""
    record_json(ledger, export_of(span('a' * 16, **{**GOOD, 'gen_ai.system': 'anthropic',
                                                    'gen_ai.request.model': 'claude-3-5-haiku-20241022',
                                                    'gen_ai.usage.cache_read_input_tokens': 900})))
    [call] = events(engine).values()
    assert (call['input_tokens'], call['cache_read_tokens']) == (910, 900)


@pytest.mark.parametrize(('system', 'provider'), [('aws.bedrock', 'aws'), ('gcp.vertex_ai', 'google'),
                                                  ('az.ai.inference', 'azure'), ('OpenAI', 'openai'),
                                                  ('mistral_ai', 'mistral')])
def test_semantic_convention_provider_names_are_ours(system: str, provider: str) -> None:
    from services.otel.genai import provider_id

    assert provider_id(system) == provider


def test_a_gzip_bomb_stops_at_the_bound() -> None:
    bomb = gzip.compress(b'\0' * (otlp.MAX_DECOMPRESSED + 1))
    assert len(bomb) < 100_000
    with pytest.raises(otlp.ExportTooLarge, match='once decompressed'):
        otlp.decompressed(bomb, 'gzip')
    assert otlp.decompressed(gzip.compress(b'ab') + gzip.compress(b'cd'), 'gzip') == b'abcd'  # two members
    with pytest.raises(otlp.UnreadableExport, match='not valid gzip'):
        otlp.decompressed(b'not gzip', 'gzip')
    with pytest.raises(otlp.UnreadableExport, match='ends before'):
        otlp.decompressed(gzip.compress(b'abcdef' * 100)[:-12], 'gzip')
    assert otlp.decompressed(zlib.compress(b'abc'), 'deflate') == b'abc'
    with pytest.raises(otlp.ExportTooLarge):
        otlp.decompressed(zlib.compress(b'\0' * (otlp.MAX_DECOMPRESSED + 1)), 'deflate')
    with pytest.raises(otlp.UnsupportedExport, match='br is not supported'):
        otlp.decompressed(b'x', 'br')


def test_unreadable_bodies_and_too_many_spans_are_refused_whole() -> None:
    with pytest.raises(otlp.UnreadableExport, match='not an OTLP protobuf'):
        otlp.decode(b'\xff\xff\xff', otlp.PROTOBUF, None)
    with pytest.raises(otlp.UnreadableExport, match='not valid JSON'):
        otlp.decode(b'{"resourceSpans": [', otlp.JSON, None)
    with pytest.raises(otlp.UnreadableExport, match='resourceSpans: a list'):
        otlp.decode(b'{"resourceSpans": 3}', otlp.JSON, None)
    with pytest.raises(otlp.UnsupportedExport, match='text/plain is not OTLP'):
        otlp.decode(b'{}', 'text/plain', None)
    many = export_of(*[span(f'{n + 1:016x}') for n in range(otlp.MAX_SPANS + 1)])
    with pytest.raises(otlp.ExportTooLarge, match='10,001 spans'):
        otlp.decode(json.dumps(many).encode(), otlp.JSON, None)
    with pytest.raises(otlp.ExportTooLarge, match='10,001 spans'):
        otlp.decode(as_protobuf(many), otlp.PROTOBUF, None)
    assert otlp.decode(b'{}', otlp.JSON, None).spans == []  # an empty export is fine
