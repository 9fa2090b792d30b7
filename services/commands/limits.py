"""The day, week and month budget limits: global policies (services/budget/limits.py) that the gauge, `/check`, the
alerts and the forecast all read. Every change recounts the budget counters before it is announced."""
from __future__ import annotations

from typing_extensions import TypedDict

from services.budget import limits
from services.budget.limits import LimitAction
from services.commands.base import CommandContext
from services.core.access import Actor, Role, require
from services.core.money import micros_to_usd
from services.core.periods import PeriodName
from services.live.topics import PoliciesChanged


class LimitSet(TypedDict):
    period: PeriodName
    limit_micros: int | None  # None: the limit was removed
    limit_usd: str | None
    action: str | None  # warn, throttle or block
    soft_percent: int | None
    critical_percent: int | None
    policy_id: int | None


class LimitCommands:
    def __init__(self, ctx: CommandContext) -> None:
        self.ctx = ctx

    def set(self, actor: Actor, period: PeriodName, micros: int, action: LimitAction | None = None,
            soft_percent: int | None = None, critical_percent: int | None = None) -> LimitSet:
        """What is not given stays as it was (a new limit: warn at 80 %, throttle at 95 %, block at 100 %).
        Announced only when the stored limit changes."""
        require(actor, Role.ADMIN, 'setting a budget limit')
        with self.ctx.audited(actor, 'limits.set', f'limit:{period}') as (conn, entry):
            entry.before = limits.describe(limits.limit_policy(conn, period))
            changed = limits.set_limit(conn, period, micros, action, soft_percent, critical_percent)
            stored = limits.limit_policy(conn, period)
            entry.after = limits.describe(stored)
            if not changed:
                entry.unchanged()
        if changed:
            self._changed(stored.id if stored else None)
        return _result(period, limits.describe(stored))

    def remove(self, actor: Actor, period: PeriodName) -> LimitSet:
        """No limit for the period, whatever the environment says."""
        require(actor, Role.ADMIN, 'removing a budget limit')
        with self.ctx.audited(actor, 'limits.remove', f'limit:{period}') as (conn, entry):
            entry.before = limits.describe(limits.limit_policy(conn, period))
            changed = limits.remove_limit(conn, period)
            stored = limits.limit_policy(conn, period)
            if not changed:
                entry.unchanged()
        if changed:
            self._changed(stored.id if stored else None)
        return _result(period, None)

    def _changed(self, policy_id: int | None) -> None:
        if self.ctx.counters is not None:
            self.ctx.counters.rebuild()
        self.ctx.publish(PoliciesChanged('limit', policy_id))


def _result(period: PeriodName, stored: limits.LimitOut | None) -> LimitSet:
    if stored is None:
        return {'period': period, 'limit_micros': None, 'limit_usd': None, 'action': None, 'soft_percent': None,
                'critical_percent': None, 'policy_id': None}
    return {'period': period, 'limit_micros': stored['limit_micros'], 'limit_usd': micros_to_usd(
        stored['limit_micros']), 'action': stored['action'], 'soft_percent': stored['soft_percent'],
        'critical_percent': stored['critical_percent'], 'policy_id': stored['policy_id']}
