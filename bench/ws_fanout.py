"""Live API fan-out: how much a burst of ingest slows down while many WebSocket clients receive every event.

    .venv/bin/python bench/ws_fanout.py [--clients 100] [--batches 20] [--size 50] [--rounds 3] [--db URL]

Starts its own server (a new SQLite file, or --db: a PostgreSQL URL whose database is migrated by the server), then per
round: a burst of --batches POST /api/v1/usage/batch of --size events with no live client, and the same burst while
--clients clients (in a process of their own, tests/support/ws_readers.py) are subscribed to `usage`; every client
must receive every event. Prints both times, their ratio (the median over the rounds), the time until the last
client had the last event, and the server's CPU time in each case. The clients run on the same machine: on a small one
their reading takes CPU from the server too, which the ratio includes.

Target: the ratio under 2 with 100 clients (the fan-out costs the server one encoding per message and a non-blocking
put per client; what remains is the sockets' sends on the event loop, which the ingest threads share the CPU with).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from tests.support.servers import start_server  # noqa: E402

TOKEN = 'bench-ws-token-0123456789abcdef'
TARGET_RATIO = 2.0


def event(agent: str) -> dict:
    return {'model': 'gpt-4o', 'input_tokens': 1200, 'output_tokens': 300, 'agent_id': agent,
            'session_id': f'{agent}-s', 'event_id': uuid.uuid4().hex, 'tags': ['bench']}


def burst(api: httpx.Client, agent: str, batches: int, size: int) -> float:
    payloads = [{'events': [event(agent) for _ in range(size)]} for _ in range(batches)]
    started = time.perf_counter()
    for payload in payloads:
        response = api.post('/usage/batch', json=payload)
        response.raise_for_status()
    return time.perf_counter() - started


def cpu_s(pid: int) -> float:
    """The process's CPU time so far (user + system), from /proc."""
    fields = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--clients', type=int, default=100)
    parser.add_argument('--batches', type=int, default=20)
    parser.add_argument('--size', type=int, default=50)
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--db', help='a PostgreSQL URL (default: a new SQLite file)')
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix='sg-ws-bench-') as folder:
        server = start_server(Path(folder), args.db, token=TOKEN, SPENDGAUGE_DAILY_LIMIT_USD='none',
                              SPENDGAUGE_WS_MAX_CONNECTIONS=str(args.clients + 10), SPENDGAUGE_INGEST_QUEUE='1000')
        try:
            with server.client() as api:
                read_token = api.post('/tokens', json={'name': 'bench', 'role': 'read'}).json()['token']
                burst(api, 'warm-up', 5, args.size)
                ratios = []
                for round_ in range(1, args.rounds + 1):
                    cpu = cpu_s(server.process.pid)
                    alone = burst(api, f'alone-{round_}', args.batches, args.size)
                    cpu_alone = cpu_s(server.process.pid) - cpu
                    agent = f'watched-{round_}'
                    expected = args.batches * args.size
                    readers = subprocess.Popen(
                        [sys.executable, '-m', 'tests.support.ws_readers', server.url.replace('http', 'ws', 1)
                         + '/api/v1/ws', read_token, str(args.clients), agent, str(expected)],
                        cwd=ROOT, stdout=subprocess.PIPE, text=True)
                    assert readers.stdout is not None and readers.stdout.readline().strip() == 'ready'
                    started, cpu = time.perf_counter(), cpu_s(server.process.pid)
                    watched = burst(api, agent, args.batches, args.size)
                    out, _ = readers.communicate(timeout=300)
                    delivered = time.perf_counter() - started
                    cpu_watched = cpu_s(server.process.pid) - cpu
                    counts = json.loads(out)
                    complete = sum(c == expected for c in counts)
                    ratios.append(watched / alone)
                    print(f'round {round_}: {expected} events in {args.batches} batches: {alone:.3f} s alone, '
                          f'{watched:.3f} s with {args.clients} clients ({watched / alone:.2f}x); the last client '
                          f'had every event after {delivered:.3f} s; {complete}/{args.clients} clients complete; '
                          f'server CPU {cpu_alone:.2f} s alone, {cpu_watched:.2f} s with the clients (until the last '
                          'had every event)')
                status = api.get('/ws/status').json()
        finally:
            server.stop()
    ratio = statistics.median(ratios)
    verdict = 'ok' if ratio < TARGET_RATIO else 'MISSED'
    print(f'ingest slowdown with {args.clients} live clients: {ratio:.2f}x (median of {args.rounds}; target < '
          f'{TARGET_RATIO}x): {verdict}')
    print(f'messages queued for clients: {status["sent"]}, clients dropped as too slow: {status["dropped"]}')


if __name__ == '__main__':
    main()
