"""Ingest throughput: POST /api/v1/usage/batch over HTTP and the ledger in process, each beside raw
`sqlite3.executemany` of the same rows into the same schema, measured in the same run.

    .venv/bin/python bench/ingest.py [--events 100000] [--batch 10000] [--kinds]

`--kinds`: every other event is an embedding, an image, a transcription or a speech call carrying its units.

Targets: at least 20,000 events/s over HTTP with SQLite; in-process at least a quarter of the raw rate.
"""
from __future__ import annotations

import argparse
import gc
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.runtime import tune_gc  # noqa: E402
from services.core.db import create_db_engine, upgrade  # noqa: E402
from services.live.hub import EventHub  # noqa: E402
from services.usage.ledger import EVENT_COLUMNS, Ledger  # noqa: E402
from services.usage.pricing import Pricer  # noqa: E402

MODELS = [('openai', 'gpt-4o'), ('openai', 'gpt-4o-mini'), ('anthropic', 'claude-sonnet-4-5'),
          ('openrouter', 'openai/gpt-4o-mini')]


def make_events(count: int, tag: str, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    events = []
    for i in range(count):
        provider, model = rng.choice(MODELS)
        input_tokens = rng.randint(200, 20_000)
        session = rng.randint(1, 200)  # a session is worked on by a few agents, on a few tasks
        events.append({
            'event_id': f'{tag}-{i}', 'provider': provider, 'model': model,
            'channel': rng.choice(['litellm', 'direct']),
            'agent_id': f'agent-{(session * 7 + rng.randint(0, 3)) % 50}', 'session_id': f'session-{session}',
            'task_id': f'task-{session}-{rng.randint(1, 3)}', 'input_tokens': input_tokens,
            'cache_read_tokens': rng.randint(0, input_tokens // 2), 'output_tokens': rng.randint(10, 2000),
            'latency_ms': rng.randint(100, 5000), 'tags': ['bench'],
        })
    return events


def raw_rows(events: list[dict]) -> list[tuple]:
    """The rows the ledger would store, ready for executemany (costs and times precomputed)."""
    now = '2026-11-29 12:00:00.000000'
    defaults = {'source': 'api', 'ts': now, 'user_id': None, 'project': None, 'cache_write_tokens': 0,
                'cost_micros': 1234, 'cost_source': 'priced', 'metadata': '{}', 'created_at': now, 'kind': None,
                'units': None}
    return [tuple({**defaults, **e, 'tags': '["bench"]',
                   'units': orjson.dumps(units).decode() if (units := _units(e)) else None}[c]
                  for c in EVENT_COLUMNS) for e in events]


KINDS: list[tuple[str, str, dict]] = [  # (provider, model, the fields of the call), for --kinds
    ('openai', 'text-embedding-3-small', {'kind': 'embedding', 'output_tokens': 0}),
    ('openai', 'gpt-image-1', {'kind': 'image', 'images': {'count': 1, 'size': '1024x1024', 'quality': 'high'}}),
    ('openai', 'whisper-1', {'kind': 'audio_transcription', 'input_tokens': 0, 'cache_read_tokens': 0,
                             'output_tokens': 0, 'audio_seconds': 42.5}),
    ('openai', 'tts-1', {'kind': 'audio_speech', 'input_tokens': 0, 'cache_read_tokens': 0, 'output_tokens': 0,
                         'characters': 800}),
]
UNIT_FIELDS = ('audio_seconds', 'characters', 'images')


def with_kinds(events: list[dict]) -> list[dict]:
    for i, event in enumerate(events[::2]):
        event['provider'], event['model'], fields = KINDS[i % len(KINDS)]
        event.update(fields)
    return events


def _units(event: dict) -> dict | None:
    return {k: event[k] for k in UNIT_FIELDS if k in event} or None


def bench_raw(path: Path, rows: list[tuple], batch: int) -> float:
    upgrade(create_db_engine(f'sqlite:///{path}'))
    con = sqlite3.connect(path)
    con.execute('PRAGMA journal_mode=WAL')
    con.execute('PRAGMA synchronous=NORMAL')
    sql = f'INSERT INTO usage_events ({", ".join(EVENT_COLUMNS)}) VALUES ({", ".join("?" * len(EVENT_COLUMNS))})'
    start = time.perf_counter()
    for i in range(0, len(rows), batch):
        with con:
            con.executemany(sql, rows[i:i + batch])
    elapsed = time.perf_counter() - start
    con.close()
    return len(rows) / elapsed


def bench_ledger(path: Path, events: list[dict], batch: int) -> float:
    engine = create_db_engine(f'sqlite:///{path}')
    upgrade(engine)
    ledger = Ledger(engine, Pricer(), EventHub())
    ledger.record_batch(make_events(10, 'warm'))  # price lookups and connections, as a running server has them
    tune_gc()  # as the server does on start-up
    start = time.perf_counter()
    for i in range(0, len(events), batch):
        results = ledger.record_batch(events[i:i + batch])
        assert all(r.status == 'stored' for r in results)
    elapsed = time.perf_counter() - start
    engine.dispose()
    return len(events) / elapsed


def bench_http(workdir: Path, events: list[dict], batch: int) -> float:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != 'PYTEST_CURRENT_TEST' and not k.startswith('SPENDGAUGE_')}
    env.update(SPENDGAUGE_DATABASE_URL=f'sqlite:///{workdir / "http.db"}', SPENDGAUGE_PORT=str(port),
               SPENDGAUGE_ENV_FILE='', SPENDGAUGE_LOG_LEVEL='WARNING')
    server = subprocess.Popen([sys.executable, '-m', 'app', 'serve'], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f'http://127.0.0.1:{port}/api/v1'
    try:
        with httpx.Client(base_url=url, timeout=120) as client:
            for _ in range(300):
                try:
                    if client.get('/health').status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            client.post('/usage/batch', content=orjson.dumps({'events': make_events(10, 'warm')}))
            bodies = [orjson.dumps({'events': events[i:i + batch]}) for i in range(0, len(events), batch)]
            gc.collect()
            gc.freeze()  # the client's own garbage collection is not the server's time
            start = time.perf_counter()
            for body in bodies:
                response = client.post('/usage/batch', content=body, headers={'content-type': 'application/json'})
                assert response.status_code == 200, response.text[:300]
                assert orjson.loads(response.content)['stored'] == batch
            elapsed = time.perf_counter() - start
            gc.unfreeze()
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(20)
    return len(events) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--events', type=int, default=100_000)
    parser.add_argument('--batch', type=int, default=10_000)
    parser.add_argument('--kinds', action='store_true', help='half the events of other kinds, with their units')
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        events = make_events(args.events, 'e')
        if args.kinds:
            events = with_kinds(events)
        raw = bench_raw(work / 'raw.db', raw_rows(events), args.batch)
        ledger = bench_ledger(work / 'ledger.db', events, args.batch)
        http = bench_http(work, events, args.batch)
        raw_again = bench_raw(work / 'raw2.db', raw_rows(events), args.batch)
    baseline = (raw + raw_again) / 2
    kinds = ', half of them embeddings, images, transcriptions and speech' if args.kinds else ''
    print(f'ingest of {args.events:,} events in batches of {args.batch:,} (SQLite, WAL){kinds}')
    print(f'  raw sqlite3.executemany  {baseline:>10,.0f} events/s   (baseline; runs: {raw:,.0f} and {raw_again:,.0f})')
    print(f'  ledger in process        {ledger:>10,.0f} events/s   {ledger / baseline:.2f}x raw   (target >= 0.25x)')
    print(f'  HTTP POST /usage/batch   {http:>10,.0f} events/s   {http / baseline:.2f}x raw   '
          f'(target >= 20,000 events/s)')
    ok = ledger >= 0.25 * baseline and http >= 20_000
    print('  targets met' if ok else '  TARGETS MISSED')


if __name__ == '__main__':
    main()
