"""Budget-check speed: checks per second and latency in process, and `POST /api/v1/check` over HTTP beside a
trivial FastAPI endpoint measured in the same run, with 20 policies and 100 agents.

    .venv/bin/python bench/check.py [--checks 50000] [--requests 2000] [--token T]

In process: a Checker on a SQLite file with the policies and a day of usage for every agent; each check is timed
on its own with perf_counter_ns. Over HTTP: our server (`python -m app serve`, SQLite in a temporary directory)
with a trivial endpoint added to the same app (validates a body of the same shape, answers a small dict), and the
same trivial endpoint in a bare FastAPI app under uvicorn; 127.0.0.1, keep-alive httpx clients, requests taking
turns. The target compares with the trivial endpoint of the same server (same middleware and event loop).

In process, plain checks and checks that reserve their estimate (500 calls in flight) are timed apart.

Targets: in-process p99 < 50 µs (both kinds); HTTP p99 of /check at most twice the trivial endpoint's.
"""
from __future__ import annotations

import argparse
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app import runtime  # noqa: E402
from services.budget import policies  # noqa: E402
from services.budget.checker import Checker, CheckRequest  # noqa: E402
from services.core.db import create_db_engine, upgrade  # noqa: E402
from services.live.hub import EventHub  # noqa: E402
from services.usage.ledger import Ledger  # noqa: E402
from services.usage.pricing import Pricer  # noqa: E402
from tests.support.servers import clean_env, free_port  # noqa: E402

AGENTS = [f'agent-{n:03d}' for n in range(100)]
PROJECTS = ['alpha', 'beta', 'gamma', 'delta']
TAGS = ['nightly', 'batch', 'interactive', 'eval']
TARGET_IN_PROCESS_P99_US, TARGET_HTTP_RATIO = 50, 2.0
OUTSTANDING = 500  # reserving checks: calls whose usage has not arrived yet
SERVER_WITH_TRIVIAL = """
import sys
sys.path.insert(0, {root!r})
from nicegui import app, ui
from pydantic import BaseModel

from services.core.settings import get_settings
from app.server import build, run_options


class Body(BaseModel):
    agent_id: str | None = None
    session_id: str | None = None
    project: str | None = None
    tags: list[str] = []
    estimated_cost_usd: str | None = None


@app.post('/bench/trivial')
async def trivial(body: Body) -> dict:
    return {{'decision': 'allow', 'agent_id': body.agent_id}}


build()
ui.run(**run_options(get_settings()))
"""
TRIVIAL_APP = """
from fastapi import FastAPI
from pydantic import BaseModel


class Body(BaseModel):
    agent_id: str | None = None
    session_id: str | None = None
    project: str | None = None
    tags: list[str] = []
    estimated_cost_usd: str | None = None


app = FastAPI()


@app.post('/trivial')
async def trivial(body: Body) -> dict:
    return {'decision': 'allow', 'agent_id': body.agent_id}
"""


def policy_specs() -> list[dict]:
    """20 policies: global day/week/month, per agent, ten single agents, projects, tags, a provider and a model."""
    specs = [{'limit_usd': '500', 'period': 'day'}, {'limit_usd': '2000', 'period': 'week'},
             {'limit_usd': '6000', 'period': 'month'}, {'scope': 'agent', 'limit_usd': '10'},
             {'scope': 'project', 'limit_usd': '100'}, {'scope': 'tag', 'scope_value': 'nightly', 'limit_usd': '50'},
             {'scope': 'provider', 'scope_value': 'openai', 'limit_usd': '300'},
             {'scope': 'model', 'scope_value': 'gpt-4o', 'limit_usd': '200', 'period': 'week'},
             {'scope': 'session', 'limit_usd': '5', 'period': 'session'},
             {'scope': 'user', 'limit_usd': '20'}]
    specs += [{'scope': 'agent', 'scope_value': AGENTS[n * 10], 'limit_usd': '8', 'action': 'block'}
              for n in range(10)]
    return [{'name': f'policy {i}', 'action': 'throttle', **spec} for i, spec in enumerate(specs)]


def usage(rng: random.Random, count: int) -> list[dict]:
    return [{'model': 'gpt-4o', 'provider': 'openai', 'agent_id': rng.choice(AGENTS),
             'session_id': f's{rng.randrange(50)}', 'project': rng.choice(PROJECTS), 'tags': [rng.choice(TAGS)],
             'user_id': f'u{rng.randrange(10)}', 'cost_usd': f'0.0{rng.randrange(1000, 9999)}'} for _ in range(count)]


