"""The budget rules, pure: which step of the ladder a spend reaches, what the policy's action caps it at, how long a
throttled caller waits, and the words for reasons and alerts. No database, no clock of its own, no locks.

One policy escalates: below soft -> allow; soft -> warn; critical -> throttle; at or over the limit, or a call that
would cross it -> block; never beyond the policy's action.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from enum import IntEnum
from typing import Any, Literal, Protocol, get_args
from zoneinfo import ZoneInfo

from services.budget.policies import PolicyRule
from services.core.display import format_usd_all
from services.core.periods import Period, clamp_days

log = logging.getLogger(__name__)
SESSION_RETRY_S = 60  # a throttled session-period policy has no end to pace against
MAX_RETRY_S = 900  # callers re-check at least this often


class Step(IntEnum):
    ALLOW = 0
    WARN = 1
    THROTTLE = 2
    BLOCK = 3

    @property
    def decision(self) -> Decision:
        return DECISIONS[self]


Decision = Literal['allow', 'warn', 'throttle', 'block']
DECISIONS: tuple[Decision, ...] = get_args(Decision)  # by step: the hot path indexes this, not the property
_ALLOW, _WARN, _THROTTLE, _BLOCK = Step  # module globals: a check looks these up for every policy


ACTION_CAP = {'ignore': Step.ALLOW, 'warn': Step.WARN, 'throttle': Step.THROTTLE, 'block': Step.BLOCK}
CROSSING_ALERTS = {  # the alert a counter raises when it reaches a step: (type, severity)
    Step.BLOCK: ('limit_exceeded', 'critical'),
    Step.THROTTLE: ('threshold_critical', 'critical'),
    Step.WARN: ('threshold_warning', 'warning'),
}


def step_for(spent: int, estimate: int, policy: PolicyRule) -> Step:
    """The step before the action caps it. Block when the limit is reached already or this call would cross it."""
    limit = policy.limit_micros
    projected = spent + estimate
    if spent >= limit or projected > limit:
        return _BLOCK
    if projected * 100 >= limit * policy.critical_percent:
        return _THROTTLE
    if projected * 100 >= limit * policy.soft_percent:
        return _WARN
    return _ALLOW


def capped(step: Step, policy: PolicyRule) -> Step:
    cap = ACTION_CAP[policy.action]
    return step if step < cap else cap


def percent(spent: int, limit: int) -> float:
    return round(100 * spent / limit, 1) if limit else (100.0 if spent else 0.0)


def pace_wait(projected: int, limit: int, span: Period | None, now: datetime) -> int:
    """Seconds until an even pace through the period would allow the projected spend (1 to MAX_RETRY_S)."""
    if span is None or limit <= 0:
        return SESSION_RETRY_S
    total = (span.end - span.start).total_seconds()
    due = span.start + timedelta(seconds=total * min(1.0, projected / limit))
    return max(1, min(int((due - now).total_seconds()), span.seconds_left(now), MAX_RETRY_S))


def custom_span(policy: PolicyRule, zone: ZoneInfo) -> Period:
    """A custom period's local days, from the first to the last inclusive, as a UTC range."""
    assert policy.period_start is not None and policy.period_end is not None
    first, last = clamp_days(policy.period_start, policy.period_end)
    if (first, last) != (policy.period_start, policy.period_end):  # stored before the bounds were checked
        log.warning('policy %s (%s): its custom period %s..%s is out of bounds; counted over %s..%s instead',
                    policy.id, policy.name, policy.period_start, policy.period_end, first, last)
    start = datetime.combine(first, time(0), tzinfo=zone).astimezone(UTC)
    end = datetime.combine(last + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)
    return Period('custom', start, end)


class Scoped(Protocol):
    """What a policy's scope is matched against: a stored event or a check request."""

    agent_id: str | None
    session_id: str | None
    user_id: str | None
    project: str | None
    tags: tuple[str, ...]
    provider: str | None
    model: str | None


def scope_keys(policy: PolicyRule) -> Callable[[Any], list[str]]:
    """The scope keys a row or request falls under: [''] for a global policy, [value] when it matches a policy with
    a scope value, every value it has for a policy of each value (per agent, per tag), [] when it does not match."""
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


def dedupe_key(type_: str, policy: PolicyRule, scope_key: str, period_key: Any) -> str:
    """One alert of a type per policy, scope value and period."""
    period = period_key.isoformat() if isinstance(period_key, datetime) else str(period_key)
    return f'policy:{policy.id}:{scope_key}:{period}:{type_}'


def what(policy: PolicyRule, scope_key: str) -> str:
    """`daily cap (agent coder)`: the policy, and the scope value it matched (named for policies of every value)."""
    if not scope_key:
        return policy.name
    return f'{policy.name} ({scope_key if policy.scope_value else f"{policy.scope} {scope_key}"})'


def reason(policy: PolicyRule, scope_key: str, raw: Step, spent: int, estimate: int, step: Step,
           held: int = 0) -> str:
    level = {Step.WARN: f'soft threshold {policy.soft_percent}%',
             Step.THROTTLE: f'critical threshold {policy.critical_percent}%', Step.BLOCK: 'limit'}[raw]
    capped_at = '' if step == raw else f'; action {policy.action} caps it at {step.decision}'
    verb = 'would cross the' if raw == Step.BLOCK and spent + held < policy.limit_micros else 'reaches the'
    spent_text, held_text, estimate_text, limit_text = format_usd_all([spent, held, estimate, policy.limit_micros])
    held_part = f' + {held_text} held' if held else ''
    return (f'{what(policy, scope_key)}: {spent_text} spent{held_part} + {estimate_text} estimated '
            f'{verb} {level} of {limit_text}{capped_at}')


def crossing_message(policy: PolicyRule, scope_key: str, spent: int, paused: bool) -> str:
    """`Agent session threshold (agent coder): $1.15 of $1.00 (115.0%) this session; agent paused`."""
    spent_text, limit_text = format_usd_all([spent, policy.limit_micros])
    return (f'{what(policy, scope_key)}: {spent_text} of {limit_text} '
            f'({percent(spent, policy.limit_micros)}%) this {policy.period}{"; agent paused" if paused else ""}')


def violation_message(policy: PolicyRule, spent: int, estimate: int) -> str:
    spent_text, estimate_text, limit_text = format_usd_all([spent, estimate, policy.limit_micros])
    return f'blocked by {policy.name}: {spent_text} spent + {estimate_text} estimated exceeds {limit_text}'
