"""Budget policies and the Budget settings thresholds (policies of origin 'panel'). Every change recounts the
budget counters from the database before it is announced, so the next check follows the new rules."""
from __future__ import annotations

from decimal import Decimal
from typing import Any

from services.budget import policies, thresholds
from services.budget.policies import PolicyIn, PolicyRule
from services.budget.thresholds import Thresholds
from services.commands.base import CommandContext
from services.core.access import Actor, Role, require
from services.live.topics import PoliciesChanged


class PolicyCommands:
    def __init__(self, ctx: CommandContext) -> None:
        self.ctx = ctx

    def create(self, actor: Actor, policy: PolicyIn | dict[str, Any]) -> PolicyRule:
        require(actor, Role.ADMIN, 'adding a policy')
        checked = policy if isinstance(policy, PolicyIn) else policies.validate(policy)
        with self.ctx.audited(actor, 'policies.create', f'policy:{checked.name}') as (conn, entry):
            created = entry.after = policies.create_policy(conn, checked)
        self._changed('created', created.id)
        return created

    def update(self, actor: Actor, policy_id: int, changes: dict[str, Any]) -> PolicyRule:
        """Change some fields; the result is validated as a whole policy."""
        require(actor, Role.ADMIN, 'changing a policy')
        with self.ctx.audited(actor, 'policies.update', f'policy:{policy_id}') as (conn, entry):
            entry.before = policies.get_policy(conn, policy_id)
            updated = entry.after = policies.update_policy(conn, policy_id, changes)
        self._changed('updated', policy_id)
        return updated

    def delete(self, actor: Actor, policy_id: int) -> None:
        require(actor, Role.ADMIN, 'deleting a policy')
        with self.ctx.audited(actor, 'policies.delete', f'policy:{policy_id}') as (conn, entry):
            entry.before = policies.get_policy(conn, policy_id)
            policies.delete_policy(conn, policy_id)
        self._changed('deleted', policy_id)

    def set_thresholds(self, actor: Actor, session_usd: Decimal | None, day_usd: Decimal | None,
                       pause: bool) -> Thresholds:
        """The thresholds every agent is held to, per session and per day (None removes one). Announced only when
        they change."""
        require(actor, Role.ADMIN, 'setting agent thresholds')
        with self.ctx.audited(actor, 'policies.set_thresholds', 'thresholds') as (conn, entry):
            before = entry.before = thresholds.get_thresholds(conn)
            stored = entry.after = thresholds.set_thresholds(conn, session_usd, day_usd, pause)
            if stored == before:
                entry.unchanged()
        if stored != before:
            self._changed('thresholds')
        return stored

    def _changed(self, reason: str, policy_id: int | None = None) -> None:
        if self.ctx.counters is not None:
            self.ctx.counters.rebuild()
        self.ctx.publish(PoliciesChanged(reason, policy_id))
