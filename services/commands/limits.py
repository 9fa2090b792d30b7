"""The day, week and month budget limits that the gauge, the forecast and the reports use."""
from __future__ import annotations

from typing_extensions import TypedDict

from services.budget import limits
from services.commands.base import CommandContext
from services.core.access import Actor, Role, require
from services.core.money import micros_to_usd
from services.core.periods import PeriodName
from services.live.topics import SettingChanged


class LimitSet(TypedDict):
    period: PeriodName
    limit_micros: int
    limit_usd: str


class LimitCommands:
    def __init__(self, ctx: CommandContext) -> None:
        self.ctx = ctx

    def set(self, actor: Actor, period: PeriodName, micros: int) -> LimitSet:
        """Announced only when the stored limit changes."""
        require(actor, Role.ADMIN, 'setting a budget limit')
        with self.ctx.transaction() as conn:
            changed = limits.set_limit(conn, period, micros)
        if changed:
            self.ctx.publish(SettingChanged(f'limit.{period}'))
        return {'period': period, 'limit_micros': micros, 'limit_usd': micros_to_usd(micros)}
