"""OpenTelemetry ingest speed: an export of GenAI spans read and mapped in process (no database), `POST /v1/traces`
over HTTP in both encodings (gzip, 512 spans an export: the SDK batch processor's size), and `POST /api/v1/check`
latency idle and while exports flood in (ingest runs in its own lane, off the event loop).

    .venv/bin/python bench/otel_ingest.py [--exports 40] [--checks 500]
"""
from __future__ import annotations

import argparse
import gzip
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from services.otel.genai import Lineage, usage_event  # noqa: E402
from services.otel.otlp import JSON, PROTOBUF, decode  # noqa: E402
from tests.support.otlp import as_protobuf  # noqa: E402
from tests.support.servers import start_server  # noqa: E402

SPANS = 512
MODELS = ('gpt-4o-mini', 'gpt-4o', 'claude-3-5-sonnet-20241022')


def export(n: int, spans: int = SPANS) -> dict[str, Any]:
    def value(v: Any) -> dict[str, Any]:
        return {'intValue': str(v)} if isinstance(v, int) else {'stringValue': v}

    items = []
    for i in range(spans):
        attributes = {'gen_ai.operation.name': 'chat', 'gen_ai.provider.name': 'openai',
                      'gen_ai.request.model': MODELS[i % 3], 'gen_ai.response.model': MODELS[i % 3],
                      'gen_ai.usage.input_tokens': 1000 + i, 'gen_ai.usage.output_tokens': 100 + i % 50,
                      'gen_ai.usage.cache_read.input_tokens': 512, 'gen_ai.conversation.id': f'conv-{i % 20}',
                      'server.address': 'api.openai.com', 'gen_ai.response.id': f'chatcmpl-{n}-{i}'}
        items.append({'traceId': f'{n + 1:016x}{i + 1:016x}', 'spanId': f'{i + 1:016x}', 'name': 'chat',
                      'kind': 3, 'startTimeUnixNano': str(1795000000_000000000 + i * 10**9),
                      'endTimeUnixNano': str(1795000000_900000000 + i * 10**9),
                      'attributes': [{'key': k, 'value': value(v)} for k, v in attributes.items()]})
    return {'resourceSpans': [{'resource': {'attributes': [{'key': 'service.name',
                                                             'value': {'stringValue': 'bench-agent'}}]},
                               'scopeSpans': [{'scope': {'name': 'bench'}, 'spans': items}]}]}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


def in_process() -> None:
    body_json = json.dumps(export(0)).encode()
    body_protobuf = as_protobuf(export(0))
    for name, body, media in (('protobuf', body_protobuf, PROTOBUF), ('json', body_json, JSON)):
        times = []
        for _ in range(20):
            start = time.perf_counter()
            spans = decode(body, media, None).spans
            lineage = Lineage(spans)
            mapped = [usage_event(span, lineage) for span in spans]
            times.append(time.perf_counter() - start)
        assert all(m.event for m in mapped)
        best = min(times)
        print(f'in process, {name} ({len(body):,} bytes): decode + map {SPANS} spans in {best * 1000:.1f} ms '
              f'(median {statistics.median(times) * 1000:.1f} ms) = {SPANS / best:,.0f} spans/s')


def over_http(exports: int, checks: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(Path(tmp), SPENDGAUGE_DAILY_LIMIT_USD='none')
        try:
            url = server.url + '/v1/traces'
            bodies = {
                'protobuf': [gzip.compress(as_protobuf(export(n))) for n in range(exports)],
                'json': [gzip.compress(json.dumps(export(exports + n)).encode()) for n in range(exports)],
            }
            with httpx.Client(timeout=60) as client:
                for name, media in (('protobuf', PROTOBUF), ('json', JSON)):
                    headers = {'Content-Type': media, 'Content-Encoding': 'gzip'}
                    start = time.perf_counter()
                    for body in bodies[name]:
                        answer = client.post(url, content=body, headers=headers)
                        assert answer.status_code == 200 and 'rejected=0' in answer.headers['x-spendgauge-spans']
                    elapsed = time.perf_counter() - start
                    print(f'HTTP {name} gzip, one client: {exports} exports of {SPANS} spans in {elapsed:.2f} s = '
                          f'{exports * SPANS / elapsed:,.0f} spans/s, {elapsed / exports * 1000:.0f} ms an export')
                check_body = {'agent_id': 'bench-agent', 'model': 'gpt-4o-mini', 'estimated_cost_usd': '0.01'}
                idle = timed_checks(client, server.api + '/check', check_body, checks)
                stop = threading.Event()
                sent = [0]

                def flood() -> None:
                    resend = [gzip.compress(json.dumps(export(10_000 + n)).encode()) for n in range(exports)]
                    with httpx.Client(timeout=60) as flooder:
                        while not stop.is_set():
                            for body in resend:  # new spans once, then the same ones again: duplicates
                                if stop.is_set():
                                    break
                                flooder.post(url, content=body,
                                             headers={'Content-Type': JSON, 'Content-Encoding': 'gzip'})
                                sent[0] += 1

                threads = [threading.Thread(target=flood) for _ in range(2)]
                for thread in threads:
                    thread.start()
                time.sleep(0.5)
                busy = timed_checks(client, server.api + '/check', check_body, checks)
                stop.set()
                for thread in threads:
                    thread.join()
                for name, values in (('idle', idle), (f'under 2 clients flooding /v1/traces ({sent[0]} exports '
                                                      'sent meanwhile)', busy)):
                    print(f'POST /api/v1/check {name}: p50 {percentile(values, 50) * 1000:.2f} ms, '
                          f'p99 {percentile(values, 99) * 1000:.2f} ms')
        finally:
            server.stop()


def timed_checks(client: httpx.Client, url: str, body: dict[str, Any], count: int) -> list[float]:
    times = []
    for _ in range(count):
        start = time.perf_counter()
        assert client.post(url, json=body).status_code == 200
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument('--exports', type=int, default=40)
    parser.add_argument('--checks', type=int, default=500)
    args = parser.parse_args()
    in_process()
    over_http(args.exports, args.checks)


if __name__ == '__main__':
    main()
