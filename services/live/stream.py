"""The live API's protocol (`GET /api/v1/ws`, app/api/routes/ws.py): topics, typed messages, and one fan-out for
every connected client.

One hub listener serves all clients. It runs on the publishing thread (an ingest worker, a command's caller), so it
only checks that some client wants the topic and hands the event to the event loop (`call_soon_threadsafe`, which
never waits). There one task turns each event into its messages, encodes each once, and offers the same text to every
client that wants its topic: a non-blocking put into the client's bounded queue. A client whose queue is full is
dropped with a close reason (`TOO_SLOW`); the others and the publisher never wait for it.

Messages are JSON objects with `type` (the topic, or hello, subscribed, ping, pong, error) and `v` (STREAM_VERSION);
README.md's "Live API (WebSocket)" lists their fields.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import orjson

from services.alerting.alerts import AlertOut
from services.core.errors import Invalid
from services.core.money import micros_to_usd, optional_usd
from services.live.hub import EventHub
from services.live.topics import AccountsChanged, AlertRaised, AlertsChanged, EcoChanged, LiveEvent, UsageChanged
from services.spend.budget import PeriodSummary
from services.usage.ledger import EventOut, event_to_dict

log = logging.getLogger(__name__)
STREAM_VERSION = 1  # in every message as `v`; a change that breaks a client raises it
USAGE_CHUNK = 50  # events per usage message: a batch of 10,000 is 200 messages, each small enough to queue
OFF_LOOP_EVENTS = 100  # larger batches are turned into messages on a worker thread, not on the event loop
MAX_PENDING = 10_000  # events waiting to be fanned out; beyond it every client is dropped (SERVER_BUSY)
BUDGET_INTERVAL_S = 0.5  # at most two budget messages a second; the last state always follows
# Close codes
POLICY = 1008  # refused: token, role, cross-site, bad topics
GOING_AWAY = 1001  # the server stops
TRY_LATER = 1013  # too many connections, or the server could not keep up
TOO_SLOW = 4000  # this client's queue filled up: it did not read fast enough


class StreamTopic(StrEnum):
    USAGE = 'usage'  # each recorded call, as GET /api/v1/usage lists it; corrections (repricing, pruning) as counts
    ALERTS = 'alerts'  # raised, acknowledged, resolved
    BUDGET = 'budget'  # today's spend against the daily limit and the decision /check gives, coalesced
    ECO = 'eco'  # eco mode switched on or off, with the reason


ALL_TOPICS = frozenset(StreamTopic)
TOPIC_NAMES = ', '.join(StreamTopic)


def parse_topics(value: str | Sequence[Any] | None) -> frozenset[StreamTopic]:
    """`usage,alerts` or ['usage', 'alerts'] -> the topics; None (not given): all of them. Raises Invalid."""
    if value is None:
        return ALL_TOPICS
    names = value.split(',') if isinstance(value, str) else value
    if not isinstance(names, Sequence) or len(names) > 2 * len(StreamTopic):
        raise Invalid(f'topics: a list of at most {2 * len(StreamTopic)} of {TOPIC_NAMES}')
    topics = set()
    for name in names:
        name = name.strip().lower() if isinstance(name, str) else name
        if name == '':
            continue
        if name not in ALL_TOPICS:
            raise Invalid(f'topics: unknown topic {str(name)[:40]!r}; choose from {TOPIC_NAMES}')
        topics.add(StreamTopic(name))
    return frozenset(topics)


def stream_topic(event: LiveEvent) -> StreamTopic | None:
    """The live API topic an event of the hub feeds (budget comes from the dashboard feed, not from here)."""
    if isinstance(event, UsageChanged):
        return StreamTopic.USAGE
    if isinstance(event, AlertRaised | AlertsChanged):
        return StreamTopic.ALERTS
    if isinstance(event, EcoChanged):
        return StreamTopic.ECO
    return None


# --- messages -------------------------------------------------------------------------------------------------------

def message(type_: str, **fields: Any) -> dict[str, Any]:
    return {'type': type_, 'v': STREAM_VERSION, **fields}


def encode(payload: Mapping[str, Any]) -> str:
    return orjson.dumps(payload).decode()


def usage_messages(event: UsageChanged) -> list[dict[str, Any]]:
    """New events, in the order they were stored (by id), in chunks of USAGE_CHUNK (`change: recorded`); or one
    `change: corrected` message for repriced, removed or another instance's events, which carries counts only."""
    if event.is_correction or not event.stored:
        return [message('usage', change='corrected', count=event.count, cost_micros=event.cost_micros,
                        cost_usd=micros_to_usd(event.cost_micros), agents=list(event.agents), remote=event.remote,
                        events=[])]
    events: list[EventOut] = [event_to_dict({**row, 'id': pk}) for pk, row in sorted(event.stored, key=_first)]
    chunks = [events[i:i + USAGE_CHUNK] for i in range(0, len(events), USAGE_CHUNK)]
    return [message('usage', change='recorded', count=len(chunk), cost_micros=(cost := sum(e['cost_micros']
                                                                                          for e in chunk)),
                    cost_usd=micros_to_usd(cost), agents=sorted({e['agent_id'] for e in chunk if e['agent_id']}),
                    remote=False, events=chunk)
            for chunk in chunks]