def requests(rng: random.Random, count: int) -> list[dict]:
    return [{'agent_id': rng.choice(AGENTS), 'session_id': f's{rng.randrange(50)}', 'project': rng.choice(PROJECTS),
             'tags': [rng.choice(TAGS)], 'user_id': f'u{rng.randrange(10)}', 'provider': 'openai', 'model': 'gpt-4o',
             'estimated_cost_usd': '0.01'} for _ in range(count)]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def in_process(tmp: Path, checks: int) -> None:
    engine = create_db_engine(f'sqlite:///{tmp / "inproc.db"}')
    upgrade(engine)
    hub = EventHub()
    with engine.begin() as conn:
        for spec in policy_specs():
            policies.create_policy(conn, policies.validate(spec))
    ledger = Ledger(engine, Pricer(), hub)
    rng = random.Random(1)
    ledger.record_batch(usage(rng, 2000))
    checker = Checker(engine, hub, ZoneInfo('Europe/Berlin'))
    checker.start()
    bodies = [CheckRequest(r['agent_id'], r['session_id'], r['user_id'], r['project'], tuple(r['tags']),
                           r['provider'], r['model'], 10_000) for r in requests(rng, 1000)]
    runtime.tune_gc()  # as the server does on start-up
    for body in bodies:  # warm up
        checker.check(body)
    for reserving in (False, True):
        timings = []
        perf = time.perf_counter_ns
        start = perf()
        for i in range(checks):
            body = bodies[i % len(bodies)]
            event_id = f'call-{i}' if reserving else None
            t0 = perf()
            checker.check(body, reserve=event_id)
            timings.append((perf() - t0) / 1000)
            if reserving and i >= OUTSTANDING:  # the usage of an older call arrives: OUTSTANDING calls in flight
                checker.release(f'call-{i - OUTSTANDING}')
        elapsed = (perf() - start) / 1e9
        p50, p99 = percentile(timings, 50), percentile(timings, 99)
        ok = 'ok' if p99 < TARGET_IN_PROCESS_P99_US else 'MISSED'
        what = f'reserving, {OUTSTANDING} held' if reserving else 'plain'
        print(f'in process ({what}): {checks / elapsed:,.0f} checks/s (timed loop), p50 {p50:.1f} µs, '
              f'p99 {p99:.1f} µs [target p99 < {TARGET_IN_PROCESS_P99_US} µs: {ok}]')
    checker.stop()
    engine.dispose()


def launch(tmp: Path, extra_env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    """Our server, with the trivial endpoint added to the same app (same middleware, same event loop)."""
    port = free_port()
    (tmp / 'bench_server.py').write_text(SERVER_WITH_TRIVIAL.format(root=str(ROOT)))
    env = clean_env(SPENDGAUGE_DATABASE_URL=f'sqlite:///{tmp / "http.db"}', SPENDGAUGE_PORT=str(port),
                    SPENDGAUGE_ENV_FILE='', SPENDGAUGE_LOG_LEVEL='WARNING', SPENDGAUGE_TZ='Europe/Berlin', **extra_env)
    process = subprocess.Popen([sys.executable, 'bench_server.py'], cwd=tmp, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    url = f'http://127.0.0.1:{port}'
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(url + '/api/v1/health', timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            raise RuntimeError('the server did not start')
        time.sleep(0.1)


def bare_app(tmp: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    (tmp / 'trivial_app.py').write_text(TRIVIAL_APP)
    process = subprocess.Popen([sys.executable, '-m', 'uvicorn', 'trivial_app:app', '--port', str(port),
                                '--log-level', 'warning'], cwd=tmp, env=clean_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f'http://127.0.0.1:{port}'
    deadline = time.monotonic() + 20
    while True:
        try:
            httpx.post(url + '/trivial', json={}, timeout=1)
            return process, url
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def timed(client: httpx.Client, path: str, body: dict, into: list[float]) -> None:
    t0 = time.perf_counter()
    response = client.post(path, json=body)
    into.append((time.perf_counter() - t0) * 1000)
    assert response.status_code == 200, response.text


def over_http(tmp: Path, count: int, encoding: str = 'gzip', token: str | None = None) -> None:
    server, url = launch(tmp, {'SPENDGAUGE_API_TOKENS': token} if token else {})
    bare, bare_url = bare_app(tmp)
    try:
        rng = random.Random(2)
        with httpx.Client(base_url=url, timeout=30) as ours, httpx.Client(base_url=bare_url, timeout=30) as other:
            ours.headers['Accept-Encoding'] = other.headers['Accept-Encoding'] = encoding
            if token:
                ours.headers['Authorization'] = f'Bearer {token}'
            for spec in policy_specs():
                assert ours.post('/api/v1/policies', json=spec).status_code == 201
            assert ours.post('/api/v1/usage/batch', json={'events': usage(rng, 2000)}).status_code == 200
            bodies = requests(rng, count)
            for body in bodies[:200]:  # warm up
                ours.post('/api/v1/check', json=body)
                ours.post('/bench/trivial', json=body)
                other.post('/trivial', json=body)
            check: list[float] = []
            trivial: list[float] = []
            bare_times: list[float] = []
            for body in bodies:
                timed(ours, '/api/v1/check', body, check)
                timed(ours, '/bench/trivial', body, trivial)
                timed(other, '/trivial', body, bare_times)
    finally:
        for process in (server, bare):
            process.send_signal(signal.SIGINT)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
    for name, values in (('POST /api/v1/check', check), ('trivial endpoint, same server', trivial),
                         ('trivial endpoint, bare FastAPI+uvicorn', bare_times)):
        print(f'HTTP {name}: p50 {percentile(values, 50):.2f} ms, p99 {percentile(values, 99):.2f} ms, '
              f'mean {statistics.fmean(values):.2f} ms ({len(values)} requests)')
    ratio = percentile(check, 99) / percentile(trivial, 99)
    ok = 'ok' if ratio <= TARGET_HTTP_RATIO else 'MISSED'
    print(f'p99 ratio check / trivial (same server): {ratio:.2f} [target <= {TARGET_HTTP_RATIO}: {ok}]; '
          f'check / bare FastAPI: {percentile(check, 99) / percentile(bare_times, 99):.2f}')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--checks', type=int, default=50_000)
    parser.add_argument('--requests', type=int, default=2000)
    parser.add_argument('--encoding', default='gzip', help="the clients' Accept-Encoding (default gzip)")
    parser.add_argument('--token', help='run the server with this API token and send it (the secured path)')
    args = parser.parse_args()
    print(f'{len(policy_specs())} policies, {len(AGENTS)} agents')
    with tempfile.TemporaryDirectory() as tmp:
        in_process(Path(tmp), args.checks)
        over_http(Path(tmp), args.requests, args.encoding, args.token)


if __name__ == '__main__':
    main()
