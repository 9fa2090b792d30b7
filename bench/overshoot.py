"""Concurrent callers against a block policy: how far past the limit they get, with and without reservations.

    .venv/bin/python bench/overshoot.py [--callers 50] [--limit 0.77] [--cost 0.01] [--db postgresql+psycopg://...]

A real server (`python -m app serve`, SQLite in a temporary directory unless --db) with one agent policy: limit $0.77,
action block. Every caller loops: `POST /check` with the call's estimate ($0.01), and when allowed, the LLM call
(20-100 ms of latency) and `POST /usage` with what it cost; it stops at the first block. All callers use the same
agent and start together. Without reservations a check cannot see the calls allowed but not yet recorded, so the
overshoot grows with the number of callers; with `reserve: true` and the call's `event_id` every allowed estimate is
held until its usage arrives, so the overshoot is bounded by what the estimates miss. Each mode runs with exact
estimates and with costs that differ from the estimate by up to +/-20 % (the error a token estimate makes).
"""
from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.servers import Server, start_server  # noqa: E402

LATENCY_S = (0.02, 0.10)


def run(server: Server, callers: int, limit: Decimal, cost: Decimal, reserve: bool, error: float,
        seed: int) -> tuple[int, Decimal]:
    """One round on a fresh agent: (calls made, spend recorded)."""
    agent = f'swarm-{uuid.uuid4().hex[:8]}'
    with server.client() as api:
        answer = api.post('/policies', json={'name': agent, 'scope': 'agent', 'scope_value': agent,
                                             'limit_usd': str(limit), 'action': 'block'})
        answer.raise_for_status()
    start = threading.Barrier(callers)

    def caller(n: int) -> int:
        rng = random.Random(seed * 1000 + n)
        made = 0
        with httpx.Client(base_url=server.api, timeout=60) as api:
            start.wait()
            while True:
                event_id = f'{agent}-{n}-{made}'
                body: dict[str, object] = {'agent_id': agent, 'estimated_cost_usd': str(cost)}
                if reserve:
                    body.update(reserve=True, event_id=event_id)
                decision = api.post('/check', json=body).json()
                if not decision['allowed']:
                    return made
                time.sleep(rng.uniform(*LATENCY_S))  # the LLM call
                actual = (cost * Decimal(1 + rng.uniform(-error, error))).quantize(Decimal('0.000001'))
                api.post('/usage', json={'event_id': event_id, 'agent_id': agent, 'model': 'gpt-4o',
                                         'provider': 'openai', 'cost_usd': str(actual)}).raise_for_status()
                made += 1

    with ThreadPoolExecutor(callers) as pool:
        made = sum(pool.map(caller, range(callers)))
    with server.client() as api:
        items = api.get('/budget/by-agent', params={'period': 'day'}).json()['items']
    spent = next((Decimal(i['cost_usd']) for i in items if i['agent_id'] == agent), Decimal(0))
    return made, spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--callers', type=int, default=50)
    parser.add_argument('--limit', type=Decimal, default=Decimal('0.77'))
    parser.add_argument('--cost', type=Decimal, default=Decimal('0.01'))
    parser.add_argument('--db', help='a PostgreSQL URL (migrated, and used with fresh agent ids); SQLite in a '
                                     'temporary directory by default')
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(Path(tmp), args.db, SPENDGAUGE_DAILY_LIMIT_USD='none', SPENDGAUGE_LOG_LEVEL='WARNING')
        try:
            kind = 'PostgreSQL' if args.db else 'SQLite'
            print(f'{args.callers} callers on one agent, limit ${args.limit}, calls estimated at ${args.cost} '
                  f'({kind})')
            print(f'{"":34}{"calls":>7}{"recorded":>11}{"overshoot":>11}{"of the limit":>14}')
            for error in (0.0, 0.2):
                for reserve in (False, True):
                    made, spent = run(server, args.callers, args.limit, args.cost, reserve, error, seed=7)
                    over = max(Decimal(0), spent - args.limit)
                    label = f'{"reservations" if reserve else "no reservations"}, estimates ' \
                            f'{"exact" if not error else f"+/-{error:.0%}"}'
                    print(f'{label:34}{made:>7}{f"${spent:.4f}":>11}{f"${over:.4f}":>11}'
                          f'{f"{100 * over / args.limit:.1f} %":>14}')
        finally:
            server.stop()


if __name__ == '__main__':
    main()
