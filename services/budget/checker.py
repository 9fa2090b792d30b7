"""Budget checks from in-memory counters that follow the ledger's 'usage' events exactly.

A counter is keyed by (policy id, scope key, period key). A policy without a scope value keeps one counter per
value it sees (per agent, per tag, ...); the scope key of a global policy is ''. Day/week/month periods are keyed by
their start (aware UTC), a session period by the session id, a custom range by 'custom'.

After a restart, or when the ledger corrects history (a 'usage' event without rows), the counters are rebuilt:
global/agent/provider/model scopes from the hourly rollups, the others from the events of the current period (or
of the open sessions).
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from functools import partial
from itertools import chain
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine, and_, select

from services.budget import eco
from services.budget.policies import ACTIONS, PolicyRule, list_policies
from services.commands import CommandContext, Commands
from services.core.access import SYSTEM
from services.core.money import format_usd, micros_to_usd, money
from services.core.periods import PERIODS, Period, as_utc, period_containing
from services.core.tables import AGENTS, EVENTS, SESSION_AGENTS, SESSIONS
from services.live.hub import EventHub
from services.live.topics import LiveEvent, SpendRow, SyncFinished, UsageChanged
from services.spend.reconciliation import reconcile_span
from services.spend.rollups import totals_between

log = logging.getLogger(__name__)
STEPS = ('allow', 'warn', 'throttle', 'block')
ACTION_RANK = {name: rank for rank, name in enumerate(ACTIONS)}  # ignore=0 caps at allow, ..., block=3
ROLLUP_DIMENSION = {'global': None, 'agent': 'agent_id', 'provider': 'provider', 'model': 'model'}
BILLED_SCOPES = ('global', 'provider')  # scopes that provider bills and LiteLLM pulls describe
SESSION_RETRY_S = 60  # a throttled session-period policy has no end to pace against
MAX_RETRY_S = 900  # callers re-check at least this often
SESSION_IDLE = timedelta(hours=24)  # a session without events this long leaves memory (and recounts)
PRUNE_EVERY = timedelta(minutes=10)
ALERTS = ((3, 'limit_exceeded', 'critical'), (2, 'threshold_critical', 'critical'),
          (1, 'threshold_warning', 'warning'))


@dataclass(frozen=True)
class CheckRequest:
    agent_id: str | None = None
    session_id: str | None = None
    user_id: str | None = None
    project: str | None = None
    tags: tuple[str, ...] = ()
    provider: str | None = None
    model: str | None = None
    estimated_cost_micros: int = 0


@dataclass
class _Rule:
    policy: PolicyRule
    keys: Callable[[Any], list[str]] = field(repr=False)  # the scope keys a row or request falls under
    base: dict[str, Any] = field(default_factory=dict, repr=False)  # the answer's fixed fields for this policy

    custom: Period | None = None  # the UTC range of a custom period
    cap: int = 0
    billed: bool = False  # counts the reconciled spend when it is higher than the events

    def __post_init__(self) -> None:
        p = self.policy
        self.base = {'id': p.id, 'name': p.name, 'scope': p.scope, 'period': p.period, 'action': p.action,
                     **money('limit', p.limit_micros)}
        self.cap = ACTION_RANK[p.action]
        self.billed = p.scope in BILLED_SCOPES and p.period != 'session'


def step_for(spent: int, estimate: int, policy: PolicyRule) -> int:
    """0 allow, 1 warn, 2 throttle, 3 block, before the action caps it. Block when the limit is reached already
    or this call would cross it."""
    limit = policy.limit_micros
    projected = spent + estimate
    if spent >= limit or projected > limit:
        return 3
    if projected * 100 >= limit * policy.critical_percent:
        return 2
    if projected * 100 >= limit * policy.soft_percent:
        return 1
    return 0


def _scope_keys(policy: PolicyRule) -> Callable[[Any], list[str]]:
    scope, value = policy.scope, policy.scope_value
    if scope == 'global':
        return lambda _row: ['']
    if scope == 'tag':
        if value is None:
            return lambda row: list(dict.fromkeys(row.tags))
        return lambda row: [value] if value in row.tags else []
    name = f'{scope}_id' if scope in ('agent', 'session', 'user') else scope
    if value is None:
        def each(row: Any) -> list[str]:
            found = getattr(row, name)
            return [found] if found else []
        return each

    def one(row: Any) -> list[str]:
        return [value] if getattr(row, name) == value else []
    return one


class Checker:
    def __init__(self, engine: Engine, hub: EventHub, zone: ZoneInfo, commands: Commands | None = None) -> None:
        """`commands` carry out what crossing a threshold does (alerts, pausing, eco mode); by default commands on
        this engine and hub that keep this checker in step."""
        self.engine = engine
        self.hub = hub
        self.zone = zone
        self.commands = commands or Commands(CommandContext(engine, hub, counters=self))
        self._lock = threading.Lock()
        self._rules: list[_Rule] = []
        self._counters: dict[tuple[int, str, Any], int] = {}
        self._billed: dict[tuple[int, str, Any], int] = {}  # reconciled spend of global/provider policies
        self._spans: dict[str, Period] = {}
        self._ends: dict[datetime, str] = {}  # period end -> its ISO text, computed once
        self._paused: set[str] = set()
        self._raised: set[str] = set()  # dedupe keys raised by this process: skip the database on repeats
        self._session_rules = False
        self._session_seen: dict[str, datetime] = {}  # session id -> its latest event counted
        self._unverified: dict[str, int] = {}  # sessions first seen since the last recount -> the cost applied
        self._verifying = False
        self._pruned_at = datetime.now(UTC)
        self.recounts = 0  # full recounts from the database since start
        self._unsubscribe: Callable[[], None] | None = None
        self.eco_mode = False  # kept in step by the eco command, so a check needs no query
        self._billed_due = threading.Event()  # a pull finished: re-read the reconciled spend (one thread does)
        self._billed_thread: threading.Thread | None = None
        self._stopped = threading.Event()

    # --- lifecycle ----------------------------------------------------------------------------------------------

    def start(self, now: datetime | None = None) -> None:
        """Subscribe to the hub, then build the counters from the database."""
        if self._unsubscribe is None:
            self._unsubscribe = self.hub.subscribe(self._on_event)
        self.rebuild(now)

    def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self._stopped.set()
        self._billed_due.set()
        if self._billed_thread is not None:
            self._billed_thread.join(timeout=5)
            self._billed_thread = None

    def rebuild(self, now: datetime | None = None) -> None:
        """Reload the policies and paused agents, and recount the current periods from the database. The ledger's
        writes wait meanwhile (the hub's gate), so each event is counted once: read here, or applied after."""
        now = now or datetime.now(UTC)
        with self.hub.gate.closed(), self.engine.connect() as conn:
            rules = [_Rule(p, _scope_keys(p)) for p in list_policies(conn) if p.enabled]
            for rule in rules:
                if rule.policy.period == 'custom':
                    rule.custom = self._custom_span(rule.policy)
            paused = {r.id for r in conn.execute(select(AGENTS.c.id).where(AGENTS.c.paused.is_(True)))}
            eco_mode = eco.get_eco(conn)['eco_mode']
            spans = {name: period_containing(name, now, self.zone) for name in PERIODS}
            counters: dict[tuple[int, str, Any], int] = {}
            for rule in rules:
                for (scope_key, period_key), cost in self._count(conn, rule, spans, now).items():
                    counters[(rule.policy.id, scope_key, period_key)] = cost
            billed = self._count_billed(conn, rules, spans)
            session_rules = any(r.policy.period == 'session' for r in rules)
            seen = self._recent_sessions(conn, now) if session_rules else {}
            with self._lock:
                self._spans, self._rules, self._counters, self._billed = spans, rules, counters, billed
                self._paused, self.eco_mode = paused, eco_mode
                self._session_rules, self._session_seen, self._unverified = session_rules, seen, {}
                self.recounts += 1

    def refresh_billed(self) -> None:
        """Re-read the reconciled spend (after a pull) that global and provider policies count when it is higher
        than the recorded events."""
        with self._lock:
            rules, spans = self._rules, dict(self._spans)
        with self.engine.connect() as conn:
            billed = self._count_billed(conn, rules, spans)
        with self._lock:
            if self._rules is rules:  # else a rebuild has just counted afresh
                self._billed = billed

    def _count_billed(self, conn: Connection, rules: list[_Rule], spans: dict[str, Period]) -> dict[tuple, int]:
        """Reconciled spend (the larger of recorded, pulled and billed money, per provider and day) for each
        global and provider policy of a day, week, month or custom period."""
        result: dict[tuple[int, str, Any], int] = {}
        cells: dict[Period, list[Any]] = {}
        for rule in rules:
            policy = rule.policy
            if not rule.billed:
                continue
            span = rule.custom or spans[policy.period]
            if span not in cells:
                cells[span] = reconcile_span(conn, span.start, span.end, self.zone)
            period_key = 'custom' if rule.custom else span.start
            for cell in cells[span]:
                for scope_key in rule.keys(_Values({'provider': cell.provider})):
                    key = (policy.id, scope_key, period_key)
                    result[key] = result.get(key, 0) + cell.total
        return result

    def forget_session(self, session_id: str) -> None:
        """An ended session gets no more spend: drop its session-period counters."""
        with self._lock:
            self._drop_sessions({session_id})

    def _drop_sessions(self, session_ids: set[str]) -> None:
        """Under the lock: the sessions' counters of session-period policies, and what is known of them."""
        ids = {r.policy.id for r in self._rules if r.policy.period == 'session'}
        self._counters = {k: v for k, v in self._counters.items() if not (k[0] in ids and k[2] in session_ids)}
        for sid in session_ids:
            self._session_seen.pop(sid, None)
            self._unverified.pop(sid, None)

    def set_paused(self, agent_id: str, paused: bool) -> None:
        with self._lock:
            (self._paused.add if paused else self._paused.discard)(agent_id)

    def set_eco(self, on: bool) -> None:
        self.eco_mode = on

    # --- counting -----------------------------------------------------------------------------------------------

    def _end_text(self, end: datetime) -> str:
        text = self._ends[end] = end.isoformat()
        return text

    def _span(self, name: str, now: datetime) -> Period:
        span = self._spans.get(name)
        if span is None or not span.start <= now < span.end:
            span = self._spans[name] = period_containing(name, now, self.zone)
            ids = {r.policy.id for r in self._rules if r.policy.period == name}

            def current(key: tuple[int, str, Any]) -> bool:
                return not (key[0] in ids and isinstance(key[2], datetime) and key[2] < span.start)
            self._counters = {k: v for k, v in self._counters.items() if current(k)}
            self._billed = {k: v for k, v in self._billed.items() if current(k)}
        return span

    def _custom_span(self, policy: PolicyRule) -> Period:
        assert policy.period_start is not None and policy.period_end is not None
        start = datetime.combine(policy.period_start, time(0), tzinfo=self.zone).astimezone(UTC)
        end = datetime.combine(policy.period_end + timedelta(days=1), time(0), tzinfo=self.zone).astimezone(UTC)
        return Period('custom', start, end)

    def _period_key(self, policy: PolicyRule, ts: datetime, session_id: str | None) -> Any:
        """The key of the period `ts` falls in, or None when the policy does not count it."""
        period = policy.period
        if period == 'session':
            return session_id
        if period == 'custom':
            span = self._custom_span(policy)
            return 'custom' if span.start <= ts < span.end else None
        span = self._spans.get(period)
        if span is not None and span.start <= ts < span.end:
            return span.start
        start = period_containing(period, ts, self.zone).start
        return None if span is not None and start < span.start else start  # a past period is no longer checked

    def _count(self, conn: Connection, rule: _Rule, spans: dict[str, Period],
               now: datetime) -> dict[tuple[str, Any], int]:
        policy = rule.policy
        if policy.period == 'session':
            return self._count_sessions(conn, rule, now)
        span = rule.custom or spans[policy.period]
        key = 'custom' if policy.period == 'custom' else span.start
        if policy.scope in ROLLUP_DIMENSION:
            dimension = ROLLUP_DIMENSION[policy.scope]
            group = totals_between(conn, [span.start, span.end], (dimension,) if dimension else ()).groups[0]
            result: dict[tuple[str, Any], int] = {}
            for group_key, totals in group.items():
                row = _Values({dimension: group_key[0]}) if dimension else _Values({})
                for scope_key in rule.keys(row):
                    result[(scope_key, key)] = result.get((scope_key, key), 0) + totals.cost_micros
            return result
        query = select(EVENTS.c.ts, EVENTS.c.cost_micros, EVENTS.c.agent_id, EVENTS.c.session_id,
                       EVENTS.c.user_id, EVENTS.c.project, EVENTS.c.tags, EVENTS.c.provider, EVENTS.c.model) \
            .where(EVENTS.c.ts >= span.start, EVENTS.c.ts < span.end)
        return self._sum_events(conn.execute(query), rule, lambda _row: key)

    @staticmethod
    def _live_sessions(now: datetime) -> Any:
        """The sessions session-period policies count: open, with an event within SESSION_IDLE."""
        return and_(SESSIONS.c.ended_at.is_(None), SESSIONS.c.last_event_at >= now - SESSION_IDLE)

    def _recent_sessions(self, conn: Connection, now: datetime) -> dict[str, datetime]:
        rows = conn.execute(select(SESSIONS.c.id, SESSIONS.c.last_event_at).where(self._live_sessions(now)))
        return {r.id: as_utc(r.last_event_at) for r in rows}

    def _count_sessions(self, conn: Connection, rule: _Rule, now: datetime) -> dict[tuple[str, Any], int]:
        """Session periods: the live sessions' totals (agents from session_agents, the rest from their events)."""
        policy = rule.policy
        open_ids = select(SESSIONS.c.id).where(self._live_sessions(now))
        if policy.scope == 'global' or policy.scope == 'session':
            rows = conn.execute(select(SESSIONS.c.id, SESSIONS.c.cost_micros).where(self._live_sessions(now)))
            return {(scope_key, r.id): int(r.cost_micros) for r in rows
                    for scope_key in rule.keys(_Values({'session_id': r.id}))}
        if policy.scope == 'agent':
            rows = conn.execute(select(SESSION_AGENTS.c.session_id, SESSION_AGENTS.c.agent_id,
                                       SESSION_AGENTS.c.cost_micros).where(SESSION_AGENTS.c.session_id.in_(open_ids)))
            return {(scope_key, r.session_id): int(r.cost_micros) for r in rows
                    for scope_key in rule.keys(_Values({'agent_id': r.agent_id}))}
        query = select(EVENTS.c.ts, EVENTS.c.cost_micros, EVENTS.c.agent_id, EVENTS.c.session_id,
                       EVENTS.c.user_id, EVENTS.c.project, EVENTS.c.tags, EVENTS.c.provider, EVENTS.c.model) \
            .where(and_(EVENTS.c.session_id.in_(open_ids)))
        return self._sum_events(conn.execute(query), rule, lambda row: row.session_id)

    @staticmethod
    def _sum_events(rows: Iterable[Any], rule: _Rule, period_key: Callable[[Any], Any]) -> dict[tuple[str, Any], int]:
        result: dict[tuple[str, Any], int] = {}
        for row in rows:
            row = _Values({**row._mapping, 'tags': tuple(row.tags or ())})
            key = period_key(row)
            for scope_key in rule.keys(row):
                result[(scope_key, key)] = result.get((scope_key, key), 0) + int(row.cost_micros)
        return result

    def _on_event(self, event: LiveEvent) -> None:
        if isinstance(event, SyncFinished) and event.status == 'ok':
            self._request_billed_refresh()
        if not isinstance(event, UsageChanged):
            return
        if event.rows is None:  # a correction of history: recount
            self.rebuild()
            return
        self.apply(event.rows)
        if self._session_rules and datetime.now(UTC) - self._pruned_at > PRUNE_EVERY:
            self.prune_sessions()

    def _request_billed_refresh(self) -> None:
        """Off the publishing thread (the event loop): one refresher thread, and pulls that finish while it reads
        make it read once more, not once each."""
        with self._lock:
            if self._billed_thread is None:
                self._billed_thread = threading.Thread(target=self._refresh_billed_loop, name='checker-billed',
                                                       daemon=True)
                self._billed_thread.start()
        self._billed_due.set()

    def _refresh_billed_loop(self) -> None:
        while True:
            self._billed_due.wait()
            if self._stopped.is_set():
                return
            self._billed_due.clear()
            try:
                self.refresh_billed()
            except Exception:
                log.exception('could not re-read the reconciled spend for budget checks')

    def apply(self, rows: Iterable[SpendRow]) -> None:
        """Add stored events to the counters and raise alerts for thresholds they cross."""
        crossed: list[tuple[PolicyRule, str, Any, int, int]] = []
        verify = False
        with self._lock:
            for row in rows:
                ts = as_utc(row.ts)
                if self._session_rules and row.session_id:
                    verify |= self._saw_session(row.session_id, ts, row.cost_micros)
                for rule in self._rules:
                    scope_keys = rule.keys(row)
                    if not scope_keys:
                        continue
                    period_key = self._period_key(rule.policy, ts, row.session_id)
                    if period_key is None:
                        continue
                    for scope_key in scope_keys:
                        key = (rule.policy.id, scope_key, period_key)
                        before = self._counters.get(key, 0)
                        after = self._counters[key] = before + row.cost_micros
                        if step_for(after, 0, rule.policy) > step_for(before, 0, rule.policy):
                            crossed.append((rule.policy, scope_key, period_key, before, after))
        for policy, scope_key, period_key, before, after in crossed:
            try:
                self._crossed(policy, scope_key, period_key, before, after)
            except Exception:
                log.exception('could not raise the alert for policy %s', policy.id)
        if verify:  # it closes the write gate: in this thread once its write is through
            self.hub.gate.after_passing(self._verify_sessions)

    # --- sessions in memory ---------------------------------------------------------------------------------------

    def _saw_session(self, session_id: str, ts: datetime, cost: int) -> bool:
        """Note an event of a session (under the lock). True when a new verification should start: a session not in
        memory may be new, or one that was idle for SESSION_IDLE and left memory with its spend."""
        seen = self._session_seen.get(session_id)
        if seen is None or session_id in self._unverified:
            self._unverified[session_id] = self._unverified.get(session_id, 0) + cost
        if seen is None or ts > seen:
            self._session_seen[session_id] = ts
        if session_id in self._unverified and not self._verifying:
            self._verifying = True
            return True
        return False

    def _verify_sessions(self) -> None:
        """A live session (the kind a recount counts) whose stored total is more than what this checker applied
        since it first saw it had spend before: it came back from idle, so recount. Behind the closed write gate every
        stored event has been applied, so a new session's total is exactly what was applied. Ended sessions, and
        sessions whose events are all older than SESSION_IDLE, are counted from what arrives, as before."""
        now = datetime.now(UTC)
        try:
            with self.hub.gate.closed():
                with self._lock:
                    pending = dict(self._unverified)
                stored: dict[str, int] = {}
                with self.engine.connect() as conn:
                    ids = list(pending)
                    for first in range(0, len(ids), 1000):
                        query = select(SESSIONS.c.id, SESSIONS.c.cost_micros) \
                            .where(SESSIONS.c.id.in_(ids[first:first + 1000]), self._live_sessions(now))
                        stored.update((r.id, int(r.cost_micros)) for r in conn.execute(query))
                resumed = any(int(stored.get(sid) or 0) > cost for sid, cost in pending.items())
                with self._lock:
                    self._unverified.clear()
                    self._verifying = False
            if resumed:
                self.rebuild()
        except Exception:
            with self._lock:
                self._verifying = False
            log.exception('could not verify the sessions seen for budget checks')

    def prune_sessions(self, now: datetime | None = None) -> int:
        """Forget the sessions without an event for SESSION_IDLE (their counters too); returns how many."""
        now = now or datetime.now(UTC)
        cutoff = now - SESSION_IDLE
        with self._lock:
            self._pruned_at = now
            idle = {sid for sid, ts in self._session_seen.items() if ts < cutoff}
            if idle:
                self._drop_sessions(idle)
        return len(idle)

    def spent(self, policy_id: int, scope_key: str = '', period_key: Any = None) -> int:
        with self._lock:
            if period_key is None:
                return sum(v for (pid, sk, _), v in self._counters.items() if pid == policy_id and sk == scope_key)
            return self._counters.get((policy_id, scope_key, period_key), 0)

    def current_spend(self, policy_id: int, now: datetime | None = None) -> dict[str, int]:
        """Scope key -> spend in the current period ('' for a global policy; for a session period, the costliest
        session)."""
        now = now or datetime.now(UTC)
        with self._lock:
            rule = next((r for r in self._rules if r.policy.id == policy_id), None)
            if rule is None:
                return {}
            period = rule.policy.period
            current = None if period == 'session' else 'custom' if period == 'custom' else self._span(period, now).start
            result: dict[str, int] = {}
            for (pid, scope_key, period_key), spent in chain(self._counters.items(), self._billed.items()):
                if pid == policy_id and (current is None or period_key == current):
                    result[scope_key] = max(result.get(scope_key, 0), spent)
            return result

    def counters(self) -> dict[tuple[int, str, Any], int]:
        with self._lock:
            return {k: v for k, v in self._counters.items() if v}

    # --- checking -----------------------------------------------------------------------------------------------

    def check(self, request: CheckRequest, now: datetime | None = None,
              deferred: list[Callable[[], None]] | None = None) -> dict[str, Any]:
        """The decision for this call. A block raises policy_violation alerts (a database write, once per policy
        and period): into `deferred` when given, for the caller to run off its event loop."""
        now = now or datetime.now(UTC)
        estimate = request.estimated_cost_micros
        matched: list[dict[str, Any]] = []
        reasons: list[str] = []
        decision = 0
        retry_after: int | None = None
        blocked: list[tuple[PolicyRule, str, Any, int]] = []
        spans: dict[str, tuple[Period, str]] = {}
        with self._lock:
            paused = request.agent_id is not None and request.agent_id in self._paused
            for rule in self._rules:
                policy = rule.policy
                scope_keys = rule.keys(request)
                if not scope_keys:
                    continue
                resets: str | None = None
                if policy.period == 'session':
                    if request.session_id is None:
                        continue
                    period_key, span = request.session_id, None
                elif rule.custom is not None:
                    span = rule.custom
                    if not span.start <= now < span.end:
                        continue
                    period_key, resets = 'custom', self._ends.get(span.end) or self._end_text(span.end)
                else:
                    cached = spans.get(policy.period)
                    if cached is None:
                        span = self._span(policy.period, now)
                        cached = spans[policy.period] = (span, self._ends.get(span.end) or self._end_text(span.end))
                    span, resets = cached
                    period_key = span.start
                limit = policy.limit_micros
                for scope_key in scope_keys:
                    key = (policy.id, scope_key, period_key)
                    spent = self._counters.get(key, 0)
                    if rule.billed:
                        billed = self._billed.get(key, 0)
                        if billed > spent:
                            spent = billed
                    raw = step_for(spent, estimate, policy)
                    step = raw if raw < rule.cap else rule.cap
                    remaining = limit - spent if spent < limit else 0
                    item = {**rule.base, 'scope_value': scope_key or None, 'decision': STEPS[step],
                            'spent_micros': spent, 'spent_usd': micros_to_usd(spent), 'remaining_micros': remaining,
                            'remaining_usd': micros_to_usd(remaining),
                            'percent': round(100 * spent / limit, 1) if limit else (100.0 if spent else 0.0)}
                    if resets is not None:
                        item['resets_at'] = resets
                    matched.append(item)
                    if raw:
                        reasons.append(_reason(policy, scope_key, raw, spent, estimate, step))
                        if step == 2:
                            wait = _pace_wait(spent + estimate, limit, span, now)
                            retry_after = wait if retry_after is None else max(retry_after, wait)
                        elif step == 3:
                            blocked.append((policy, scope_key, period_key, spent))
                        if step > decision:
                            decision = step
        if paused:
            decision = 3
            reasons.insert(0, f'agent {request.agent_id} is paused')
        result: dict[str, Any] = {'decision': STEPS[decision], 'allowed': decision < 3, 'reasons': reasons,
                                  'policies': matched, **money('estimated_cost', estimate), 'eco_mode': self.eco_mode}
        if decision == 2:
            result['retry_after_s'] = retry_after
        for policy, scope_key, period_key, spent in blocked:
            if _dedupe('policy_violation', policy, scope_key, period_key) in self._raised:
                continue
            job = partial(self._violation, policy, scope_key, period_key, spent, estimate, request)
            if deferred is None:
                job()
            else:
                deferred.append(job)
        return result

    # --- alerts -------------------------------------------------------------------------------------------------

    def _crossed(self, policy: PolicyRule, scope_key: str, period_key: Any, before: int, after: int) -> None:
        if policy.action == 'ignore':
            return
        step = step_for(after, 0, policy)
        pause = policy.auto_pause and policy.scope == 'agent' and bool(scope_key) and after >= policy.limit_micros
        for level, type_, severity in ALERTS:
            if step >= level > step_for(before, 0, policy):
                message = (f'{_what(policy, scope_key)}: {_usd(after)} of {_usd(policy.limit_micros)} '
                           f'({_percent(after, policy.limit_micros)}%) this {policy.period}'
                           f'{"; agent paused" if pause else ""}')
                self._raise(type_, severity, message, _dedupe(type_, policy, scope_key, period_key),
                            {'policy_id': policy.id, 'scope_key': scope_key, 'notify': list(policy.notify),
                             **money('spent', after), **money('limit', policy.limit_micros), 'paused': pause})
                break
        if policy.auto_eco and after * 100 >= policy.limit_micros * policy.soft_percent:
            self._auto_eco(policy, after)
        if pause:
            self._auto_pause(policy, scope_key, after)

    def _violation(self, policy: PolicyRule, scope_key: str, period_key: Any, spent: int, estimate: int,
                   request: CheckRequest) -> None:
        try:
            self._raise_violation(policy, scope_key, period_key, spent, estimate, request)
        except Exception:
            log.exception('could not raise the policy_violation alert for policy %s', policy.id)

    def _raise_violation(self, policy: PolicyRule, scope_key: str, period_key: Any, spent: int, estimate: int,
                         request: CheckRequest) -> None:
        message = (f'blocked by {policy.name}: {_usd(spent)} spent + {_usd(estimate)} estimated exceeds '
                   f'{_usd(policy.limit_micros)}')
        self._raise('policy_violation', 'critical', message,
                    _dedupe('policy_violation', policy, scope_key, period_key),
                    {'policy_id': policy.id, 'scope_key': scope_key, 'agent_id': request.agent_id,
                     'notify': list(policy.notify),
                     **money('spent', spent), **money('estimated_cost', estimate),
                     **money('limit', policy.limit_micros)})

    def _raise(self, type_: str, severity: Any, message: str, dedupe_key: str, data: dict[str, Any]) -> None:
        with self._lock:
            if dedupe_key in self._raised:
                return
            self._raised.add(dedupe_key)
        self.commands.alerts.raise_(SYSTEM, type_, severity, message, dedupe_key, data)

    def _auto_pause(self, policy: PolicyRule, agent_id: str, spent: int) -> None:
        with self._lock:
            if agent_id in self._paused:
                return
            self._paused.add(agent_id)
        log.warning('pausing agent %s: %s of %s (%s)', agent_id, _usd(spent), _usd(policy.limit_micros), policy.name)
        self.commands.agents.pause(SYSTEM, agent_id, reason=f'policy {policy.name}')

    def _auto_eco(self, policy: PolicyRule, spent: int) -> None:
        if self.eco_mode:
            return
        self.commands.eco.switch(SYSTEM, True, f'policy {policy.name}: soft threshold crossed', spent,
                                 policy.limit_micros)


class _Values:
    """Attribute access over a mapping, missing names as None (the matchers read rows and requests alike)."""

    __slots__ = ('_data',)

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def __getattr__(self, name: str) -> Any:
        value = self._data.get(name)
        return () if value is None and name == 'tags' else value


def _dedupe(type_: str, policy: PolicyRule, scope_key: str, period_key: Any) -> str:
    period = period_key.isoformat() if isinstance(period_key, datetime) else str(period_key)
    return f'policy:{policy.id}:{scope_key}:{period}:{type_}'


def _pace_wait(projected: int, limit: int, span: Period | None, now: datetime) -> int:
    """Seconds until an even pace through the period would allow the projected spend (1 to MAX_RETRY_S)."""
    if span is None or limit <= 0:
        return SESSION_RETRY_S
    total = (span.end - span.start).total_seconds()
    due = span.start + timedelta(seconds=total * min(1.0, projected / limit))
    return max(1, min(int((due - now).total_seconds()), span.seconds_left(now), MAX_RETRY_S))


def _percent(spent: int, limit: int) -> float:
    return round(100 * spent / limit, 1) if limit else (100.0 if spent else 0.0)


def _usd(micros: int) -> str:
    return format_usd(micros)


def _what(policy: PolicyRule, scope_key: str) -> str:
    """`daily cap (agent coder)`: the policy, and the scope value it matched (named for policies of every value)."""
    if not scope_key:
        return policy.name
    return f'{policy.name} ({scope_key if policy.scope_value else f"{policy.scope} {scope_key}"})'


def _reason(policy: PolicyRule, scope_key: str, raw: int, spent: int, estimate: int, step: int) -> str:
    what = _what(policy, scope_key)
    level = {1: f'soft threshold {policy.soft_percent}%', 2: f'critical threshold {policy.critical_percent}%',
             3: 'limit'}[raw]
    capped = '' if step == raw else f'; action {policy.action} caps it at {STEPS[step]}'
    verb = 'would cross the' if raw == 3 and spent < policy.limit_micros else 'reaches the'
    return (f'{what}: {_usd(spent)} spent + {_usd(estimate)} estimated {verb} {level} of '
            f'{_usd(policy.limit_micros)}{capped}')
