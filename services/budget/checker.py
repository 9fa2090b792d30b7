"""Budget checks from in-memory counters (services/budget/counters.py) that follow the ledger's `UsageChanged`
events exactly, judged by the pure rules (services/budget/rules.py). What crossing a threshold does (alerts, pausing
an agent, eco mode) goes through the commands (services/commands/), like any other change of state.

After a restart, or when history changes (a `UsageChanged` without rows: repriced or removed events, another
instance's writes), the counters are recounted behind the ledger's write gate, so no event is lost or counted twice.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, NotRequired
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, select
from typing_extensions import TypedDict

from services.budget import eco
from services.budget.counters import SESSION_IDLE, Counters, Crossing, Key, PolicyAnswer, Rule, live_sessions
from services.budget.policies import PolicyRule
from services.budget.rules import (
    CROSSING_ALERTS,
    DECISIONS,
    Decision,
    Step,
    crossing_message,
    dedupe_key,
    pace_wait,
    reason,
    step_for,
    violation_message,
)
from services.commands import CommandContext, Commands
from services.core.access import SYSTEM
from services.core.money import micros_to_usd
from services.core.tables import SESSIONS
from services.live.hub import EventHub
from services.live.topics import LiveEvent, SpendRow, SyncFinished, UsageChanged

log = logging.getLogger(__name__)
ALLOW, _, THROTTLE, BLOCK = Step  # module globals: the check below compares every policy's step with these
PRUNE_EVERY = timedelta(minutes=10)
HOLD_FOR = timedelta(minutes=10)
NO_USD = micros_to_usd(0)
MAX_ANSWERS = 5_000  # answers a policy keeps for reuse (cleared when full; a recount makes new rules)
APPLY_SLICE = 250  # events added to the counters under one hold of their lock


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


class PolicyDecision(PolicyAnswer):  # id, name, scope, period, action (the furthest it goes), limit
    """One matched policy and scope value: what it decides for this call."""

    scope_value: str | None  # the value counted (the agent, the tag, ...); None for a global policy
    decision: Decision
    spent_micros: int  # in the current period, before this call
    spent_usd: str
    held_micros: int  # what reservations of other allowed calls hold until their usage arrives
    held_usd: str
    remaining_micros: int  # the limit less what is spent and held
    remaining_usd: str
    percent: float  # spent of the limit, one place
    resets_at: NotRequired[str]  # when the period ends; session periods have no end


class Reservation(TypedDict):
    event_id: str  # the usage that releases it
    held_micros: int
    held_usd: str
    expires_at: str  # ISO; released then if no usage came


class CheckResult(TypedDict):
    decision: Decision  # the strictest of the matched policies (block when the agent is paused)
    allowed: bool  # false only for block
    reasons: list[str]
    policies: list[PolicyDecision]
    estimated_cost_micros: int  # the estimate counted against what is left
    estimated_cost_usd: str
    eco_mode: bool
    retry_after_s: NotRequired[int]  # when throttled: seconds until an even pace allows the call
    reservation: NotRequired[Reservation]  # when asked for and allowed: the estimate held until the usage arrives


class Checker:
    def __init__(self, engine: Engine, hub: EventHub, zone: ZoneInfo, commands: Commands | None = None,
                 hold_for: timedelta = HOLD_FOR) -> None:
        """`commands` carry out what crossing a threshold does (alerts, pausing, eco mode); by default commands on
        this engine and hub that keep this checker in step. `hold_for`: how long a reservation waits for its usage."""
        self.engine = engine
        self.hold_for = hold_for
        self._reserving = threading.Lock()  # a reserving check reads and holds as one step
        self._expires: tuple[int, datetime, str] = (0, datetime.min.replace(tzinfo=UTC), '')
        self.hub = hub
        self.zone = zone
        self.commands = commands or Commands(CommandContext(engine, hub, counters=self))
        self.counters = Counters(zone)
        self.eco_mode = False  # kept in step by the eco command, so a check needs no query
        self.recounts = 0  # full recounts from the database since start
        self._raised: set[str] = set()  # dedupe keys raised by this process: skip the database on repeats
        self._raised_lock = threading.Lock()
        self._pruned_at = datetime.now(UTC)
        self._unsubscribe: Callable[[], None] | None = None
        self._billed_due = threading.Event()  # a pull finished: re-read the reconciled spend (one thread does)
        self._billed_thread: threading.Thread | None = None
        self._billed_lock = threading.Lock()
        self._stopped = threading.Event()

    # --- lifecycle ----------------------------------------------------------------------------------------------

    def start(self, now: datetime | None = None) -> None:
        """Subscribe to the hub, then count from the database."""
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
        """Reload the policies, paused agents and eco mode, and recount the current periods. The ledger's writes wait
        meanwhile (the hub's gate), so each event is counted once: read here, or applied after."""
        now = now or datetime.now(UTC)
        with self.hub.gate.closed(), self.engine.connect() as conn:
            self.counters.load(conn, now)
            self.eco_mode = eco.get_eco(conn)['eco_mode']
            self.recounts += 1

    def refresh_billed(self) -> None:
        """Re-read the reconciled spend that global and provider policies count when it is higher than the events,
        and act on the thresholds it crosses."""
        with self.engine.connect() as conn:
            crossed = self.counters.refresh_billed(conn)
        self._act_on(crossed)

    # --- what commands tell it (services/commands/base.py BudgetCounters) ----------------------------------------

    def set_paused(self, agent_id: str, paused: bool) -> None:
        self.counters.set_paused(agent_id, paused)

    def set_eco(self, on: bool) -> None:
        self.eco_mode = on

    def forget_session(self, session_id: str) -> None:
        self.counters.forget_sessions({session_id})

    # --- following the ledger ------------------------------------------------------------------------------------

    def _on_event(self, event: LiveEvent) -> None:
        if isinstance(event, SyncFinished) and event.status == 'ok':
            self._request_billed_refresh()
        if not isinstance(event, UsageChanged):
            return
        if event.rows is None:  # a change of history: recount
            self.rebuild()
            return
        self.apply(event.rows)
        if self.counters.has_session_rules and datetime.now(UTC) - self._pruned_at > PRUNE_EVERY:
            self.prune_sessions()

    def apply(self, rows: Iterable[SpendRow]) -> None:
        """Add stored events to the counters, and act on the thresholds they cross. A slice at a time: the counters'
        lock is let go between slices, so a check on the event loop (app/api/routes/check.py) waits for at most one
        slice of a 10,000-event batch, not for all of it (each slice is of committed events, in order)."""
        rows = rows if isinstance(rows, Sequence) else tuple(rows)
        verify = False
        for first in range(0, len(rows), APPLY_SLICE):
            crossed, more = self.counters.apply(rows[first:first + APPLY_SLICE])
            verify |= more
            self._act_on(crossed)
        if verify:  # it closes the write gate: in this thread once its write is through
            self.hub.gate.after_passing(self._verify_sessions)

    def _act_on(self, crossed: list[Crossing]) -> None:
        for crossing in crossed:
            try:
                self._crossed(crossing)
            except Exception:
                log.exception('could not act on policy %s crossing a threshold', crossing.policy.id)

    def _request_billed_refresh(self) -> None:
        """Off the publishing thread (the event loop): one refresher thread, and pulls that finish while it reads
        make it read once more, not once each."""
        with self._billed_lock:
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

    # --- sessions in memory --------------------------------------------------------------------------------------

    def _verify_sessions(self) -> None:
        """A live session (the kind a recount counts) whose stored total is more than what the counters applied since
        they first saw it had spend before: it came back from idle, so recount. Behind the closed write gate every
        stored event has been applied, so a new session's total is exactly what was applied. Ended sessions, and
        sessions whose events are all older than SESSION_IDLE, are counted from what arrives, as before."""
        now = datetime.now(UTC)
        try:
            with self.hub.gate.closed():
                pending = self.counters.take_unverified()
                stored: dict[str, int] = {}
                with self.engine.connect() as conn:
                    ids = list(pending)
                    for first in range(0, len(ids), 1000):
                        query = select(SESSIONS.c.id, SESSIONS.c.cost_micros) \
                            .where(SESSIONS.c.id.in_(ids[first:first + 1000]), live_sessions(now))
                        stored.update((r.id, int(r.cost_micros)) for r in conn.execute(query))
                resumed = any(int(stored.get(sid) or 0) > cost for sid, cost in pending.items())
                self.counters.verified()
            if resumed:
                self.rebuild()
        except Exception:
            self.counters.verification_failed()
            log.exception('could not verify the sessions seen for budget checks')

    def prune_sessions(self, now: datetime | None = None) -> int:
        """Forget the sessions without an event for SESSION_IDLE (their counters too); returns how many."""
        now = now or datetime.now(UTC)
        self._pruned_at = now
        idle = self.counters.idle_sessions(now - SESSION_IDLE)
        if idle:
            self.counters.forget_sessions(idle)
        return len(idle)

    # --- reading the counters -------------------------------------------------------------------------------------

    def spent(self, policy_id: int, scope_key: str = '', period_key: Any = None) -> int:
        return self.counters.spent(policy_id, scope_key, period_key)

    def current_spend(self, policy_id: int, now: datetime | None = None) -> dict[str, int]:
        """Scope key -> spend in the current period ('' for a global policy; for a session period, the costliest
        session)."""
        return self.counters.current_spend(policy_id, now or datetime.now(UTC))

    # --- checking -----------------------------------------------------------------------------------------------

    def check(self, request: CheckRequest, now: datetime | None = None,
              deferred: list[Callable[[], None]] | None = None, reserve: str | None = None) -> CheckResult:
        """The decision for this call. A block raises policy_violation alerts (a database write, once per policy
        and period): into `deferred` when given, for the caller to run off its event loop.

        `reserve`: the event id the call's usage will carry. When the call is allowed, its estimate is held on every
        counter it matched until that usage arrives or `hold_for` passes, and concurrent checks count it."""
        now = now or datetime.now(UTC)
        if reserve is None:
            return self._check(request, now, deferred, None)
        jobs: list[Callable[[], None]] = [] if deferred is None else deferred  # no database write under the lock
        with self._reserving:
            self.counters.release(reserve)  # a re-check of the same call replaces its hold: not counted twice
            keys: list[Key] = []
            result = self._check(request, now, jobs, keys)
            estimate = request.estimated_cost_micros
            if result['allowed'] and estimate > 0:
                expires, expires_text = self._expiry(now)
                if self.counters.hold(reserve, tuple(keys), estimate, expires):
                    result['reservation'] = {'event_id': reserve, 'held_micros': estimate,
                                             'held_usd': micros_to_usd(estimate), 'expires_at': expires_text}
                else:
                    result['reasons'].append('reservation: too many held at once; the estimate is not held')
        if deferred is None:
            for job in jobs:
                job()
        return result

    def _answer(self, rule: Rule, scope_key: str, period_key: Any, spent: int, held: int, step: Step,
                resets_at: str | None) -> PolicyDecision:
        """A policy's part of an answer. What depends on the spend alone is made once per counter state (the same
        few thousand times a second under load) and copied; what is held and the decision are filled in."""
        answers = rule.answers
        cache_key = (scope_key, period_key, spent)
        made: PolicyDecision | None = answers.get(cache_key)
        if made is None:
            limit = rule.policy.limit_micros
            made = {**rule.answer, 'scope_value': scope_key or None, 'decision': 'allow',
                    'spent_micros': spent, 'spent_usd': micros_to_usd(spent), 'held_micros': 0, 'held_usd': NO_USD,
                    'remaining_micros': 0, 'remaining_usd': NO_USD,
                    'percent': round(100 * spent / limit, 1) if limit else (100.0 if spent else 0.0)}
            if resets_at is not None:
                made['resets_at'] = resets_at
            if len(answers) >= MAX_ANSWERS:
                answers.clear()
            answers[cache_key] = made
        item = made.copy()
        item['decision'] = DECISIONS[step]
        if held:
            item['held_micros'], item['held_usd'] = held, micros_to_usd(held)
        counted = spent + held
        remaining = rule.policy.limit_micros - counted if counted < rule.policy.limit_micros else 0
        item['remaining_micros'], item['remaining_usd'] = remaining, micros_to_usd(remaining)
        return item

    def release(self, event_id: str) -> bool:
        """Let a reservation go (the call did not happen); returns whether one was held."""
        return self.counters.release(event_id)

    def _expiry(self, now: datetime) -> tuple[datetime, str]:
        """When a hold made now expires, to the next whole second, and its ISO text (made once a second)."""
        second = int(now.timestamp()) + 1
        if self._expires[0] != second:
            expires = datetime.fromtimestamp(second, UTC) + self.hold_for
            self._expires = (second, expires, expires.isoformat())
        return self._expires[1], self._expires[2]

    def _check(self, request: CheckRequest, now: datetime, deferred: list[Callable[[], None]] | None,
               keys: list[Key] | None) -> CheckResult:
        estimate = request.estimated_cost_micros
        paused, matches = self.counters.match(request, now)
        policies: list[PolicyDecision] = []
        reasons: list[str] = []
        decision = ALLOW
        retry_after: int | None = None
        blocked: list[tuple[PolicyRule, str, Any, int]] = []
        for rule, scope_key, period_key, spent, held, span, resets_at in matches:
            policy = rule.policy
            limit = policy.limit_micros
            counted = spent + held
            raw = step_for(counted, estimate, policy)
            step = raw if raw < rule.cap else rule.cap
            policies.append(self._answer(rule, scope_key, period_key, spent, held, step, resets_at))
            if keys is not None:
                keys.append((policy.id, scope_key, period_key))
            if raw:
                reasons.append(reason(policy, scope_key, raw, spent, estimate, step, held))
                if step == THROTTLE:
                    wait = pace_wait(counted + estimate, limit, span, now)
                    retry_after = wait if retry_after is None else max(retry_after, wait)
                elif step == BLOCK:
                    blocked.append((policy, scope_key, period_key, spent))
                if step > decision:
                    decision = step
        if paused:
            decision = BLOCK
            reasons.insert(0, f'agent {request.agent_id} is paused')
        result: CheckResult = {'decision': DECISIONS[decision], 'allowed': decision < BLOCK, 'reasons': reasons,
                               'policies': policies, 'estimated_cost_micros': estimate,
                               'estimated_cost_usd': micros_to_usd(estimate), 'eco_mode': self.eco_mode}
        if decision == THROTTLE and retry_after is not None:
            result['retry_after_s'] = retry_after
        for policy, scope_key, period_key, spent in blocked:
            if dedupe_key('policy_violation', policy, scope_key, period_key) in self._raised:
                continue
            job = partial(self._violation, policy, scope_key, period_key, spent, estimate, request)
            if deferred is None:
                job()
            else:
                deferred.append(job)
        return result

    # --- effects, through the commands ---------------------------------------------------------------------------

    def _crossed(self, crossing: Crossing) -> None:
        policy, scope_key, period_key, before, after = crossing
        if policy.action == 'ignore':
            return
        step = step_for(after, 0, policy)
        pause = policy.auto_pause and policy.scope == 'agent' and bool(scope_key) and after >= policy.limit_micros
        for level, (type_, severity) in CROSSING_ALERTS.items():
            if step >= level > step_for(before, 0, policy):
                self._raise(type_, severity, crossing_message(policy, scope_key, after, pause),
                            dedupe_key(type_, policy, scope_key, period_key),
                            {'policy_id': policy.id, 'scope_key': scope_key, 'notify': list(policy.notify),
                             'spent_micros': after, 'spent_usd': micros_to_usd(after),
                             'limit_micros': policy.limit_micros, 'limit_usd': micros_to_usd(policy.limit_micros),
                             'paused': pause})
                break
        if policy.auto_eco and after * 100 >= policy.limit_micros * policy.soft_percent and not self.eco_mode:
            self.commands.eco.switch(SYSTEM, True, f'policy {policy.name}: soft threshold crossed', after,
                                     policy.limit_micros)
        if pause and self.counters.set_paused(scope_key, True):
            log.warning('pausing agent %s: %s', scope_key, crossing_message(policy, scope_key, after, False))
            self.commands.agents.pause(SYSTEM, scope_key, reason=f'policy {policy.name}')

    def _violation(self, policy: PolicyRule, scope_key: str, period_key: Any, spent: int, estimate: int,
                   request: CheckRequest) -> None:
        try:
            self._raise('policy_violation', 'critical', violation_message(policy, spent, estimate),
                        dedupe_key('policy_violation', policy, scope_key, period_key),
                        {'policy_id': policy.id, 'scope_key': scope_key, 'agent_id': request.agent_id,
                         'notify': list(policy.notify), 'spent_micros': spent, 'spent_usd': micros_to_usd(spent),
                         'estimated_cost_micros': estimate, 'estimated_cost_usd': micros_to_usd(estimate),
                         'limit_micros': policy.limit_micros, 'limit_usd': micros_to_usd(policy.limit_micros)})
        except Exception:
            log.exception('could not raise the policy_violation alert for policy %s', policy.id)

    def _raise(self, type_: str, severity: Any, message: str, key: str, data: dict[str, Any]) -> None:
        with self._raised_lock:
            if key in self._raised:
                return
            self._raised.add(key)
        self.commands.alerts.raise_(SYSTEM, type_, severity, message, key, data)
