"""The dashboard feed (app/feed.py) with a real hub, a real ledger and the real part loaders on SQLite: the leading
edge, coalescing, no reload without a listener, and reloads of only the parts a topic touches."""
from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine

from app.feed import DashboardFeed
from services import dashboard
from services.core.context import BudgetContext
from services.dashboard import ALL_PARTS, TOPIC_PARTS, DashboardConfig, DashboardSnapshot, Part, load_dashboard
from services.live import topics
from services.live.hub import EventHub
from services.live.topics import DASHBOARD_TOPICS, AlertsChanged, LiveEvent, Topic, UsageChanged
from services.usage.ledger import Ledger
from services.usage.pricing import Pricer
from tests.support.pages import settle

CONFIG = DashboardConfig(BudgetContext(ZoneInfo('UTC')))
Load = Callable[[DashboardSnapshot | None, frozenset[Part]], DashboardSnapshot]


def real_load(engine: Engine) -> Load:
    def load(previous: DashboardSnapshot | None, parts: frozenset[Part]) -> DashboardSnapshot:
        with engine.connect() as conn:
            return load_dashboard(conn, CONFIG, previous=previous, parts=parts)
    return load


@pytest.fixture
def ledger(sqlite_engine: Engine, hub: EventHub) -> Ledger:
    return Ledger(sqlite_engine, Pricer(), hub)


@pytest.fixture
def part_calls(monkeypatch: pytest.MonkeyPatch) -> Counter[Part]:
    """How often each real part loader ran."""
    calls: Counter[Part] = Counter()
    for part, load in list(dashboard.PARTS.items()):
        def counted(reading: dashboard._Reading, part: Part = part, load: Callable = load) -> dict:
            calls[part] += 1
            return load(reading)
        monkeypatch.setitem(dashboard.PARTS, part, counted)
    return calls


@pytest.fixture
async def feeds(hub: EventHub) -> AsyncIterator[Callable[..., DashboardFeed]]:
    """Started feeds on the hub, stopped at the end."""
    started: list[DashboardFeed] = []

    def start(load: Load, **options: float) -> DashboardFeed:
        feed = DashboardFeed(load, **options)
        feed.start(hub)
        started.append(feed)
        return feed
    yield start
    for feed in started:
        await feed.stop()


def record(ledger: Ledger, n: int = 1, agent: str = 'a') -> None:
    for _ in range(n):
        ledger.record({'model': 'gpt-4o', 'provider': 'openai', 'cost_usd': '0.01', 'agent_id': agent})


async def test_the_first_event_after_a_quiet_spell_reloads_at_once(sqlite_engine: Engine, ledger: Ledger,
                                                                   feeds: Callable[..., DashboardFeed]) -> None:
    feed = feeds(real_load(sqlite_engine), coalesce_s=0.05)
    seen: list[DashboardSnapshot] = []
    await feed.current()
    feed.subscribe(seen.append)
    await asyncio.sleep(0.1)  # a quiet spell
    feed.coalesce_s = 60  # from now on: a feed that waited for its window would take a minute
    before = feed.reloads
    await asyncio.to_thread(record, ledger)
    await settle(lambda: feed.reloads == before + 1, timeout=10)
    assert seen[-1].summary['spent_micros'] == 10_000
    await asyncio.to_thread(record, ledger, 50)  # within the window: they wait for its one trailing reload
    await settle(lambda: Part.TODAY in feed.stale)
    await asyncio.sleep(0.3)
    assert feed.reloads == before + 1 and seen[-1].summary['spent_micros'] == 10_000


async def test_a_burst_during_a_reload_is_one_more_reload(sqlite_engine: Engine, ledger: Ledger,
                                                         feeds: Callable[..., DashboardFeed]) -> None:
    entered, gate = threading.Event(), threading.Event()
    load = real_load(sqlite_engine)

    def held_load(previous: DashboardSnapshot | None, parts: frozenset[Part]) -> DashboardSnapshot:
        entered.set()
        assert gate.wait(10)
        return load(previous, parts)

    gate.set()
    feed = feeds(held_load, coalesce_s=0.2)
    seen: list[DashboardSnapshot] = []
    await feed.current()
    feed.subscribe(seen.append)
    before, loads = feed.reloads, []
    gate.clear()
    entered.clear()
    await asyncio.to_thread(record, ledger)
    assert await asyncio.to_thread(entered.wait, 10), 'the first event started no reload'
    await asyncio.to_thread(record, ledger, 49)  # while that reload is held: at most one more is queued
    loads.append(feed.reloads)
    gate.set()
    await settle(lambda: bool(seen) and seen[-1].summary['spent_micros'] == 500_000)
    await asyncio.sleep(0.6)  # three windows: nothing else comes
    assert loads == [before] and feed.reloads == before + 2


