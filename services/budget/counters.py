"""The budget counters: spend per (policy, scope key, period key), in memory, and how they are counted from the
database.

A policy without a scope value keeps one counter per value it sees (per agent, per tag, ...); the scope key of a
global policy is ''. Day/week/month periods are keyed by their start (aware UTC), a session period by the session id,
a custom range by 'custom'. Every scope is recounted from the rollups (services/spend/rollups.py); session periods
from the live sessions' totals. Global and provider policies also keep the reconciled
spend (billed, pulled) of their period, which counts when it is higher than the events.

Reservations: an allowed check may hold its estimate on every counter it matched, under the event id its usage will
carry, until that usage is applied (or found stored by a recount) or the hold expires. Checks count what is held.

Every method takes the lock; the checker (services/budget/checker.py) decides what the numbers mean.
"""
from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import chain
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, and_, select
from typing_extensions import TypedDict

from services.budget.policies import PolicyRule, list_policies
from services.budget.rules import ACTION_CAP, Step, custom_span, scope_keys, step_for
from services.core.money import micros_to_usd
from services.core.periods import PERIODS, Period, as_utc, period_containing
from services.core.tables import AGENTS, EVENTS, SESSION_AGENTS, SESSION_SCOPES, SESSIONS
from services.live.topics import SpendRow
from services.spend.reconciliation import reconcile_span
from services.spend.rollups import SCOPE_COLUMNS, scope_spend, totals_between

ROLLUP_DIMENSION = {'global': None, 'agent': 'agent_id', 'provider': 'provider', 'model': 'model'}
BILLED_SCOPES = ('global', 'provider')  # scopes that provider bills and LiteLLM pulls describe
SESSION_IDLE = timedelta(hours=24)  # a session without events this long leaves memory (and recounts)
MAX_HOLDS = 100_000  # reservations held at once (memory stays bounded whatever callers send)
Key = tuple[int, str, Any]  # (policy id, scope key, period key)


class PolicyAnswer(TypedDict):
    """The fixed fields of a policy in a check's answer (services/budget/checker.py's PolicyDecision)."""

    id: int
    name: str
    scope: str
    period: str
    action: str  # the furthest this policy goes: ignore, warn, throttle, block
    limit_micros: int
    limit_usd: str


@dataclass(slots=True)
class Rule:
    """A policy as the counters use it."""

    policy: PolicyRule
    keys: Callable[[Any], list[str]] = field(repr=False)  # the scope keys a row or request falls under
    answer: PolicyAnswer = field(repr=False)  # the fixed fields of this policy in a check's answer
    cap: Step
    custom: Period | None = None  # the UTC range of a custom period
    billed: bool = False  # counts the reconciled spend when it is higher than the events
    # answers made for checks, by (scope key, period key, spend): the checker's to fill and bound; a recount makes
    # new rules, so an edited policy never answers with its old fields
    answers: dict[tuple[str, Any, int], Any] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, policy: PolicyRule, zone: ZoneInfo) -> Rule:
        answer: PolicyAnswer = {'id': policy.id, 'name': policy.name, 'scope': policy.scope,
                                'period': policy.period, 'action': policy.action, 'limit_micros': policy.limit_micros,
                                'limit_usd': micros_to_usd(policy.limit_micros)}
        return cls(policy, scope_keys(policy), answer, ACTION_CAP[policy.action],
                   custom_span(policy, zone) if policy.period == 'custom' else None,
                   policy.scope in BILLED_SCOPES and policy.period != 'session')


class Crossing(NamedTuple):
    """A counter that reached a higher step of its policy's ladder."""

    policy: PolicyRule
    scope_key: str
    period_key: Any
    before: int
    after: int


# A policy a check falls under: (rule, scope key, period key, spend (the events, or the reconciled spend when
# higher), what reservations hold on it, the period (None for a session), its ISO end). A plain tuple: checks build
# several of these each.
Match = tuple[Rule, str, Any, int, int, Period | None, str | None]


class Hold(NamedTuple):
    """A reservation: `amount` held on each of `keys` until `expires`. (A tuple: a check may make one.)"""

    keys: tuple[Key, ...]
    amount: int
    expires: datetime


@dataclass(slots=True)
class _State:
    rules: list[Rule]
    counters: dict[Key, int]
    billed: dict[Key, int]
    spans: dict[str, Period]
    paused: set[str]
    session_seen: dict[str, datetime]  # live session -> its latest event counted
    session_rules: bool


