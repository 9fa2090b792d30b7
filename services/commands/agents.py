"""Pausing and resuming agents: a paused agent's every check is blocked until it is resumed."""
from __future__ import annotations

from typing_extensions import TypedDict

from services.budget import policies
from services.commands.base import CommandContext
from services.core.access import Actor, Role, require
from services.core.errors import NotFound
from services.live.topics import AgentPaused


class AgentState(TypedDict):
    agent_id: str
    paused: bool


class AgentCommands:
    def __init__(self, ctx: CommandContext) -> None:
        self.ctx = ctx

    def pause(self, actor: Actor, agent_id: str, reason: str = 'manual') -> AgentState:
        return self._set(actor, agent_id, True, reason)

    def resume(self, actor: Actor, agent_id: str, reason: str = 'manual') -> AgentState:
        return self._set(actor, agent_id, False, reason)

    def _set(self, actor: Actor, agent_id: str, paused: bool, reason: str) -> AgentState:
        require(actor, Role.ADMIN, 'pausing an agent' if paused else 'resuming an agent')
        action = 'agents.pause' if paused else 'agents.resume'
        with self.ctx.audited(actor, action, f'agent:{agent_id}') as (conn, entry):
            entry.before = {'paused': policies.agent_paused(conn, agent_id)}
            if not policies.set_agent_paused(conn, agent_id, paused):
                raise NotFound(f'agent_id: no agent {agent_id!r} has recorded usage yet')
            entry.after = {'paused': paused, 'reason': reason}
        if self.ctx.counters is not None:
            self.ctx.counters.set_paused(agent_id, paused)
        self.ctx.publish(AgentPaused(agent_id, paused, reason))
        return {'agent_id': agent_id, 'paused': paused}