async def test_without_a_listener_events_only_mark_parts_stale(sqlite_engine: Engine, ledger: Ledger,
                                                               feeds: Callable[..., DashboardFeed],
                                                               part_calls: Counter[Part]) -> None:
    feed = feeds(real_load(sqlite_engine), coalesce_s=0.05)
    await feed.current()
    before = feed.reloads
    await asyncio.to_thread(record, ledger, 3)
    await settle(lambda: feed.stale == TOPIC_PARTS[Topic.USAGE])
    await asyncio.sleep(0.3)
    assert feed.reloads == before

    part_calls.clear()
    data = await feed.current()  # a page opens: the stale parts first
    assert data.summary['spent_micros'] == 30_000 and feed.reloads == before + 1
    assert set(part_calls) == TOPIC_PARTS[Topic.USAGE] and not feed.stale

    await asyncio.to_thread(record, ledger)  # after that page's current(), before it subscribes
    await settle(lambda: bool(feed.stale))
    seen: list[DashboardSnapshot] = []
    feed.subscribe(seen.append)
    await settle(lambda: bool(seen))
    assert seen[-1].summary['spent_micros'] == 40_000


async def test_the_header_bell_alone_reloads_only_the_alerts(sqlite_engine: Engine, ledger: Ledger, hub: EventHub,
                                                             feeds: Callable[..., DashboardFeed],
                                                             part_calls: Counter[Part]) -> None:
    feed = feeds(real_load(sqlite_engine), coalesce_s=0.05)
    await feed.current()
    bells: list[DashboardSnapshot] = []
    feed.subscribe(bells.append, frame=True, parts={Part.ALERTS})
    part_calls.clear()
    await asyncio.to_thread(record, ledger)
    await settle(lambda: Part.TODAY in feed.stale)
    await asyncio.sleep(0.2)
    assert not part_calls and not bells and feed.listeners == 0
    hub.publish(AlertsChanged(1, 'acknowledged'))
    await settle(lambda: bool(bells))
    assert part_calls == Counter({Part.ALERTS: 1})


EXAMPLES: dict[Topic, LiveEvent] = {
    Topic.USAGE: UsageChanged(rows=None, count=1),
    Topic.SETTINGS: topics.SettingChanged('limit.day'),
    Topic.POLICIES: topics.PoliciesChanged('created', 1),
    Topic.SESSIONS: topics.SessionEnded(('s-1',)),
    Topic.TASKS: topics.TaskChanged('t-1'),
    Topic.ECO: topics.EcoChanged(True, 'manual'),
    Topic.AGENTS: topics.AgentPaused('a', True, 'dashboard'),
    Topic.RETENTION: topics.EventsPruned(datetime(2026, 6, 1, tzinfo=UTC), 10),
    Topic.SYNC: topics.SyncFinished('openrouter_direct', 'ok'),
    Topic.ALERTS: topics.AlertsChanged(1, 'resolved'),
    Topic.ALERT_RAISED: topics.AlertRaised({'id': 1}),
    Topic.DELIVERIES: topics.DeliveryChanged(1, 'eco', 'delivered'),
    Topic.REFUSALS: topics.RequestsRefused('litellm-callback'),
}


def test_every_topic_that_reloads_the_dashboard_names_its_parts() -> None:
    assert set(TOPIC_PARTS) == set(DASHBOARD_TOPICS) == set(EXAMPLES)
    assert all(dashboard.parts_for(EXAMPLES[t]) == TOPIC_PARTS[t] != ALL_PARTS for t in EXAMPLES)
    assert dashboard.parts_for(UsageChanged(rows=None, remote=True)) == ALL_PARTS  # another instance: unsaid what


@pytest.mark.parametrize('topic', list(EXAMPLES))
async def test_a_topic_reloads_only_its_parts(topic: Topic, sqlite_engine: Engine, hub: EventHub,
                                              feeds: Callable[..., DashboardFeed],
                                              part_calls: Counter[Part]) -> None:
    feed = feeds(real_load(sqlite_engine), coalesce_s=0.05)
    seen: list[DashboardSnapshot] = []
    old = await feed.current()
    feed.subscribe(seen.append)
    part_calls.clear()
    hub.publish(EXAMPLES[topic])
    await settle(lambda: bool(seen))
    await asyncio.sleep(0.1)
    assert part_calls == Counter(dict.fromkeys(TOPIC_PARTS[topic], 1))
    new = seen[-1]  # the parts not reloaded are the very same objects
    assert (new.summary is old.summary, new.eco is old.eco) == (Part.TODAY not in TOPIC_PARTS[topic],
                                                                Part.ECO not in TOPIC_PARTS[topic])


def test_a_partial_load_equals_a_full_one_and_keeps_the_rest(sqlite_engine: Engine, ledger: Ledger) -> None:
    now = datetime.now(UTC)
    with sqlite_engine.connect() as conn:
        old = load_dashboard(conn, CONFIG, now)
    record(ledger, 2, agent='b')
    with sqlite_engine.connect() as conn:
        new = load_dashboard(conn, CONFIG, now, previous=old, parts=TOPIC_PARTS[Topic.USAGE])
        full = load_dashboard(conn, CONFIG, now)
    assert new == full and new.summary['spent_micros'] == 20_000
    assert new.eco is old.eco and new.alerts is old.alerts and new.summary is not old.summary