class Counters:
    def __init__(self, zone: ZoneInfo) -> None:
        self.zone = zone
        self._lock = threading.Lock()
        self._s = _State([], {}, {}, {}, set(), {}, False)
        self._ends: dict[datetime, str] = {}  # period end -> its ISO text, computed once
        self._unverified: dict[str, int] = {}  # sessions first seen since the last recount -> the cost applied
        self._verifying = False
        self._held: dict[Key, int] = {}  # what reservations hold per counter
        self._holds: dict[str, Hold] = {}  # by the event id the usage will carry
        self._expiring: deque[tuple[str, Hold]] = deque()  # in the order made: the first to expire first

    # --- counting from the database (the caller holds the ledger's write gate) ----------------------------------

    def load(self, conn: Connection, now: datetime) -> None:
        """Reload the policies and paused agents, and recount the current periods."""
        rules = [Rule.of(p, self.zone) for p in list_policies(conn) if p.enabled]
        paused = {r.id for r in conn.execute(select(AGENTS.c.id).where(AGENTS.c.paused.is_(True)))}
        spans: dict[str, Period] = {name: period_containing(name, now, self.zone) for name in PERIODS}
        counters: dict[Key, int] = {}
        for rule in rules:
            for (scope_key, period_key), cost in _count(conn, rule, spans, now).items():
                counters[(rule.policy.id, scope_key, period_key)] = cost
        billed = _count_billed(conn, rules, spans, self.zone)
        session_rules = any(r.policy.period == 'session' for r in rules)
        seen = _recent_sessions(conn, now) if session_rules else {}
        with self._lock:
            reserved = list(self._holds)
        arrived = _stored_event_ids(conn, reserved) if reserved else set()
        with self._lock:
            self._s = _State(rules, counters, billed, spans, paused, seen, session_rules)
            self._unverified = {}
            for event_id in arrived:  # counted above: the hold goes
                self._release(event_id)

    def refresh_billed(self, conn: Connection) -> list[Crossing]:
        """Re-read the reconciled spend (after a pull) of the global and provider policies. Returns the counters
        that it takes to a higher step (a bill above the recorded calls crosses thresholds too)."""
        with self._lock:
            state = self._s
            rules, spans = state.rules, dict(state.spans)
        billed = _count_billed(conn, rules, spans, self.zone)
        crossed: list[Crossing] = []
        with self._lock:
            if self._s is not state:  # a recount has just counted afresh
                return crossed
            policies = {rule.policy.id: rule.policy for rule in rules}
            for key, amount in billed.items():
                counted = state.counters.get(key, 0)
                before, after = max(counted, state.billed.get(key, 0)), max(counted, amount)
                policy = policies[key[0]]
                if step_for(after, 0, policy) > step_for(before, 0, policy):
                    crossed.append(Crossing(policy, key[1], key[2], before, after))
            state.billed = billed
        return crossed

    # --- following the ledger ------------------------------------------------------------------------------------

    def apply(self, rows: Iterable[SpendRow]) -> tuple[list[Crossing], bool]:
        """Add stored events. Returns the counters that reached a higher step, and whether sessions seen for the first
        time need verifying (`take_unverified`)."""
        crossed: list[Crossing] = []
        verify = False
        with self._lock:
            s = self._s
            for row in rows:
                ts = as_utc(row.ts)
                if self._holds and row.event_id in self._holds:
                    self._release(row.event_id)
                if s.session_rules and row.session_id:
                    verify |= self._saw_session(row.session_id, ts, row.cost_micros)
                for rule in s.rules:
                    keys = rule.keys(row)
                    if not keys:
                        continue
                    period_key = self._period_key(rule, ts, row.session_id)
                    if period_key is None:
                        continue
                    for scope_key in keys:
                        key = (rule.policy.id, scope_key, period_key)
                        before = s.counters.get(key, 0)
                        after = s.counters[key] = before + row.cost_micros
                        if rule.billed:  # the reconciled spend counts when higher, for alerts as for checks
                            billed = s.billed.get(key, 0)
                            before, after = max(before, billed), max(after, billed)
                        if step_for(after, 0, rule.policy) > step_for(before, 0, rule.policy):
                            crossed.append(Crossing(rule.policy, scope_key, period_key, before, after))
        return crossed, verify

    def _period_key(self, rule: Rule, ts: datetime, session_id: str | None) -> Any:
        """The key of the period `ts` falls in, or None when the policy does not count it."""
        period = rule.policy.period
        if period == 'session':
            return session_id
        if rule.custom is not None:
            return 'custom' if rule.custom.start <= ts < rule.custom.end else None
        span = self._s.spans.get(period)
        if span is not None and span.start <= ts < span.end:
            return span.start
        start = period_containing(period, ts, self.zone).start
        return None if span is not None and start < span.start else start  # a past period is no longer checked

    # --- sessions in memory --------------------------------------------------------------------------------------

    def _saw_session(self, session_id: str, ts: datetime, cost: int) -> bool:
        """Note an event of a session (under the lock). True when a new verification should start: a session not in
        memory may be new, or one that was idle for SESSION_IDLE and left memory with its spend."""
        seen = self._s.session_seen.get(session_id)
        if seen is None or session_id in self._unverified:
            self._unverified[session_id] = self._unverified.get(session_id, 0) + cost
        if seen is None or ts > seen:
            self._s.session_seen[session_id] = ts
        if session_id in self._unverified and not self._verifying:
            self._verifying = True
            return True
        return False

    def take_unverified(self) -> dict[str, int]:
        """The sessions first seen since the last verification, with the cost applied to them since."""
        with self._lock:
            return dict(self._unverified)

    def verified(self) -> None:
        with self._lock:
            self._unverified.clear()
            self._verifying = False

    def verification_failed(self) -> None:
        with self._lock:
            self._verifying = False

    def forget_sessions(self, session_ids: set[str]) -> None:
        """Ended or idle sessions get no more spend: drop their session-period counters and what is known of them."""
        with self._lock:
            s = self._s
            ids = {r.policy.id for r in s.rules if r.policy.period == 'session'}
            s.counters = {k: v for k, v in s.counters.items() if not (k[0] in ids and k[2] in session_ids)}
            for sid in session_ids:
                s.session_seen.pop(sid, None)
                self._unverified.pop(sid, None)

    def idle_sessions(self, cutoff: datetime) -> set[str]:
        with self._lock:
            return {sid for sid, ts in self._s.session_seen.items() if ts < cutoff}

    @property
    def has_session_rules(self) -> bool:
        return self._s.session_rules

    # --- paused agents -------------------------------------------------------------------------------------------

    def set_paused(self, agent_id: str, paused: bool) -> bool:
        """Returns whether this changed anything."""
        with self._lock:
            was = agent_id in self._s.paused
            (self._s.paused.add if paused else self._s.paused.discard)(agent_id)
            return was != paused

    # --- reading -------------------------------------------------------------------------------------------------

    def match(self, request: Any, now: datetime) -> tuple[bool, list[Match]]:
        """Whether the request's agent is paused, and every counter of the policies it falls under."""
        matches: list[Match] = []
        spans: dict[str, tuple[Period, str]] = {}
        with self._lock:
            s = self._s
            if self._expiring and self._expiring[0][1].expires <= now:
                self._expire(now)
            held = self._held
            paused = request.agent_id is not None and request.agent_id in s.paused
            for rule in s.rules:
                keys = rule.keys(request)
                if not keys:
                    continue
                period = rule.policy.period
                resets: str | None = None
                span: Period | None
                if period == 'session':
                    if request.session_id is None:
                        continue
                    period_key, span = request.session_id, None
                elif rule.custom is not None:
                    span = rule.custom
                    if not span.start <= now < span.end:
                        continue
                    period_key, resets = 'custom', self._ends.get(span.end) or self._end_text(span.end)
                else:
                    cached = spans.get(period)
                    if cached is None:
                        span = self._span(period, now)
                        cached = spans[period] = (span, self._ends.get(span.end) or self._end_text(span.end))
                    span, resets = cached
                    period_key = span.start
                for scope_key in keys:
                    key = (rule.policy.id, scope_key, period_key)
                    spent = s.counters.get(key, 0)
                    if rule.billed:
                        billed = s.billed.get(key, 0)
                        if billed > spent:
                            spent = billed
                    matches.append((rule, scope_key, period_key, spent, held.get(key, 0) if held else 0, span,
                                    resets))
        return paused, matches

    # --- reservations --------------------------------------------------------------------------------------------

    def hold(self, event_id: str, keys: tuple[Key, ...], amount: int, expires: datetime) -> bool:
        """Hold `amount` on each counter of `keys` for the call whose usage will carry `event_id` (a second hold
        for the same id replaces the first). False, holding nothing, when MAX_HOLDS are held already."""
        hold = Hold(keys, amount, expires)
        with self._lock:
            if event_id in self._holds:
                self._release(event_id)
            if len(self._holds) >= MAX_HOLDS:
                return False
            self._holds[event_id] = hold
            held = self._held
            for key in keys:
                held[key] = held.get(key, 0) + amount
            self._expiring.append((event_id, hold))
            if len(self._expiring) > 2 * len(self._holds) + 1000:  # mostly released ones: keep the live
                self._expiring = deque((e, h) for e, h in self._expiring if self._holds.get(e) is h)
            return True

    def release(self, event_id: str) -> bool:
        """Let a hold go (the call did not happen); returns whether there was one."""
        with self._lock:
            return self._release(event_id)

    def held(self) -> dict[str, Hold]:
        with self._lock:
            return dict(self._holds)

    def _release(self, event_id: str) -> bool:
        """Under the lock."""
        hold = self._holds.pop(event_id, None)
        if hold is None:
            return False
        for key in hold.keys:
            left = self._held.get(key, 0) - hold.amount
            if left > 0:
                self._held[key] = left
            else:
                self._held.pop(key, None)
        return True

    def _expire(self, now: datetime) -> None:
        """Under the lock: drop the holds that have expired (entries of released or replaced holds are skipped).
        Holds last the same time, so the oldest expires first."""
        while self._expiring and self._expiring[0][1].expires <= now:
            event_id, hold = self._expiring.popleft()
            if self._holds.get(event_id) is hold:
                self._release(event_id)

    def span(self, name: str, now: datetime) -> Period:
        with self._lock:
            return self._span(name, now)

    def _span(self, name: str, now: datetime) -> Period:
        """Under the lock: the current day, week or month; moving into the next one drops the last one's counters."""
        s = self._s
        span = s.spans.get(name)
        if span is None or not span.start <= now < span.end:
            span = s.spans[name] = period_containing(name, now, self.zone)
            ids = {r.policy.id for r in s.rules if r.policy.period == name}

            def current(key: Key) -> bool:
                return not (key[0] in ids and isinstance(key[2], datetime) and key[2] < span.start)
            s.counters = {k: v for k, v in s.counters.items() if current(k)}
            s.billed = {k: v for k, v in s.billed.items() if current(k)}
        return span

    def _end_text(self, end: datetime) -> str:
        text = self._ends[end] = end.isoformat()
        return text

    def rule(self, policy_id: int) -> Rule | None:
        with self._lock:
            return next((r for r in self._s.rules if r.policy.id == policy_id), None)

    def spent(self, policy_id: int, scope_key: str = '', period_key: Any = None) -> int:
        with self._lock:
            counters = self._s.counters
            if period_key is None:
                return sum(v for (pid, sk, _), v in counters.items() if pid == policy_id and sk == scope_key)
            return counters.get((policy_id, scope_key, period_key), 0)

    def current_spend(self, policy_id: int, now: datetime) -> dict[str, int]:
        """Scope key -> spend in the current period ('' for a global policy; for a session period, the costliest
        session)."""
        with self._lock:
            s = self._s
            rule = next((r for r in s.rules if r.policy.id == policy_id), None)
            if rule is None:
                return {}
            period = rule.policy.period
            current = None if period == 'session' else 'custom' if period == 'custom' else self._span(period, now).start
            result: dict[str, int] = {}
            for (pid, scope_key, period_key), spent in chain(s.counters.items(), s.billed.items()):
                if pid == policy_id and (current is None or period_key == current):
                    result[scope_key] = max(result.get(scope_key, 0), spent)
            return result

    def snapshot(self) -> dict[Key, int]:
        """Every non-zero counter (tests compare a followed and a recounted state)."""
        with self._lock:
            return {k: v for k, v in self._s.counters.items() if v}


