"""The day, week and month budget limits. Each is a global policy of its period, with the ladder of any policy (warn
at 80 %, throttle at 95 %, block at 100 % by default), so the figure the gauge shows is the one `/check`, the
alerts and the forecast use.

A limit comes from the environment (origin 'env': SPENDGAUGE_DAILY_LIMIT_USD, DAILY_/WEEKLY_/MONTHLY_BUDGET_LIMIT,
re-synced on every start) until one is set at run time (origin 'limit': `set-limit`, `PUT /budget/limits/{period}`,
the Budget settings panel), which then wins over the environment for good; a limit removed at run time is kept as
a disabled policy, so the environment does not bring it back. (They were `settings` rows before migration 0008.)
"""
from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Connection, bindparam, delete, insert, select, update
from typing_extensions import TypedDict

from services.budget.policies import PolicyRule, validate
from services.core.errors import Invalid
from services.core.money import MAX_MICROS, micros_to_usd
from services.core.periods import PERIODS
from services.core.settings import LIMIT_ACTIONS, LimitAction
from services.core.tables import POLICIES

MAX_LIMIT_MICROS = MAX_MICROS
NAMES = {'day': 'Daily budget', 'week': 'Weekly budget', 'month': 'Monthly budget'}
RUNTIME, ENVIRONMENT = 'limit', 'env'
ORIGINS = (RUNTIME, ENVIRONMENT)
DEFAULT_ACTION: LimitAction = 'block'
DEFAULT_SOFT, DEFAULT_CRITICAL = 80, 95


class LimitOut(TypedDict):
    limit_micros: int
    limit_usd: str
    action: str  # the furthest step: warn, throttle or block
    soft_percent: int  # warn from here
    critical_percent: int  # throttle from here (when the action allows)
    policy_id: int  # the global policy that enforces it
    origin: str  # env (from the environment) or limit (set at run time)


class Limits(TypedDict):
    day: LimitOut | None  # None: no limit for the period
    week: LimitOut | None
    month: LimitOut | None


_LIMIT_POLICIES = select(POLICIES).where(POLICIES.c.origin.in_(ORIGINS), POLICIES.c.scope == 'global',
                                         POLICIES.c.period == bindparam('period'))  # read on every live reload


def limit_policy(conn: Connection, period: str) -> PolicyRule | None:
    """The policy that holds the period's limit (the run-time one when both exist), enabled or not."""
    rows = conn.execute(_LIMIT_POLICIES, {'period': period}).all()
    found = sorted((PolicyRule.from_row(r) for r in rows), key=lambda p: (p.origin != RUNTIME, p.id))
    return found[0] if found else None


def get_limit(conn: Connection, period: str) -> int | None:
    """The budget limit for a period in micro-USD; None when there is none."""
    policy = limit_policy(conn, period)
    return policy.limit_micros if policy is not None and policy.enabled else None


def describe(policy: PolicyRule | None) -> LimitOut | None:
    if policy is None or not policy.enabled:
        return None
    return {'limit_micros': policy.limit_micros, 'limit_usd': micros_to_usd(policy.limit_micros),
            'action': policy.action, 'soft_percent': policy.soft_percent,
            'critical_percent': policy.critical_percent, 'policy_id': policy.id, 'origin': policy.origin}


def get_limits(conn: Connection) -> Limits:
    return {'day': describe(limit_policy(conn, 'day')), 'week': describe(limit_policy(conn, 'week')),
            'month': describe(limit_policy(conn, 'month'))}


def _checked_period(period: str) -> None:
    if period not in PERIODS:
        raise Invalid(f'period must be one of {", ".join(PERIODS)}, got {period!r}')


def _row(period: str, micros: int, action: str, soft: int, critical: int) -> dict[str, object]:
    if not 0 <= micros <= MAX_LIMIT_MICROS:
        raise Invalid(f'limit must be between $0 and ${MAX_LIMIT_MICROS // 1_000_000:,}')
    if action not in LIMIT_ACTIONS:
        raise Invalid(f'action must be one of {", ".join(LIMIT_ACTIONS)}, got {action!r}')
    policy = validate({'name': NAMES[period], 'period': period, 'limit_usd': micros_to_usd(micros),
                       'soft_percent': soft, 'critical_percent': critical, 'action': action})
    return policy.row()


def set_limit(conn: Connection, period: str, micros: int, action: str | None = None,
              soft_percent: int | None = None, critical_percent: int | None = None) -> bool:
    """Store the limit set at run time (what is not given stays as it was); returns whether anything changed."""
    _checked_period(period)
    current = limit_policy(conn, period)
    keep = current if current is not None and current.enabled else None
    row = _row(period, micros, action or (keep.action if keep else DEFAULT_ACTION),
               soft_percent or (keep.soft_percent if keep else DEFAULT_SOFT),
               critical_percent or (keep.critical_percent if keep else DEFAULT_CRITICAL))
    if keep is not None and keep.origin == RUNTIME and (keep.limit_micros, keep.action, keep.soft_percent,
                                                         keep.critical_percent) == (
            row['limit_micros'], row['action'], row['soft_percent'], row['critical_percent']):
        return False
    _store_runtime(conn, current, row)
    return True


def remove_limit(conn: Connection, period: str) -> bool:
    """No limit for the period from now on, whatever the environment says; returns whether there was one."""
    _checked_period(period)
    current = limit_policy(conn, period)
    if current is None or not current.enabled:
        return False
    _store_runtime(conn, current, {**_row(period, current.limit_micros, current.action, current.soft_percent,
                                         current.critical_percent), 'enabled': False})
    return True


def _store_runtime(conn: Connection, current: PolicyRule | None, row: dict[str, object]) -> None:
    """Store `row` as the period's limit set at run time: into its `current` policy, taken over from the environment
    when it came from there (same id, so its alerts keep their dedupe keys), or as a new one."""
    now = datetime.now(UTC)
    if current is None:
        conn.execute(insert(POLICIES).values(**row, origin=RUNTIME, created_at=now, updated_at=now))
    else:
        conn.execute(update(POLICIES).where(POLICIES.c.id == current.id).values(**row, origin=RUNTIME,
                                                                                 updated_at=now))


def sync_environment(conn: Connection, wanted: dict[str, int], action: str) -> None:
    """Make the limits from the environment (period -> micro-USD) match it, except where one was set at run time.
    A limit keeps its policy id across starts, and so its alerts' dedupe keys."""
    now = datetime.now(UTC)
    for period in PERIODS:
        current = limit_policy(conn, period)
        if current is not None and current.origin == RUNTIME:
            continue
        micros = wanted.get(period)
        if micros is None:
            if current is not None:
                conn.execute(delete(POLICIES).where(POLICIES.c.id == current.id))
            continue
        row = _row(period, micros, action, DEFAULT_SOFT, DEFAULT_CRITICAL)
        if current is not None:
            conn.execute(update(POLICIES).where(POLICIES.c.id == current.id).values(**row, updated_at=now))
        else:
            conn.execute(insert(POLICIES).values(**row, origin=ENVIRONMENT, created_at=now, updated_at=now))
