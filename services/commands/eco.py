"""Eco mode: one persisted flag that agents read; each change is announced (the n8n webhook hears of it)."""
from __future__ import annotations

from services.budget import eco
from services.budget.eco import EcoState
from services.commands.base import CommandContext
from services.core.access import Actor, Role, require
from services.live.topics import EcoChanged


class EcoCommands:
    def __init__(self, ctx: CommandContext) -> None:
        self.ctx = ctx

    def switch(self, actor: Actor, on: bool, reason: str = 'manual', spent_micros: int | None = None,
               limit_micros: int | None = None) -> EcoState:
        """Switch eco mode on or off. Setting the value it has already changes nothing and announces nothing."""
        require(actor, Role.ADMIN, 'switching eco mode')
        with self.ctx.audited(actor, 'eco.switch', 'eco_mode') as (conn, entry):
            entry.before = eco.get_eco(conn)
            was_on = entry.before['eco_mode']
            state = entry.after = eco.set_eco(conn, on, reason)
            if was_on == on:
                entry.unchanged()
        if was_on == on:
            return state
        if self.ctx.counters is not None:
            self.ctx.counters.set_eco(on)
        self.ctx.publish(EcoChanged(on, state['reason'] or reason, spent_micros, limit_micros))
        return state