# --- recounting --------------------------------------------------------------------------------------------------

def live_sessions(now: datetime) -> Any:
    """The sessions session-period policies count: open, with an event within SESSION_IDLE."""
    return and_(SESSIONS.c.ended_at.is_(None), SESSIONS.c.last_event_at >= now - SESSION_IDLE)


def _stored_event_ids(conn: Connection, event_ids: list[str]) -> set[str]:
    found: set[str] = set()
    for first in range(0, len(event_ids), 1000):
        query = select(EVENTS.c.event_id).where(EVENTS.c.event_id.in_(event_ids[first:first + 1000]))
        found.update(conn.execute(query).scalars())
    return found


def _recent_sessions(conn: Connection, now: datetime) -> dict[str, datetime]:
    rows = conn.execute(select(SESSIONS.c.id, SESSIONS.c.last_event_at).where(live_sessions(now)))
    return {r.id: as_utc(r.last_event_at) for r in rows}


def _count(conn: Connection, rule: Rule, spans: dict[str, Period], now: datetime) -> dict[tuple[str, Any], int]:
    policy = rule.policy
    if policy.period == 'session':
        return _count_sessions(conn, rule, now)
    span = rule.custom or spans[policy.period]
    key = 'custom' if policy.period == 'custom' else span.start
    result: dict[tuple[str, Any], int] = {}
    if policy.scope in ROLLUP_DIMENSION:
        dimension = ROLLUP_DIMENSION[policy.scope]
        group = totals_between(conn, [span.start, span.end], (dimension,) if dimension else ()).groups[0]
        spent: dict[Any, int] = {key[0] if dimension else None: totals.cost_micros for key, totals in group.items()}
    else:
        dimension = SCOPE_COLUMNS[policy.scope]
        spent = scope_spend(conn, policy.scope, span.start, span.end)
    for value, cost in spent.items():
        if not dimension:
            row = _Values({})
        else:
            row = _Values({dimension: (value,) if dimension == 'tags' else value})
        for scope_key in rule.keys(row):
            result[(scope_key, key)] = result.get((scope_key, key), 0) + cost
    return result


