"""Many callers at once against a real server over real HTTP: budget checks stay consistent with the counters while
batches are ingested, and ingest's backpressure (app/api/ingest.py) refuses with 503 and Retry-After without losing
anything it accepted. Correctness only: speed under concurrency is measured by bench/concurrency.py."""
from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.servers import Server, start_server

TOKEN = 'sg_test_concurrency_' + 'k' * 24
CALLERS = 100
LIMIT_MICROS, COST_MICROS = 500_000, 10_000  # the swarm may make exactly 50 calls of $0.01


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> Iterator[Server]:
    srv = start_server(tmp_path, database_url, token=TOKEN, SPENDGAUGE_DAILY_LIMIT_USD='none')
    yield srv
    srv.stop()
    assert 'Traceback' not in srv.log()


def _async_client(server: Server) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=server.api, headers={'Authorization': f'Bearer {TOKEN}'}, timeout=120,
                             limits=httpx.Limits(max_connections=CALLERS + 10, max_keepalive_connections=CALLERS + 10))


def _swarm_answer(answer: dict[str, Any], policy_id: int) -> dict[str, Any]:
    return next(p for p in answer['policies'] if p['id'] == policy_id)


def test_concurrent_checks_while_batches_are_ingested_never_overshoot_a_block_limit(server: Server) -> None:
    with server.client() as api:
        swarm = api.post('/policies', json={'name': 'swarm', 'scope': 'agent', 'scope_value': 'swarm',
                                            'limit_usd': '0.50', 'action': 'block'}).json()
        everything = api.post('/policies', json={'name': 'everything', 'limit_usd': '100000', 'action': 'warn',
                                                 'period': 'month'}).json()
    answers: list[dict[str, Any]] = []
    statuses: list[int] = []
    recorded: list[str] = []
    batches: list[dict[str, Any]] = []

    async def caller(client: httpx.AsyncClient, n: int) -> None:
        rng = random.Random(n)
        for call in range(LIMIT_MICROS // COST_MICROS + 2):
            event_id = f'swarm-{n}-{call}'
            response = await client.post('/check', json={'agent_id': 'swarm', 'estimated_cost_usd': '0.01',
                                                         'reserve': True, 'event_id': event_id})
            statuses.append(response.status_code)
            answer = response.json()
            answers.append(answer)
            if not answer['allowed']:
                return
            await asyncio.sleep(rng.uniform(0, 0.02))  # the LLM call
            stored = await client.post('/usage', json={'event_id': event_id, 'model': 'gpt-4o', 'agent_id': 'swarm',
                                                       'cost_usd': '0.01'})
            assert stored.status_code == 201, stored.text
            recorded.append(event_id)

    async def ingester(client: httpx.AsyncClient, n: int) -> None:
        for batch in range(4):
            events = [{'event_id': f'bulk-{n}-{batch}-{i}', 'model': 'gpt-4o-mini', 'agent_id': f'bulk-{i % 7}',
                       'cost_usd': '0.001'} for i in range(500)]
            response = await client.post('/usage/batch', json={'events': events})
            assert response.status_code == 200, response.text
            batches.append(response.json())

    async def run() -> None:
        async with _async_client(server) as client:
            await asyncio.gather(*(caller(client, n) for n in range(CALLERS)),
                                 *(ingester(client, n) for n in range(4)))

    asyncio.run(run())

    assert statuses and set(statuses) == {200}, 'every check got an answer'
    allowed = [a for a in answers if a['allowed']]
    assert len(allowed) == LIMIT_MICROS // COST_MICROS == len(recorded), 'exactly the limit, not a call more'
    assert len(answers) - len(allowed) == CALLERS, 'each caller stopped at its first block'
    for answer in answers:  # each decision agrees with the counters it reports
        mine = _swarm_answer(answer, swarm['id'])
        counted = mine['spent_micros'] + mine['held_micros'] + COST_MICROS
        assert (counted <= LIMIT_MICROS) == answer['allowed'] == (mine['decision'] != 'block'), answer
        if answer['allowed']:
            assert answer['reservation']['held_micros'] == COST_MICROS
    assert all(b['stored'] == 500 and b['rejected'] == 0 for b in batches) and len(batches) == 16

    with server.client() as api:  # the counters hold what the database holds
        final = api.post('/check', json={'agent_id': 'swarm'}).json()
        mine = _swarm_answer(final, swarm['id'])
        assert (mine['spent_micros'], mine['held_micros']) == (LIMIT_MICROS, 0)
        total = _swarm_answer(final, everything['id'])['spent_micros']
        assert total == LIMIT_MICROS + 16 * 500 * 1_000
        stored = api.get('/budget/summary', params={'period': 'month'}).json()
        assert stored['spent_micros'] == total


def test_ingest_backpressure_answers_503_with_retry_after_and_loses_nothing_accepted(tmp_path: Path) -> None:
    server = start_server(tmp_path, token=TOKEN, SPENDGAUGE_DAILY_LIMIT_USD='none', SPENDGAUGE_INGEST_WORKERS='1',
                          SPENDGAUGE_INGEST_QUEUE='1')
    try:
        size, count = 4000, 8
        bodies = [{'events': [{'event_id': f'b{n}-{i}', 'model': 'gpt-4o-mini', 'agent_id': f'a{n}',
                               'cost_usd': '0.001'} for i in range(size)]} for n in range(count)]
        refusals: list[httpx.Response] = []
        accepted: dict[int, dict[str, Any]] = {}
        checks: list[int] = []

        async def send(client: httpx.AsyncClient, n: int) -> None:
            while True:
                response = await client.post('/usage/batch', json=bodies[n])
                if response.status_code == 503:
                    refusals.append(response)
                    await asyncio.sleep(float(response.headers['retry-after']))
                    continue
                assert response.status_code == 200, response.text
                accepted[n] = response.json()
                return

        async def check_meanwhile(client: httpx.AsyncClient) -> None:
            while len(accepted) < count:
                checks.append((await client.post('/check', json={'agent_id': 'a0'})).status_code)
                await asyncio.sleep(0.01)

        async def run() -> None:
            async with _async_client(server) as client:
                await asyncio.gather(*(send(client, n) for n in range(count)), check_meanwhile(client))

        asyncio.run(run())
        # one runs, one waits: of 8 sent at once, the rest were refused (at least once each, until a turn was free)
        assert len(refusals) >= count - 2
        for refused in refusals:
            assert refused.headers['retry-after'] == '1'
            assert refused.json()['detail'].startswith('ingest is busy')
        assert checks and set(checks) == {200}, 'checks answered while ingest was refusing'
        assert all(accepted[n]['stored'] == size for n in range(count))
        with server.client() as api:
            again = api.post('/usage/batch', json=bodies[0]).json()  # sent again: counted once
            assert (again['stored'], again['duplicate']) == (0, size)
            total = api.get('/budget/summary', params={'period': 'month'}).json()['spent_micros']
            assert total == count * size * 1_000, 'every accepted event stored, none twice'
            assert api.get('/usage', params={'agent_id': 'a3', 'limit': 1}).json()['items']
    finally:
        server.stop()
    assert 'Traceback' not in server.log()