def _first(pair: tuple[int, Any]) -> int:
    return pair[0]


def alert_message(change: str, alert: AlertOut | Mapping[str, Any] | None, reason: str = '') -> dict[str, Any]:
    """`change`: raised, acknowledged, resolved, or changed (several alerts were counted again: `alert` is null)."""
    return message('alerts', change=change, reason=reason, alert=dict(alert) if alert is not None else None)


def eco_message(eco_mode: bool, reason: str, spent_micros: int | None = None,
                limit_micros: int | None = None, changed_at: str | None = None) -> dict[str, Any]:
    return message('eco', eco_mode=eco_mode, reason=reason, changed_at=changed_at,
                   spent_micros=spent_micros, spent_usd=optional_usd(spent_micros),
                   limit_micros=limit_micros, limit_usd=optional_usd(limit_micros))


def budget_message(summary: PeriodSummary, decision: str) -> dict[str, Any]:
    """The gauge's numbers (services/spend/budget.py's PeriodSummary, as the dashboard feed loaded them) and what
    /check answers for a call that names no agent, provider or tag."""
    return message('budget', period=summary['period'], spent_micros=summary['spent_micros'],
                   spent_usd=summary['spent_usd'], limit_micros=summary['limit_micros'],
                   limit_usd=summary['limit_usd'], remaining_micros=summary['remaining_micros'],
                   remaining_usd=summary['remaining_usd'], percent=summary['percent'], decision=decision,
                   requests=summary['requests'], resets_at=summary['resets_at'])


_BUDGET_KEYS = ('period', 'spent_micros', 'limit_micros', 'percent', 'decision', 'resets_at')


# --- clients --------------------------------------------------------------------------------------------------------

class Subscriber:
    """One connected client: its topics and its bounded queue of encoded messages. Used on the event loop only."""

    def __init__(self, topics: Collection[StreamTopic], queue_size: int) -> None:
        self.topics: frozenset[StreamTopic] = frozenset(topics)
        self.queue: asyncio.Queue[str] = asyncio.Queue(queue_size)
        self.dropped = asyncio.Event()  # set when the stream drops it; `close` says how
        self.recheck = asyncio.Event()  # set when tokens changed: the connection checks its token again
        self.close: tuple[int, str] = (1000, '')

    def offer(self, text: str) -> bool:
        """Queue a message without waiting; False when the queue is full."""
        try:
            self.queue.put_nowait(text)
        except asyncio.QueueFull:
            return False
        return True

    def drop(self, code: int, reason: str) -> None:
        if not self.dropped.is_set():
            self.close = (code, reason[:120])  # a close reason may have 123 bytes
            self.dropped.set()


