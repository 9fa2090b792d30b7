"""Allocations: a parent budget split into shares, each enforced as a policy of its own (origin 'allocation')."""
from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import READ, Admin, ReadConn, RowId, RuntimeDep
from app.api.errors import refusals
from services.budget import allocations
from services.budget.allocations import AllocationDeleted, AllocationIn, AllocationList, AllocationOut

router = APIRouter(prefix='/allocations', tags=['allocations'])
TAKEN = refusals(e409='Another allocation has this name')


def _out(allocation: allocations.AllocationRule, rt: RuntimeDep) -> AllocationOut:
    """The allocation with each share's spend in the current period, from the in-memory counters."""
    return allocation.as_dict(rt.policy_spend)


@router.get('', dependencies=READ)
def list_allocations(conn: ReadConn, rt: RuntimeDep) -> AllocationList:
    """Every allocation with its shares, their limits and their spend in the current period."""
    items = [_out(a, rt) for a in allocations.list_allocations(conn)]
    return {'items': items, 'count': len(items)}


@router.get('/{allocation_id}', dependencies=READ)
def get_allocation(allocation_id: RowId, conn: ReadConn, rt: RuntimeDep) -> AllocationOut:
    return _out(allocations.get_allocation(conn, allocation_id), rt)


@router.post('', status_code=201, responses=TAKEN)
def create_allocation(body: AllocationIn, rt: RuntimeDep, actor: Admin) -> AllocationOut:
    """`limit_usd` (a decimal string) split into `shares`, each `{scope, scope_value, percent | amount_usd}`; the
    shares add up to at most 100 % (an amount share counts as amount / limit). Each share becomes a policy with the
    allocation's ladder; with `enforce_total` (default) a global policy holds the whole limit too."""
    return _out(rt.commands.allocations.create(actor, body), rt)


@router.put('/{allocation_id}', responses=TAKEN)
def update_allocation(allocation_id: RowId, body: AllocationIn, rt: RuntimeDep, actor: Admin) -> AllocationOut:
    """Replace the allocation as a whole. A share kept (same scope and value) keeps its policy and its spend."""
    return _out(rt.commands.allocations.update(actor, allocation_id, body), rt)


@router.delete('/{allocation_id}')
def delete_allocation(allocation_id: RowId, rt: RuntimeDep, actor: Admin) -> AllocationDeleted:
    """The allocation and its policies."""
    return {'deleted': allocation_id, 'policies': rt.commands.allocations.delete(actor, allocation_id)}
