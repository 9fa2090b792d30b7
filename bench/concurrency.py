"""Budget checks under concurrency: 100 keep-alive clients at once, most asking `POST /api/v1/check`, some posting
`/api/v1/usage/batch` as fast as they are answered, against the real server.

    .venv/bin/python bench/concurrency.py [--seconds 8] [--check-clients 90] [--ingest-clients 10] [--batch 200]
                                          [--think-ms 300-1000] [--processes 1]

The server is `python -m app serve` in its own process (SQLite in a temporary directory, one API token, so every
request is authenticated) with the 20 policies and the day of usage of bench/check.py. The clients run in other
processes (`--processes`, default 1, asyncio on uvloop): a lean HTTP/1.1 client on asyncio streams, one keep-alive
connection per client, requests and batches encoded before the clock starts, so a client process is not what limits
the figures (its CPU is printed beside the server's).

A check client models an agent: `POST /check`, then the LLM call it asked about (a pause of `--think-ms`, uniform),
then the next check. An ingest client posts a batch of `--batch` events, waits for the answer, and posts the next
(honouring `Retry-After` when the server answers 503). Three phases, each `--seconds` long, in one run:

1. baseline: one check client without pauses, nothing else: the latency of a check on an idle server;
2. checks: the check clients alone;
3. mixed: the check clients and the ingest clients together.

Each phase prints /check p50/p95/p99, checks/s, ingested events/s, refused (503) batches, the CPU of the server
and of the client processes, and how late the clients' own timers fire (p99): on a shared machine, the scheduling
delay that every figure carries. Target: in the mixed phase /check p99 < 50 ms, every check answered 200.
"""
from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TARGET_P99_MS = 50.0
TOKEN = 'sg_bench_concurrency_' + 'x' * 24
TICK = os.sysconf('SC_CLK_TCK')


# --- the load: runs in its own process(es), imports nothing of the app ------------------------------------------

