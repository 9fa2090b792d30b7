"""A varied ten-day usage history recorded through a ledger, and what its events add up to over any edges."""
from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

from services.core.periods import local_days
from services.usage.ledger import Ledger

START = datetime(2026, 10, 20, tzinfo=UTC)  # the autumn clock change in Europe falls inside the ten days
AGENTS = ('planner', 'coder', None)
TAGS = ('nightly', 'eval', 'prod')


def history(ledger: Ledger, seed: int, count: int = 400) -> list[dict[str, Any]]:
    """`count` events over ten days (`draw`), recorded; returns them."""
    events = draw(seed, count)
    for first in range(0, count, 100):
        ledger.record_batch(events[first:first + 100])
    return events


def draw(seed: int, count: int) -> list[dict[str, Any]]:
    """`count` events over the ten days from START, at any minute, with every dimension varied."""
    rng = random.Random(seed)
    events = []
    for n in range(count):
        events.append({
            'event_id': f'e{seed}-{n}', 'ts': (START + timedelta(minutes=rng.randrange(10 * 24 * 60))).isoformat(),
            'model': rng.choice(('gpt-4o', 'claude-sonnet-4-5')), 'provider': rng.choice(('openai', 'anthropic')),
            'channel': rng.choice(('litellm', 'direct')), 'agent_id': rng.choice(AGENTS),
            'user_id': rng.choice(('ann', 'bob', None)), 'project': rng.choice(('alpha', None)),
            'session_id': f's{rng.randrange(12)}', 'tags': rng.sample(TAGS, rng.randrange(3)),
            'input_tokens': rng.randrange(5000), 'output_tokens': rng.randrange(800),
            'cost_usd': f'0.{rng.randrange(1, 99999):05d}'})
    return events


def expected(events: list[dict[str, Any]], edges: list[datetime], key: str | tuple[str, ...]) -> list[dict[Any, int]]:
    """Cost per interval and value of `key` (a tuple of names: per tuple of values), from the events themselves."""
    result: list[dict[Any, int]] = [defaultdict(int) for _ in edges[1:]]
    for event in events:
        ts = datetime.fromisoformat(event['ts'])
        value = tuple(event[k] for k in key) if isinstance(key, tuple) else event[key]
        for index, (start, end) in enumerate(pairwise(edges)):
            if start <= ts < end:
                result[index][value] += round(float(event['cost_usd']) * 1_000_000)
    return [dict(r) for r in result]


def edge_sets(zone: ZoneInfo) -> list[list[datetime]]:
    days = local_days(date(2026, 10, 28), 9, zone)
    odd = START + timedelta(hours=7, minutes=13, seconds=5)
    return [
        [start for _, start, _ in days] + [days[-1][2]],  # each local day
        [days[0][1], days[-1][2]],  # nine days as one range
        [odd, odd + timedelta(days=4, minutes=50), odd + timedelta(days=8, hours=3)],  # nowhere near midnight
        [START + timedelta(days=3, hours=h) for h in range(30)],  # hour by hour across a midnight
    ]
