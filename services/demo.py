"""The built-in demo: a simulated swarm of six agents on three providers posting usage through the ledger.

Everything it writes is marked: events have source 'demo' and metadata {'demo': true}; agent, session, task and
event ids start with 'demo-'. On first start it backfills a few days of history and creates a handful of tasks;
`clear` removes all of it (events, their share of every total, and the tasks) and nothing else.

The backfilled history and the live ticks draw their calls from one rate (`Pace.calls_per_hour`: the same level,
hour-of-day profile, day-to-day variation and share of fan-out bursts), so the first live hour looks like the
history: no false anomaly, and a forecast that holds where the swarm does.
"""
from __future__ import annotations

import asyncio
import logging
import math
import random
import uuid
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, select, update

from services.commands import CommandContext, Commands
from services.core import stored
from services.core.access import SYSTEM
from services.core.periods import as_utc, hour_floor
from services.core.tables import ALERTS, EVENTS, SETTINGS, TASKS
from services.live.topics import AlertsChanged
from services.spend.tasks import TaskExists
from services.usage.events import Channel
from services.usage.ledger import MAX_BATCH, Ledger

SOURCE = 'demo'
PREFIX = 'demo-'
PROJECT = 'demo-swarm'
STOP_TIMEOUT_S = 10
HEARTBEAT_KEY = 'demo.heartbeat'  # a running simulator stores the time here every HEARTBEAT
HEARTBEAT = timedelta(seconds=5)
# Open alerts of these types are the demo's when they name a demo agent, session or task, or cover all spend and
# were raised since its first event (clear resolves them).
SPEND_ALERTS = ('threshold_warning', 'threshold_critical', 'limit_exceeded', 'policy_violation',
                'forecast_exhaustion', 'anomaly')
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelUse:
    provider: str
    model: str
    channel: Channel
    weight: float


@dataclass(frozen=True)
class AgentProfile:
    id: str
    share: float  # of all calls
    models: tuple[ModelUse, ...]
    input_tokens: tuple[int, int]  # cached tokens included
    output_tokens: tuple[int, int]
    cached: float  # typical share of the input read from the prompt cache

    @property
    def role(self) -> str:
        return self.id.removeprefix(PREFIX)


@dataclass(frozen=True)
class DemoTask:
    id: str
    title: str
    agent_id: str
    status: str  # 'done' tasks have spend from the history, 'running' ones keep spending, 'pending' wait
    priority: int
    estimated_cost_micros: int


AGENTS = (
    AgentProfile('demo-planner', 0.05, (ModelUse('anthropic', 'claude-sonnet-4-5', 'litellm', 2),
                                        ModelUse('openai', 'gpt-4o', 'litellm', 1)),
                 (800, 2_500), (80, 300), 0.7),
    AgentProfile('demo-researcher', 0.25, (ModelUse('openrouter', 'google/gemini-2.5-flash', 'direct', 2),
                                           ModelUse('openai', 'gpt-4o-mini', 'litellm', 3)),
                 (1_000, 4_000), (80, 300), 0.3),
    AgentProfile('demo-coder', 0.21, (ModelUse('openai', 'gpt-4o-mini', 'litellm', 8),
                                      ModelUse('anthropic', 'claude-sonnet-4-5', 'direct', 1)),
                 (1_000, 3_500), (100, 500), 0.7),
    AgentProfile('demo-reviewer', 0.12, (ModelUse('anthropic', 'claude-haiku-4-5', 'litellm', 1),
                                         ModelUse('openai', 'gpt-4o-mini', 'litellm', 2)),
                 (800, 2_500), (60, 250), 0.6),
    AgentProfile('demo-tester', 0.27, (ModelUse('openai', 'gpt-4o-mini', 'litellm', 3),
                                       ModelUse('openrouter', 'google/gemini-2.5-flash', 'direct', 1)),
                 (500, 1_800), (30, 200), 0.5),
    AgentProfile('demo-writer', 0.10, (ModelUse('openai', 'gpt-4o-mini', 'direct', 4),
                                       ModelUse('anthropic', 'claude-haiku-4-5', 'direct', 1)),
                 (600, 2_000), (150, 700), 0.3),
)
DEMO_TASKS = (
    DemoTask('demo-task-sprint-plan', 'Plan the sprint backlog', 'demo-planner', 'done', 3, 300_000),
    DemoTask('demo-task-pricing-scan', 'Research competitor pricing pages', 'demo-researcher', 'running', 2,
             1_500_000),
    DemoTask('demo-task-auth-refactor', 'Refactor the auth middleware', 'demo-coder', 'running', 3, 2_000_000),
    DemoTask('demo-task-review-482', 'Review pull request #482', 'demo-reviewer', 'running', 2, 400_000),
    DemoTask('demo-task-flaky-tests', 'Fix flaky integration tests', 'demo-tester', 'running', 2, 600_000),
    DemoTask('demo-task-load-test', 'Load-test the checkout API', 'demo-tester', 'pending', 1, 800_000),
    DemoTask('demo-task-release-notes', 'Draft release notes for v2.4', 'demo-writer', 'done', 1, 250_000),
    DemoTask('demo-task-api-docs', 'Update the API reference', 'demo-writer', 'pending', 1, 500_000),
)
# Share of the busiest hour's calls in each UTC hour: a working day, with batch jobs through the night.
HOURLY = (0.3, 0.3, 0.3, 0.3, 0.3, 0.35, 0.45, 0.6, 0.8, 1.0, 1.0, 0.95, 0.75, 0.85, 1.0, 0.95, 0.9, 0.75, 0.6,
          0.5, 0.45, 0.4, 0.35, 0.3)


