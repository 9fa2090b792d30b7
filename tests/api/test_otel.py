"""POST /v1/traces on a real server (both databases), fed by the real OpenTelemetry SDK's OTLP HTTP exporters, the
protobuf one and the JSON one, both gzip-compressed, with the bearer token an exporter sends from
OTEL_EXPORTER_OTLP_HEADERS; and what the route refuses, and how."""
from __future__ import annotations

import gzip
import itertools
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.exporter.otlp.common.http import Compression as JsonCompression
from opentelemetry.exporter.otlp.json.http.trace_exporter import OTLPSpanExporter as JsonSpanExporter
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.otel import otlp
from tests.support.otlp import as_protobuf
from tests.support.servers import Server, start_server

ADMIN = 'otel-admin-token'


@dataclass
class Secured:
    server: Server
    ingest: str
    read: str

    @property
    def endpoint(self) -> str:
        return self.server.url + '/v1/traces'


@pytest.fixture
def secured(tmp_path: Path, database_url: str) -> Iterator[Secured]:
    """A server with tokens on each database, and an ingest and a read token."""
    srv = start_server(tmp_path, database_url, token=ADMIN, SPENDGAUGE_DAILY_LIMIT_USD='none')
    try:
        with srv.client() as admin:
            tokens = {role: admin.post('/tokens', json={'name': f'otel {role}', 'role': role}).json()['token']
                      for role in ('ingest', 'read')}
        yield Secured(srv, tokens['ingest'], tokens['read'])
    finally:
        srv.stop()


