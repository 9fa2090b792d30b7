"""The live API's fan-out (services/live/stream.py) on a real event loop, a real hub and a real ledger: the events the
ledger publishes from a worker thread reach each client as the usage API shows them; a full queue drops only its
client; budget states are coalesced."""
from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import pytest

from services.core.errors import Invalid
from services.live.hub import EventHub
from services.live.stream import (
    ALL_TOPICS,
    BUDGET_INTERVAL_S,
    TOO_SLOW,
    USAGE_CHUNK,
    LiveStream,
    StreamTopic,
    Subscriber,
    message,
    parse_topics,
)
from services.live.topics import EcoChanged
from services.usage.ledger import Ledger


def test_topics_default_to_all_and_unknown_ones_are_named() -> None:
    assert parse_topics(None) == ALL_TOPICS
    assert parse_topics('') == frozenset()
    assert parse_topics(' Usage,alerts ') == {StreamTopic.USAGE, StreamTopic.ALERTS}
    assert parse_topics(['eco']) == {StreamTopic.ECO}
    with pytest.raises(Invalid, match="unknown topic 'spend'; choose from usage, alerts, budget, eco"):
        parse_topics('usage,spend')
    with pytest.raises(Invalid, match='a list of at most 8'):
        parse_topics(['usage'] * 9)
    with pytest.raises(Invalid, match='unknown topic'):
        parse_topics([1])


async def _drain(client: Subscriber) -> list[dict]:
    await asyncio.sleep(0.05)  # the fan-out task runs
    out = []
    while not client.queue.empty():
        out.append(json.loads(client.queue.get_nowait()))
    return out


async def test_a_batch_recorded_on_a_worker_thread_reaches_each_client_as_stored(ledger: Ledger, hub: EventHub) -> None:
    stream = LiveStream(max_clients=10, queue_size=64)
    stream.start(hub)
    try:
        usage, eco = stream.join({StreamTopic.USAGE}), stream.join({StreamTopic.ECO})
        assert usage is not None and eco is not None
        events = [{'model': 'gpt-4o', 'input_tokens': 10, 'output_tokens': 5, 'cost_usd': '0.000123',
                   'agent_id': 'a', 'event_id': f'e{i}'} for i in range(USAGE_CHUNK + 5)]
        results = await asyncio.to_thread(ledger.record_batch, events)  # published on that thread
        messages = await _drain(usage)
        assert [m['count'] for m in messages] == [USAGE_CHUNK, 5]
        got = [e for m in messages for e in m['events']]
        assert got == [ledger.get_event(i) for i in sorted(r.id for r in results if r.id is not None)]  # by id
        assert messages[0]['cost_usd'] == f'{USAGE_CHUNK * 123 / 1_000_000:.6f}'
        assert await _drain(eco) == []  # not its topic
        hub.publish(EcoChanged(True, 'policy p'))
        (switched,) = await _drain(eco)
        assert (switched['type'], switched['eco_mode'], switched['reason']) == ('eco', True, 'policy p')
    finally:
        await stream.stop()


async def test_a_full_queue_drops_its_client_and_no_other(hub: EventHub) -> None:
    stream = LiveStream(max_clients=10, queue_size=8)
    stream.start(hub)
    try:
        slow, fast = stream.join({StreamTopic.ECO}), stream.join({StreamTopic.ECO})
        assert slow is not None and fast is not None
        for i in range(20):
            hub.publish(EcoChanged(i % 2 == 0, f'switch {i}'))
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            while not fast.queue.empty():
                fast.queue.get_nowait()
        await asyncio.sleep(0.05)
        assert slow.dropped.is_set() and slow.close[0] == TOO_SLOW and 'too slow' in slow.close[1]
        assert not fast.dropped.is_set() and fast in stream.clients and slow not in stream.clients
        assert stream.dropped == 1 and stream.wanted[StreamTopic.ECO] == 1
    finally:
        await stream.stop()


async def test_the_connection_limit_refuses_the_next(hub: EventHub) -> None:
    stream = LiveStream(max_clients=2, queue_size=8)
    stream.start(hub)
    try:
        first, second = stream.join(ALL_TOPICS), stream.join(ALL_TOPICS)
        assert first is not None and second is not None and stream.join(ALL_TOPICS) is None
        stream.leave(first)
        assert stream.join(ALL_TOPICS) is not None and stream.refused == 1
    finally:
        await stream.stop()


async def test_budget_states_are_coalesced_and_only_changes_sent(hub: EventHub) -> None:
    watching: list[bool] = []

    def watch() -> Callable[[], None]:
        watching.append(True)
        return lambda: watching.append(False)

    stream = LiveStream(max_clients=10, queue_size=64, watch_budget=watch)
    stream.start(hub)
    try:
        client = stream.join({StreamTopic.BUDGET})
        assert client is not None and watching == [True]  # the first budget client starts the watch
        for spent in range(10):  # a burst of states: the first at once, the last after the interval
            stream.publish_budget(message('budget', period='day', spent_micros=spent, limit_micros=100,
                                          percent=float(spent), decision='allow', resets_at='t'))
        stream.publish_budget(message('budget', period='day', spent_micros=9, limit_micros=100, percent=9.0,
                                      decision='allow', resets_at='t'))  # the same again
        assert [m['spent_micros'] for m in await _drain(client)] == [0]
        await asyncio.sleep(BUDGET_INTERVAL_S + 0.1)
        assert [m['spent_micros'] for m in await _drain(client)] == [9]
        stream.leave(client)
        assert watching == [True, False]  # the last one leaving ends it
    finally:
        await stream.stop()