class Connection:
    """One keep-alive HTTP/1.1 connection; answers must carry Content-Length (every API answer does)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def send(self, raw: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(raw)
        head = await self.reader.readuntil(b'\r\n\r\n')
        lines = head.split(b'\r\n')
        status = int(lines[0].split(b' ', 2)[1])
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(b':')
                headers[name.strip().lower()] = value.strip()
        body = await self.reader.readexactly(int(headers.get(b'content-length', b'0')))
        if headers.get(b'connection', b'').lower() == b'close':
            self.close()
        return status, headers, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.reader = self.writer = None


def _request(method: str, path: str, host: str, body: bytes) -> bytes:
    return (f'{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {TOKEN}\r\n'
            f'Content-Type: application/json\r\nContent-Length: {len(body)}\r\nUser-Agent: bench-concurrency\r\n'
            '\r\n').encode() + body


async def _load(spec: dict[str, Any]) -> dict[str, Any]:
    host, port, seconds = spec['host'], spec['port'], spec['seconds']
    authority = f'{host}:{port}'
    checks = [_request('POST', '/api/v1/check', authority, body.encode()) for body in spec['checks']]
    batches = [_request('POST', '/api/v1/usage/batch', authority, body.encode()) for body in spec['batches']]
    think_lo, think_hi = spec['think_ms']
    latencies: list[float] = []
    late: list[float] = []
    statuses: dict[int, int] = {}
    ingested = [0, 0, 0]  # events stored, batches answered 200, batches refused 503
    ingest_latencies: list[float] = []
    connections: list[Connection] = []
    start = asyncio.Event()

    async def check_client(n: int) -> None:
        rng = random.Random(spec['seed'] * 1000 + n)
        connection = Connection(host, port)
        connections.append(connection)
        await connection.send(checks[n % len(checks)])  # connect and warm up before the clock
        await start.wait()
        await asyncio.sleep(rng.uniform(0, think_hi) / 1000)  # spread the first calls
        while time.monotonic() < deadline:
            raw = checks[rng.randrange(len(checks))]
            t0 = time.perf_counter()
            status, _, _ = await connection.send(raw)
            latencies.append((time.perf_counter() - t0) * 1000)
            statuses[status] = statuses.get(status, 0) + 1
            if think_hi:
                pause = rng.uniform(think_lo, think_hi) / 1000
                t1 = time.perf_counter()
                await asyncio.sleep(pause)
                late.append((time.perf_counter() - t1 - pause) * 1000)  # the client's own scheduling delay

    async def ingest_client(n: int) -> None:
        rng = random.Random(spec['seed'] * 7000 + n)
        connection = Connection(host, port)
        connections.append(connection)
        await start.wait()
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            status, headers, body = await connection.send(batches[rng.randrange(len(batches))])
            ingest_latencies.append((time.perf_counter() - t0) * 1000)
            if status == 200:
                ingested[0] += json.loads(body)['stored']
                ingested[1] += 1
            elif status == 503:
                ingested[2] += 1
                await asyncio.sleep(float(headers.get(b'retry-after', b'1')))
            else:
                raise RuntimeError(f'batch answered {status}: {body[:200]!r}')

    tasks = [asyncio.create_task(check_client(n)) for n in range(spec['check_clients'])]
    tasks += [asyncio.create_task(ingest_client(n)) for n in range(spec['ingest_clients'])]
    await asyncio.sleep(0.5)  # connected
    deadline = time.monotonic() + seconds
    cpu0 = time.process_time()
    t0 = time.monotonic()
    start.set()
    await asyncio.gather(*tasks)
    elapsed = time.monotonic() - t0
    cpu = time.process_time() - cpu0
    for connection in connections:
        connection.close()
    return {'latencies': latencies, 'statuses': statuses, 'elapsed': elapsed, 'cpu': cpu, 'events': ingested[0],
            'batches': ingested[1], 'refused': ingested[2], 'ingest_latencies': ingest_latencies, 'late': late}


def client_main() -> None:
    spec = json.loads(sys.stdin.read())
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    print(json.dumps(asyncio.run(_load(spec))))


# --- the run: server, data, phases ---------------------------------------------------------------------------------

def _bench_check() -> Any:
    """bench/check.py for its policies, usage and check bodies (the same data as the single-caller benchmark)."""
    spec = importlib.util.spec_from_file_location('bench_check', ROOT / 'bench' / 'check.py')
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cpu_seconds(pid: int) -> float:
    fields = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime (all threads)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else float('nan')


def phase(name: str, server_pid: int, port: int, args: argparse.Namespace, check_clients: int, ingest_clients: int,
          think_ms: tuple[float, float], data: dict[str, list[str]]) -> dict[str, Any]:
    per = max(1, args.processes)
    specs = [{'host': '127.0.0.1', 'port': port, 'seconds': args.seconds, 'seed': i, 'think_ms': think_ms,
              'check_clients': check_clients // per + (i < check_clients % per),
              'ingest_clients': ingest_clients // per + (i < ingest_clients % per), **data} for i in range(per)]
    clients = [subprocess.Popen([sys.executable, __file__, '--client'], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                text=True) for _ in specs]
    for client, spec in zip(clients, specs, strict=True):
        assert client.stdin is not None
        client.stdin.write(json.dumps(spec))
        client.stdin.close()
    time.sleep(0.5)
    cpu0, t0 = cpu_seconds(server_pid), time.monotonic()
    results = []
    for client in clients:
        assert client.stdout is not None
        out = client.stdout.read()
        if client.wait() != 0:
            raise RuntimeError(f'a client process failed in phase {name}')
        results.append(json.loads(out))
    server_cpu = (cpu_seconds(server_pid) - cpu0) / (time.monotonic() - t0)
    latencies = [v for r in results for v in r['latencies']]
    statuses: dict[str, int] = {}
    for r in results:
        for status, count in r['statuses'].items():
            statuses[status] = statuses.get(status, 0) + count
    elapsed = max(r['elapsed'] for r in results)
    row = {'phase': name, 'checks': len(latencies), 'checks_s': len(latencies) / elapsed,
           'p50': percentile(latencies, 50), 'p95': percentile(latencies, 95), 'p99': percentile(latencies, 99),
           'max': max(latencies, default=float('nan')), 'not_200': sum(c for s, c in statuses.items() if s != '200'),
           'events_s': sum(r['events'] for r in results) / elapsed, 'batches': sum(r['batches'] for r in results),
           'refused': sum(r['refused'] for r in results),
           'batch_p50': percentile([v for r in results for v in r['ingest_latencies']], 50),
           'server_cpu': server_cpu, 'client_cpu': sum(r['cpu'] for r in results) / elapsed,
           'late_p99': percentile([v for r in results for v in r['late']], 99)}
    print(f"{name:>8}: /check p50 {row['p50']:6.2f} ms, p95 {row['p95']:6.2f} ms, p99 {row['p99']:7.2f} ms, "
          f"max {row['max']:7.1f} ms, {row['checks_s']:6.0f} checks/s ({row['not_200']} not 200); "
          f"ingest {row['events_s']:7.0f} events/s ({row['batches']} batches, batch p50 {row['batch_p50']:.0f} ms, "
          f"{row['refused']} answered 503); CPU server {row['server_cpu']:.0%} "
          f"({row['server_cpu'] * 1000 / max(row['checks_s'], 1e-9):.2f} ms a check), clients {row['client_cpu']:.0%}; "
          f"the clients' timers late by {row['late_p99']:.1f} ms at p99 (the machine's scheduling delay)",
          flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--seconds', type=float, default=8)
    parser.add_argument('--check-clients', type=int, default=90)
    parser.add_argument('--ingest-clients', type=int, default=10)
    parser.add_argument('--batch', type=int, default=200, help='events per ingest request')
    parser.add_argument('--think-ms', default='300-1000', help="a check client's pause after each check: LO-HI ms")
    parser.add_argument('--processes', type=int, default=1, help='client processes sharing the clients')
    parser.add_argument('--server-env', action='append', default=[], metavar='NAME=VALUE',
                        help='a setting for the server, e.g. SPENDGAUGE_INGEST_WORKERS=1 (repeatable)')
    args = parser.parse_args()
    think = tuple(float(v) for v in args.think_ms.split('-'))
    assert len(think) == 2
    sys.path.insert(0, str(ROOT))
    import httpx

    from tests.support.servers import start_server

    check = _bench_check()
    rng = random.Random(3)
    with tempfile.TemporaryDirectory() as tmp:
        extra = dict(item.split('=', 1) for item in args.server_env)
        server = start_server(Path(tmp), token=TOKEN, timeout=90, **{'SPENDGAUGE_LOG_LEVEL': 'WARNING',
                                                                     'SPENDGAUGE_TZ': 'Europe/Berlin', **extra})
        try:
            with server.client() as api:
                for spec in check.policy_specs():
                    assert api.post('/policies', json=spec).status_code == 201
                assert api.post('/usage/batch', json={'events': check.usage(rng, 2000)}).status_code == 200
            data = {'checks': [json.dumps(body) for body in check.requests(rng, 1000)],
                    'batches': [json.dumps({'events': check.usage(rng, args.batch)}) for _ in range(20)]}
            port = int(server.url.rsplit(':', 1)[1])
            print(f'{len(check.policy_specs())} policies; {args.check_clients} check clients (pause {args.think_ms} '
                  f'ms after each check), {args.ingest_clients} ingest clients (batches of {args.batch}), '
                  f'{args.seconds:g} s a phase, {args.processes} client process(es), {os.cpu_count()} CPUs',
                  flush=True)
            pid = server.process.pid
            base = phase('baseline', pid, port, args, 1, 0, (0, 0), data)
            phase('checks', pid, port, args, args.check_clients, 0, think, data)
            mixed = phase('mixed', pid, port, args, args.check_clients, args.ingest_clients, think, data)
            with httpx.Client(base_url=server.api, timeout=30,
                              headers={'Authorization': f'Bearer {TOKEN}'}) as api:
                assert api.get('/health').status_code == 200
        finally:
            server.stop()
        ok = mixed['p99'] < TARGET_P99_MS and mixed['not_200'] == 0
        print(f"mixed /check p99 {mixed['p99']:.1f} ms [target < {TARGET_P99_MS:g} ms, every check answered 200: "
              f"{'ok' if ok else 'MISSED'}]; {mixed['p99'] / base['p99']:.1f}x the baseline p99 "
              f"({base['p99']:.2f} ms), p50 {mixed['p50'] / base['p50']:.1f}x; "
              f"{mixed['events_s']:.0f} events/s ingested alongside")
        if statistics.fmean([mixed['client_cpu']]) > 0.8 * max(1, args.processes):
            print('note: a client process was near a full core; try --processes 2')


if __name__ == '__main__':
    if sys.argv[1:] == ['--client']:
        client_main()
    else:
        main()