@dataclass(frozen=True)
class Pace:
    interval_s: float = 1.0  # between live ticks
    peak_calls_per_hour: float = 720  # at the busiest hour of an average weekday, bursts included
    burst_share: float = 0.25  # of the calls, in fan-outs: one agent firing many calls at once
    burst_calls: tuple[int, int] = (8, 20)
    history_days: int = 7  # backfilled on first start, before the live calls
    session_minutes: float = 30  # live sessions rotate after this long

    def calls_per_hour(self, at: datetime) -> float:
        """The swarm's expected calls an hour at `at`, for the history and the live ticks alike."""
        return self.peak_calls_per_hour * HOURLY[at.hour] * _day_factor(at.date())


@dataclass
class Simulator:
    ledger: Ledger
    pace: Pace = field(default_factory=Pace)
    seed: int | None = None
    session_id: str | None = None
    session_started: datetime | None = None
    commands: Commands | None = None  # ends sessions and adds the demo tasks; by default on the ledger's database
    beat_at: datetime | None = None  # when the heartbeat was last stored

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        if self.commands is None:
            self.commands = Commands(CommandContext(self.ledger.engine, self.ledger.hub))

    def prepare(self, now: datetime | None = None) -> int:
        """Create the demo tasks and, when there are no demo events yet, the history. Returns the events stored."""
        now = now or datetime.now(UTC)
        self._ensure_tasks()
        if self.pace.history_days <= 0 or has_events(self.ledger.engine, SOURCE):
            return 0
        events = list(self._history(now))
        for start in range(0, len(events), MAX_BATCH // 2):
            self.ledger.record_batch(events[start:start + MAX_BATCH // 2])
        ends: dict[str, datetime] = {}
        for e in events:
            ends[e['session_id']] = max(e['ts'], ends.get(e['session_id'], e['ts']))
        self._end_sessions(ends)
        log.info('demo: backfilled %d events over %d days', len(events), self.pace.history_days)
        return len(events)

    def tick(self, now: datetime | None = None) -> int:
        """Post one tick's calls (a burst now and then). Returns how many."""
        now = now or datetime.now(UTC)
        if self.session_started is None or now - self.session_started >= timedelta(minutes=self.pace.session_minutes):
            self.finish(now)
            self.session_id = f'demo-session-{now:%Y%m%d-%H%M}-{self.rng.getrandbits(16):04x}'
            self.session_started = now
        assert self.session_id is not None
        span = timedelta(seconds=min(self.pace.interval_s, 1.0))
        events = [self._call(agent, ts, self.session_id, self._task(agent, live=True))
                  for ts, agent in self._calls(now - span, now, self.pace.interval_s / 3600)]
        if events:
            self.ledger.record_batch(events)
        if self.beat_at is None or now - self.beat_at >= HEARTBEAT:
            with self.ledger.engine.begin() as conn:
                stored.set_value(conn, HEARTBEAT_KEY, now.isoformat())
            self.beat_at = now
        return len(events)

    def finish(self, now: datetime | None = None) -> None:
        """End the live session (a new one starts with the next tick), and say the simulator is gone."""
        if self.session_id and self.session_started:
            self._end_sessions({self.session_id: now or datetime.now(UTC)})
        self.session_id = self.session_started = None
        if self.beat_at is not None:
            with self.ledger.engine.begin() as conn:
                conn.execute(delete(SETTINGS).where(SETTINGS.c.key == HEARTBEAT_KEY))
            self.beat_at = None

    # --- generation ---------------------------------------------------------------------------------------------

    def _history(self, now: datetime) -> Iterator[dict[str, Any]]:
        hour = hour_floor(now - timedelta(days=self.pace.history_days))
        while hour < now:
            end = min(hour + timedelta(hours=1), now)
            session = f'demo-session-{hour:%Y%m%d}-{hour.hour // 6 + 1}'  # four runs a day
            recent = now - hour < timedelta(hours=36)
            for ts, agent in self._calls(hour, end, (end - hour) / timedelta(hours=1)):
                yield self._call(agent, ts, session, self._task(agent, live=False) if recent else None)
            hour = end

    def _calls(self, start: datetime, end: datetime, hours: float) -> list[tuple[datetime, AgentProfile]]:
        """The calls of `hours` of the swarm's time at `start`'s rate, spread over [start, end): single calls
        from any agent, and now and then a fan-out of one agent's calls at one moment."""
        pace, rng = self.pace, self.rng
        expected = pace.calls_per_hour(start) * hours
        spread = (end - start).total_seconds()
        calls = [(start + timedelta(seconds=rng.uniform(0, spread)), self._agent())
                 for _ in range(_poisson(rng, expected * (1 - pace.burst_share)))]
        mean_burst = sum(pace.burst_calls) / 2
        for _ in range(_poisson(rng, expected * pace.burst_share / mean_burst)):
            ts, agent = start + timedelta(seconds=rng.uniform(0, spread)), rng.choice(AGENTS)
            calls += [(ts, agent)] * rng.randint(*pace.burst_calls)
        return sorted(calls, key=lambda call: call[0])

    def _agent(self) -> AgentProfile:
        return self.rng.choices(AGENTS, weights=[a.share for a in AGENTS])[0]

    def _task(self, agent: AgentProfile, live: bool) -> str | None:
        statuses = ('running',) if live else ('running', 'done')
        tasks = [t.id for t in DEMO_TASKS if t.agent_id == agent.id and t.status in statuses]
        return self.rng.choice(tasks) if tasks and self.rng.random() < 0.75 else None

    def _call(self, agent: AgentProfile, ts: datetime, session: str, task: str | None) -> dict[str, Any]:
        rng = self.rng
        use = rng.choices(agent.models, weights=[m.weight for m in agent.models])[0]
        input_tokens = rng.randint(*agent.input_tokens)
        cache_read = cache_write = 0
        if rng.random() < 0.8:
            cache_read = int(input_tokens * agent.cached * rng.uniform(0.6, 1.0))
        elif use.provider == 'anthropic':  # Anthropic writes its prompt cache explicitly, on a miss
            cache_write = int(input_tokens * agent.cached)
        output_tokens = rng.randint(*agent.output_tokens)
        return {
            'event_id': f'demo-{uuid.uuid4().hex}', 'ts': ts, 'source': SOURCE, 'channel': use.channel,
            'provider': use.provider, 'model': use.model, 'agent_id': agent.id, 'session_id': session,
            'task_id': task, 'project': PROJECT, 'tags': ['demo', agent.role], 'input_tokens': input_tokens,
            'output_tokens': output_tokens, 'cache_read_tokens': cache_read, 'cache_write_tokens': cache_write,
            'latency_ms': int(250 + output_tokens * rng.uniform(6, 20)), 'metadata': {'demo': True},
        }

    # --- other tables -------------------------------------------------------------------------------------------

    def _ensure_tasks(self) -> None:
        assert self.commands is not None
        with self.ledger.engine.connect() as conn:
            existing: set[str] = set(conn.scalars(select(TASKS.c.id).where(TASKS.c.id.in_([t.id for t in DEMO_TASKS]))))
        for t in DEMO_TASKS:
            if t.id not in existing:
                with suppress(TaskExists):  # another instance's simulator got there first
                    self.commands.tasks.create(SYSTEM, t.title, t.id, t.agent_id, t.status, t.priority,
                                               t.estimated_cost_micros)

    def _end_sessions(self, ends: dict[str, datetime]) -> None:
        assert self.commands is not None
        self.commands.sessions.end_many(SYSTEM, ends)


def _poisson(rng: random.Random, mean: float) -> int:
    if mean <= 0:
        return 0
    if mean > 50:  # the normal approximation: Knuth's loop underflows for large means
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, count, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def _day_factor(day: date) -> float:
    """Busier and quieter days (within 20 % of the usual), the same for a date on every run; weekends are quiet."""
    factor = random.Random(day.toordinal()).uniform(0.8, 1.2)
    return factor * 0.35 if day.weekday() >= 5 else factor


def has_events(engine: Engine, source: str | None = None) -> bool:
    query = select(EVENTS.c.id).limit(1)
    if source is not None:
        query = query.where(EVENTS.c.source == source)
    with engine.connect() as conn:
        return conn.execute(query).first() is not None


def count(engine: Engine) -> int:
    """How many demo events the ledger holds."""
    with engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(EVENTS).where(EVENTS.c.source == SOURCE)) or 0


def simulator_seen(engine: Engine, now: datetime | None = None) -> timedelta | None:
    """How long ago a running simulator (of any process) last wrote to this database; None when none runs."""
    with engine.connect() as conn:
        beat = stored.get_value(conn, HEARTBEAT_KEY)
    if beat is None:
        return None
    ago = (now or datetime.now(UTC)) - as_utc(datetime.fromisoformat(beat))
    return ago if ago < 3 * HEARTBEAT else None  # older: its process died without saying so


@dataclass(frozen=True)
class Cleared:
    events: int
    alerts: int


def clear(ledger: Ledger) -> Cleared:
    """Remove every demo event with its share of the rollups and totals, and the demo tasks; resolve the demo's
    alerts (SPEND_ALERTS)."""
    with ledger.engine.connect() as conn:
        began = conn.scalar(select(func.min(EVENTS.c.created_at)).where(EVENTS.c.source == SOURCE))
    removed = ledger.remove_events(EVENTS.c.source == SOURCE)
    with ledger.engine.begin() as conn:
        conn.execute(delete(TASKS).where(TASKS.c.id.startswith(PREFIX, autoescape=True)))
        alerts = _resolve_demo_alerts(conn, began)
    if alerts:
        ledger.hub.publish(AlertsChanged(reason='demo cleared'))
    log.info('demo: removed %d events, resolved %d alerts', removed, alerts)
    return Cleared(removed, alerts)


def _resolve_demo_alerts(conn: Connection, began: datetime | None) -> int:
    """Resolve the open SPEND_ALERTS naming a demo id, and those on all spend raised since `began` (the first
    demo event was stored); returns how many."""
    found = []
    for alert in conn.execute(select(ALERTS.c.id, ALERTS.c.dedupe_key, ALERTS.c.data, ALERTS.c.created_at)
                              .where(ALERTS.c.resolved_at.is_(None), ALERTS.c.type.in_(SPEND_ALERTS))):
        data = alert.data or {}
        subjects = [str(data.get(name) or '') for name in ('scope_key', 'agent_id', 'session_id', 'task_id')]
        if any(s.startswith(PREFIX) for s in subjects) or f':{PREFIX}' in alert.dedupe_key:
            found.append(alert.id)
        elif began is not None and not any(subjects) and as_utc(alert.created_at) >= as_utc(began):
            found.append(alert.id)
    if found:
        conn.execute(update(ALERTS).where(ALERTS.c.id.in_(found)).values(resolved_at=datetime.now(UTC)))
    return len(found)


# --- the background task ----------------------------------------------------------------------------------------

@dataclass
class _Running:
    task: asyncio.Task[None]
    stopping: asyncio.Event
    simulator: Simulator


_running: _Running | None = None


def start(ledger: Ledger, only_if_empty: bool = False, *, pace: Pace | None = None, seed: int | None = None,
          commands: Commands | None = None) -> bool:
    """Run the simulator on the running event loop; with only_if_empty only when the ledger has no events at all.
    Returns whether it started."""
    global _running
    if _running is not None and not _running.task.done():
        log.info('demo: the simulator is already running')
        return False
    if only_if_empty and has_events(ledger.engine):
        log.info('demo: not started, the database already has usage events')
        return False
    simulator, stopping = Simulator(ledger, pace or Pace(), seed, commands=commands), asyncio.Event()
    task = asyncio.get_running_loop().create_task(_run(simulator, stopping), name='spendgauge-demo')
    _running = _Running(task, stopping, simulator)
    log.info('demo: simulating a swarm of %d agents (source %r)', len(AGENTS), SOURCE)
    return True


async def stop() -> None:
    """Stop the simulator after its current write; ends its live session."""
    global _running
    running, _running = _running, None
    if running is None:
        return
    running.stopping.set()
    try:
        await asyncio.wait_for(running.task, STOP_TIMEOUT_S)
    except TimeoutError:
        log.warning('demo: the simulator did not stop within %d s and was cancelled', STOP_TIMEOUT_S)


def running() -> bool:
    return _running is not None and not _running.task.done()


async def _run(simulator: Simulator, stopping: asyncio.Event) -> None:
    try:
        await asyncio.to_thread(simulator.prepare)
    except Exception:
        log.exception('demo: preparing the history failed')
    failing = False
    while not stopping.is_set():
        try:
            await asyncio.to_thread(simulator.tick)
            failing = False
        except Exception:
            if not failing:  # once per run of failures, not every second
                log.exception('demo: posting simulated calls failed')
            failing = True
        with suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), simulator.pace.interval_s)
    with suppress(Exception):
        await asyncio.to_thread(simulator.finish)