def agent_run(agent: str, prompt_tokens: int, exporter: SpanExporter) -> list[ReadableSpan]:
    """An agent's run traced by the SDK: an invoke_agent span around a model call and an HTTP call, exported by
    `exporter` through the batch processor (as in an application: the run's spans go in one export, the agent span
    with its calls); returns the finished spans, to send them again."""
    kept = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({'service.name': 'e2e-service'}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    provider.add_span_processor(SimpleSpanProcessor(kept))
    tracer = provider.get_tracer('e2e.instrumentation')
    with tracer.start_as_current_span(f'invoke_agent {agent}', attributes={
            'gen_ai.operation.name': 'invoke_agent', 'gen_ai.agent.name': agent, 'gen_ai.conversation.id': 'c-1'}):
        with tracer.start_as_current_span('chat gpt-4o-mini', attributes={
                'gen_ai.operation.name': 'chat', 'gen_ai.provider.name': 'openai',
                'gen_ai.request.model': 'gpt-4o-mini', 'gen_ai.usage.input_tokens': prompt_tokens,
                'gen_ai.usage.output_tokens': 40, 'gen_ai.usage.cache_read.input_tokens': 512}):
            with tracer.start_as_current_span('POST', attributes={'http.request.method': 'POST'}):
                pass
    provider.shutdown()
    return list(kept.get_finished_spans())


def recorded(secured: Secured, agent: str) -> list[dict[str, Any]]:
    with secured.server.client() as admin:
        response = admin.get('/usage', params={'agent_id': agent})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()['items']
    return items


def exporters(secured: Secured) -> tuple[OTLPSpanExporter, JsonSpanExporter]:
    """The SDK's two OTLP HTTP exporters, gzip-compressed, with the ingest token (what OTEL_EXPORTER_OTLP_HEADERS
    gives them)."""
    auth = {'Authorization': f'Bearer {secured.ingest}'}
    return (OTLPSpanExporter(endpoint=secured.endpoint, headers=auth, compression=Compression.Gzip, timeout=10),
            JsonSpanExporter(endpoint=secured.endpoint, headers=auth, compression=JsonCompression.GZIP, timeout=10))


def test_both_sdk_exporters_record_each_call_once_however_often_sent(secured: Secured) -> None:
    protobuf, json_exporter = exporters(secured)
    sent_as_protobuf = agent_run('proto-agent', 1000, protobuf)  # the run's end shuts its exporter down
    sent_as_json = agent_run('json-agent', 2000, json_exporter)
    for agent, tokens in (('proto-agent', 1000), ('json-agent', 2000)):
        [call] = recorded(secured, agent)  # the model call; the agent and HTTP spans are not calls
        assert (call['source'], call['model'], call['provider'], call['session_id']) == (
            'otel', 'gpt-4o-mini', 'openai', 'c-1')
        assert (call['input_tokens'], call['output_tokens'], call['cache_read_tokens']) == (tokens, 40, 512)
        assert call['cost_source'] == 'priced' and call['cost_micros'] > 0
    # sent again, by either exporter (a retry, a replayed batch): nothing is recorded twice
    for exporter in exporters(secured):
        for spans in (sent_as_protobuf, sent_as_json):
            assert exporter.export(spans) == SpanExportResult.SUCCESS
        exporter.shutdown()
    assert len(recorded(secured, 'proto-agent')) == 1 and len(recorded(secured, 'json-agent')) == 1


def test_only_an_ingest_token_may_send_spans(secured: Secured) -> None:
    spans = agent_run('nobody', 10, InMemorySpanExporter())
    for headers in ({}, {'Authorization': 'Bearer wrong'}, {'Authorization': f'Bearer {secured.read}'}):
        exporter = OTLPSpanExporter(endpoint=secured.endpoint, headers=headers, timeout=5)
        assert exporter.export(spans) == SpanExportResult.FAILURE
        exporter.shutdown()
    body = (otlp.JSON, b'{}')
    assert post(secured, *body).status_code == 401
    refused = post(secured, *body, token=secured.read)
    assert refused.status_code == 403 and 'ingest' in refused.json()['detail']
    assert post(secured, *body, token=secured.ingest).status_code == 200
    assert post(secured, *body, token=ADMIN).status_code == 200
    assert recorded(secured, 'nobody') == []
    # a GET is neither sent to /login nor answered with a page
    page = httpx.get(secured.endpoint, follow_redirects=False)
    assert page.status_code == 405 and page.headers['allow'] == 'POST'


def post(secured: Secured, media_type: str, body: bytes, token: str | None = None,
         **headers: str) -> httpx.Response:
    headers = {'Content-Type': media_type, **headers}
    if token:
        headers['Authorization'] = f'Bearer {token}'
    return httpx.post(secured.endpoint, content=body, headers=headers, timeout=30)


def test_ignored_and_malformed_spans_are_reported_in_the_request_s_encoding(secured: Secured) -> None:
    good = {'key': 'gen_ai.request.model', 'value': {'stringValue': 'gpt-4o'}}
    tokens = {'key': 'gen_ai.usage.input_tokens', 'value': {'intValue': '25'}}
    agent = {'key': 'gen_ai.agent.name', 'value': {'stringValue': 'mixed-agent'}}

    def span(span_id: str, *attributes: dict[str, Any]) -> dict[str, Any]:
        return {'traceId': '2' * 32, 'spanId': span_id, 'name': 'chat', 'startTimeUnixNano': '1795000000000000000',
                'endTimeUnixNano': '1795000000500000000', 'attributes': list(attributes)}

    export = {'resourceSpans': [{'scopeSpans': [{'spans': [
        span('1' * 16, good, tokens, agent),  # a call
        span('2' * 16, {'key': 'db.system', 'value': {'stringValue': 'postgresql'}}),  # not a call
        span('3' * 16, tokens, agent),  # usage without a model
        span('4' * 16, good, agent, {'key': 'gen_ai.usage.output_tokens', 'value': {'stringValue': 'lots'}}),
    ]}]}]}
    answer = post(secured, otlp.JSON, gzip.compress(json.dumps(export).encode()), secured.ingest,
                  **{'Content-Encoding': 'gzip'})
    assert answer.status_code == 200
    partial = answer.json()['partialSuccess']
    assert partial['rejectedSpans'] == '2'
    assert partial['errorMessage'].startswith('2 spans rejected: ') and "got 'lots'" in partial['errorMessage']
    assert answer.headers['x-spendgauge-spans'] == 'stored=1; duplicate=0; ignored=1; rejected=2'
    assert [c['input_tokens'] for c in recorded(secured, 'mixed-agent')] == [25]
    # the same in protobuf: answered in protobuf, the call already recorded
    answer = post(secured, otlp.PROTOBUF, as_protobuf(export), secured.ingest)
    assert answer.status_code == 200 and answer.headers['content-type'] == otlp.PROTOBUF
    message = ExportTraceServiceResponse.FromString(answer.content)
    assert message.partial_success.rejected_spans == 2 and 'without a model' in message.partial_success.error_message
    assert answer.headers['x-spendgauge-spans'] == 'stored=0; duplicate=1; ignored=1; rejected=2'
    # all accepted: an empty answer, as OTLP says
    clean = post(secured, otlp.JSON, json.dumps({'resourceSpans': []}).encode(), secured.ingest)
    assert clean.status_code == 200 and clean.json() == {}


def test_bodies_that_are_no_export_are_refused_with_a_clear_4xx(secured: Secured) -> None:
    token = secured.ingest
    cases = [
        (post(secured, 'text/plain', b'hello', token), 415, 'send application/x-protobuf or application/json'),
        (post(secured, otlp.PROTOBUF, b'\xff\xff\xff', token), 400, 'not an OTLP protobuf'),
        (post(secured, otlp.JSON, b'[1, 2', token), 400, 'not valid JSON'),
        (post(secured, otlp.JSON, b'not gzip', token, **{'Content-Encoding': 'gzip'}), 400, 'not valid gzip'),
        (post(secured, otlp.JSON, b'{}', token, **{'Content-Encoding': 'br'}), 415, 'br is not supported'),
        (post(secured, otlp.JSON, gzip.compress(b' ' * (otlp.MAX_DECOMPRESSED + 1)), token,
              **{'Content-Encoding': 'gzip'}), 413, 'once decompressed'),
    ]
    for answer, status, words in cases:
        assert answer.status_code == status, answer.text
        assert words in answer.json()['detail']
    with secured.server.client() as admin:
        assert admin.get('/health').status_code == 200  # still serving


def test_a_busy_ingest_lane_answers_503_and_the_exporter_sends_again(tmp_path: Path,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    """One ingest worker and no queue: while usage batches keep it busy, an export is answered 503 with Retry-After
    before its body is read; the SDK's exporter sends it again until it is taken, and the call counts once."""
    server = start_server(tmp_path, SPENDGAUGE_DAILY_LIMIT_USD='none', SPENDGAUGE_INGEST_WORKERS='1',
                          SPENDGAUGE_INGEST_QUEUE='0')
    endpoint = server.url + '/v1/traces'
    busy_until = [float('inf')]

    def keep_ingest_busy() -> None:  # back to back until busy_until
        with httpx.Client(base_url=server.api, timeout=60) as client:
            for n in itertools.count():
                if time.monotonic() > busy_until[0]:
                    return
                events = [{'event_id': f'hog-{n}-{i}', 'model': 'gpt-4o-mini', 'cost_usd': '0.001'}
                          for i in range(5000)]
                assert client.post('/usage/batch', json={'events': events}).status_code in (200, 503)

    hog = threading.Thread(target=keep_ingest_busy)
    hog.start()
    try:
        spans = agent_run('patient-agent', 1000, InMemorySpanExporter())
        refused = None
        for _ in range(200):
            answer = httpx.post(endpoint, content=b'{}', headers={'Content-Type': otlp.JSON}, timeout=30)
            if answer.status_code == 503:
                refused = answer
                break
        assert refused is not None, 'the lane was never busy'
        assert refused.headers['retry-after'] == '1' and 'send it again' in refused.json()['detail']
        busy_until[0] = time.monotonic() + 1.5  # busy a while longer: the exporter's first tries are refused
        exporter = OTLPSpanExporter(endpoint=endpoint, compression=Compression.Gzip, timeout=30)
        assert exporter.export(spans) == SpanExportResult.SUCCESS
        assert any('Service Unavailable' in r.getMessage() for r in caplog.records), 'it was refused first'
        hog.join(60)
        assert exporter.export(spans) == SpanExportResult.SUCCESS  # once more, when idle: still counted once
        exporter.shutdown()
        with server.client() as api:
            items = api.get('/usage', params={'agent_id': 'patient-agent'}).json()['items']
        assert [call['input_tokens'] for call in items] == [1000]
    finally:
        busy_until[0] = 0
        hog.join(60)
        server.stop()