def _count_sessions(conn: Connection, rule: Rule, now: datetime) -> dict[tuple[str, Any], int]:
    """Session periods: the live sessions' totals, per agent (session_agents) or per user, project, tag, provider or
    model (session_scope_spend)."""
    policy = rule.policy
    open_ids = select(SESSIONS.c.id).where(live_sessions(now))
    if policy.scope == 'global' or policy.scope == 'session':
        rows = conn.execute(select(SESSIONS.c.id, SESSIONS.c.cost_micros).where(live_sessions(now)))
        return {(scope_key, r.id): int(r.cost_micros) for r in rows
                for scope_key in rule.keys(_Values({'session_id': r.id}))}
    if policy.scope == 'agent':
        return _per_session(rule, 'agent_id', conn.execute(
            select(SESSION_AGENTS.c.session_id, SESSION_AGENTS.c.agent_id, SESSION_AGENTS.c.cost_micros)
            .where(SESSION_AGENTS.c.session_id.in_(open_ids))).tuples())
    name = SCOPE_COLUMNS.get(policy.scope, policy.scope)  # the request's attribute the policy matches
    return _per_session(rule, name, conn.execute(
        select(SESSION_SCOPES.c.session_id, SESSION_SCOPES.c.value, SESSION_SCOPES.c.cost_micros)
        .where(SESSION_SCOPES.c.scope == policy.scope, SESSION_SCOPES.c.session_id.in_(open_ids))).tuples())


