"""Allocations: a parent budget split into shares, each share a policy of its own (services/budget/allocations.py).
The allocation and its policies change in one transaction; the budget counters are recounted before the change is
announced, so the next check follows the new shares."""
from __future__ import annotations

from typing import Any

from services.budget import allocations
from services.budget.allocations import AllocationIn, AllocationRule
from services.commands.base import CommandContext
from services.core.access import Actor, Role, require
from services.live.topics import PoliciesChanged


class AllocationCommands:
    def __init__(self, ctx: CommandContext) -> None:
        self.ctx = ctx

    def create(self, actor: Actor, allocation: AllocationIn | dict[str, Any]) -> AllocationRule:
        require(actor, Role.ADMIN, 'adding an allocation')
        checked = _checked(allocation)
        with self.ctx.audited(actor, 'allocations.create', f'allocation:{checked.name}') as (conn, entry):
            created = entry.after = allocations.create_allocation(conn, checked)
        self._changed()
        return created

    def update(self, actor: Actor, allocation_id: int, allocation: AllocationIn | dict[str, Any]) -> AllocationRule:
        """Replace the allocation as a whole (its shares included)."""
        require(actor, Role.ADMIN, 'changing an allocation')
        checked = _checked(allocation)
        with self.ctx.audited(actor, 'allocations.update', f'allocation:{allocation_id}') as (conn, entry):
            entry.before = allocations.get_allocation(conn, allocation_id)
            updated = entry.after = allocations.update_allocation(conn, allocation_id, checked)
        self._changed()
        return updated

    def delete(self, actor: Actor, allocation_id: int) -> int:
        """Delete the allocation and its policies; returns how many policies went."""
        require(actor, Role.ADMIN, 'deleting an allocation')
        with self.ctx.audited(actor, 'allocations.delete', f'allocation:{allocation_id}') as (conn, entry):
            entry.before = allocations.get_allocation(conn, allocation_id)
            removed = allocations.delete_allocation(conn, allocation_id)
            entry.after = {'policies_removed': removed}
        self._changed()
        return removed

    def _changed(self) -> None:
        if self.ctx.counters is not None:
            self.ctx.counters.rebuild()
        self.ctx.publish(PoliciesChanged('allocation'))


def _checked(allocation: AllocationIn | dict[str, Any]) -> AllocationIn:
    return allocation if isinstance(allocation, AllocationIn) else allocations.validate(allocation)
