"""Budget policies: list, create, change, delete. Every change recounts the in-memory check counters."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body

from app.api.deps import READ, Admin, ReadConn, RowId, RuntimeDep
from app.api.errors import refusals
from services.budget import policies
from services.budget.policies import PolicyDeleted, PolicyIn, PolicyList, PolicyOut, PolicyWithSpend

router = APIRouter(prefix='/policies', tags=['policies'])


def _with_spend(policy: policies.PolicyRule, rt: RuntimeDep) -> PolicyWithSpend:
    """The policy with its spend in the current period, from the in-memory counters."""
    return policy.with_spend(rt.checker.current_spend(policy.id) if rt.checker is not None else {})

READ_ONLY = refusals(e409='The policy is read-only here (from the file or the environment)')


@router.get('', dependencies=READ)
def list_policies(conn: ReadConn, rt: RuntimeDep) -> PolicyList:
    """Every policy with its spend in the current period (from the in-memory counters)."""
    items = [_with_spend(p, rt) for p in policies.list_policies(conn)]
    return {'items': items, 'count': len(items)}


@router.get('/{policy_id}', dependencies=READ)
def get_policy(policy_id: RowId, conn: ReadConn, rt: RuntimeDep) -> PolicyWithSpend:
    return _with_spend(policies.get_policy(conn, policy_id), rt)


@router.post('', status_code=201)
def create_policy(body: PolicyIn, rt: RuntimeDep, actor: Admin) -> PolicyOut:
    """Limit in USD (`limit_usd`, a decimal string); soft/critical percent default to 80/95."""
    return rt.commands.policies.create(actor, body).as_dict()


@router.patch('/{policy_id}', responses=READ_ONLY)
def update_policy(policy_id: RowId, rt: RuntimeDep, actor: Admin,
                  changes: dict[str, Any] = Body(...)) -> PolicyOut:  # noqa: B008
    """Change some fields; the result is validated as a whole policy."""
    return rt.commands.policies.update(actor, policy_id, changes).as_dict()


@router.delete('/{policy_id}', responses=READ_ONLY)
def delete_policy(policy_id: RowId, rt: RuntimeDep, actor: Admin) -> PolicyDeleted:
    """Policies from the file or the environment are read-only here (409): change them where they come from."""
    rt.commands.policies.delete(actor, policy_id)
    return {'deleted': policy_id}