def _per_session(rule: Rule, name: str, rows: Iterable[tuple[str, Any, int]]) -> dict[tuple[str, Any], int]:
    """(session, value of `name`, cost) rows: the scope keys of each value worked out once (thousands of live
    sessions share a few dozen agents, users or tags)."""
    keys: dict[Any, list[str]] = {}
    result: dict[tuple[str, Any], int] = {}
    for session_id, value, cost in rows:
        scope_keys = keys.get(value)
        if scope_keys is None:
            scope_keys = keys[value] = list(rule.keys(_Values({name: (value,) if name == 'tags' else value})))
        for scope_key in scope_keys:
            result[(scope_key, session_id)] = int(cost)
    return result


def _count_billed(conn: Connection, rules: list[Rule], spans: dict[str, Period], zone: ZoneInfo) -> dict[Key, int]:
    """Reconciled spend (the larger of recorded, pulled and billed money, per provider and day) for each global and
    provider policy of a day, week, month or custom period."""
    result: dict[Key, int] = {}
    cells: dict[Period, list[Any]] = {}
    for rule in rules:
        if not rule.billed:
            continue
        span = rule.custom or spans[rule.policy.period]
        if span not in cells:
            cells[span] = reconcile_span(conn, span.start, span.end, zone)
        period_key = 'custom' if rule.custom else span.start
        for cell in cells[span]:
            for scope_key in rule.keys(_Values({'provider': cell.provider})):
                key = (rule.policy.id, scope_key, period_key)
                result[key] = result.get(key, 0) + cell.total
    return result


class _Values:
    """Attribute access over a mapping, missing names as None (the matchers read rows and requests alike)."""

    __slots__ = ('_data',)

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def __getattr__(self, name: str) -> Any:
        value = self._data.get(name)
        return () if value is None and name == 'tags' else value