class LiveStream:
    """Fans the hub's events out to the connected clients. `start` on the event loop; `join`, `leave`, `retopic`,
    `publish_budget` on it too. `watch_budget` is called when the first client wants the budget topic and returns
    the function to call when the last one leaves it; `read_alert` reads an alert by id (on a worker thread)."""

    def __init__(self, max_clients: int, queue_size: int,
                 watch_budget: Callable[[], Callable[[], None]] | None = None,
                 read_alert: Callable[[int], AlertOut | None] | None = None) -> None:
        self.max_clients = max_clients
        self.queue_size = queue_size
        self._watch_budget = watch_budget
        self._unwatch_budget: Callable[[], None] | None = None
        self._read_alert = read_alert
        self.clients: set[Subscriber] = set()
        self.wanted: Counter[StreamTopic] = Counter()  # clients per topic; read by the hub listener on any thread
        self.sent = 0  # messages queued for clients
        self.dropped = 0  # clients dropped for being too slow
        self.refused = 0  # connections refused over the limit
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: asyncio.Queue[LiveEvent] | None = None
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._budget_last: tuple[Any, ...] | None = None
        self._budget_next: dict[str, Any] | None = None
        self._budget_sent_at = 0.0
        self._budget_timer: asyncio.TimerHandle | None = None

    def start(self, hub: EventHub) -> None:
        self._loop = asyncio.get_running_loop()
        self._pending = asyncio.Queue()
        self._task = self._loop.create_task(self._fan_out())
        self._unsubscribe = hub.subscribe(self._on_event)

    async def stop(self) -> None:
        if self._unsubscribe:
            self._unsubscribe()
        if self._task and not self._task.done():
            self._task.cancel()
        if self._budget_timer:
            self._budget_timer.cancel()
        for client in list(self.clients):
            client.drop(GOING_AWAY, 'the server is stopping')
            self.leave(client)

    # --- clients -------------------------------------------------------------------------------------------------

    def join(self, topics: Collection[StreamTopic]) -> Subscriber | None:
        """A new client, or None when max_clients are connected."""
        if len(self.clients) >= self.max_clients:
            self.refused += 1
            return None
        client = Subscriber((), self.queue_size)
        self.clients.add(client)
        self.retopic(client, topics)
        return client

    def leave(self, client: Subscriber) -> None:
        if client in self.clients:
            self.retopic(client, ())
            self.clients.discard(client)

    def retopic(self, client: Subscriber, topics: Collection[StreamTopic]) -> None:
        """Change what a client hears (subscribe, unsubscribe)."""
        self.wanted.subtract(client.topics)
        client.topics = frozenset(topics)
        self.wanted.update(client.topics)
        wants_budget = self.wanted[StreamTopic.BUDGET] > 0
        if wants_budget and self._unwatch_budget is None and self._watch_budget is not None:
            self._budget_last = None  # whatever came before, the first state after a quiet spell is sent
            self._unwatch_budget = self._watch_budget()
        elif not wants_budget and self._unwatch_budget is not None:
            self._unwatch_budget()
            self._unwatch_budget = None

    def send(self, topic: StreamTopic, text: str) -> None:
        """Offer an encoded message to every client of `topic`; drop those that cannot take it."""
        for client in list(self.clients):
            if topic in client.topics:
                if client.offer(text):
                    self.sent += 1
                else:
                    self.dropped += 1
                    client.drop(TOO_SLOW, f'too slow: {self.queue_size} messages were waiting; reconnect and read '
                                          'faster')
                    self.leave(client)

    # --- budget, from the dashboard feed ----------------------------------------------------------------------

    def publish_budget(self, payload: dict[str, Any]) -> None:
        """A budget message (budget_message): sent when its numbers changed, at most once per BUDGET_INTERVAL_S;
        within the interval the latest state waits and goes out at its end."""
        if tuple(payload.get(k) for k in _BUDGET_KEYS) == self._budget_last:
            return
        self._budget_next = payload
        wait = self._budget_sent_at + BUDGET_INTERVAL_S - time.monotonic()
        if wait <= 0:
            self._flush_budget()
        elif self._budget_timer is None and self._loop is not None:
            self._budget_timer = self._loop.call_later(wait, self._flush_budget)

    def greeted(self, payload: dict[str, Any]) -> None:
        """A new client was sent this budget state: the first reload after it need not send the same again."""
        if self._budget_last is None and self._budget_next is None:
            self._budget_last = tuple(payload.get(k) for k in _BUDGET_KEYS)

    def _flush_budget(self) -> None:
        self._budget_timer = None
        payload, self._budget_next = self._budget_next, None
        if payload is None:
            return
        key = tuple(payload.get(k) for k in _BUDGET_KEYS)
        if key == self._budget_last:
            return
        self._budget_last = key
        self._budget_sent_at = time.monotonic()
        self.send(StreamTopic.BUDGET, encode(payload))

    # --- events from the hub --------------------------------------------------------------------------------------

    def _on_event(self, event: LiveEvent) -> None:  # the publishing thread: never waits
        if isinstance(event, AccountsChanged) and self.clients and self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile (shutting down)
                self._loop.call_soon_threadsafe(self._recheck_tokens)
            return
        topic = stream_topic(event)
        if topic is None or not self.wanted[topic] or self._loop is None or self._loop.is_closed():
            return
        try:
            self._loop.call_soon_threadsafe(self._enqueue, event)
        except RuntimeError:  # the loop closed meanwhile (shutting down)
            pass

    def _recheck_tokens(self) -> None:
        for client in self.clients:
            client.recheck.set()

    def _enqueue(self, event: LiveEvent) -> None:
        assert self._pending is not None
        if self._pending.qsize() >= MAX_PENDING:
            for client in list(self.clients):
                client.drop(TRY_LATER, 'the server could not keep up with the events; reconnect')
                self.leave(client)
            while not self._pending.empty():
                self._pending.get_nowait()
            return
        self._pending.put_nowait(event)

    async def _fan_out(self) -> None:
        assert self._pending is not None
        while True:
            event = await self._pending.get()
            topic = stream_topic(event)
            if topic is None or not self.wanted[topic]:
                continue
            try:
                texts = await self._messages(event)
            except Exception:
                log.exception('live API: no message for %s', type(event).__name__)
                continue
            for text in texts:
                self.send(topic, text)

    async def _messages(self, event: LiveEvent) -> list[str]:
        if isinstance(event, UsageChanged):
            if len(event.stored) > OFF_LOOP_EVENTS:
                return await asyncio.to_thread(_encoded_usage, event)
            return _encoded_usage(event)
        if isinstance(event, AlertRaised):
            return [encode(alert_message('raised', event.alert))]
        if isinstance(event, AlertsChanged):
            alert = None
            if event.alert_id is not None and self._read_alert is not None:
                alert = await asyncio.to_thread(self._read_alert, event.alert_id)
            change = event.reason if event.reason in ('acknowledged', 'resolved') and alert else 'changed'
            return [encode(alert_message(change, alert, event.reason))]
        if isinstance(event, EcoChanged):
            return [encode(eco_message(event.eco_mode, event.reason, event.spent_micros, event.limit_micros,
                                       changed_at=datetime.now(UTC).isoformat()))]
        return []


def _encoded_usage(event: UsageChanged) -> list[str]:
    return [encode(m) for m in usage_messages(event)]


def topic_list(topics: Iterable[StreamTopic]) -> list[str]:
    return sorted(topics)
