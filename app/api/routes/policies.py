"""Budget policies: list, create, change, delete. Every change recounts the in-memory check counters."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body

from app.api.deps import Caller, ReadConn, RowId, RuntimeDep
from services.budget import policies
from services.budget.policies import PolicyIn
from services.core.money import money

router = APIRouter(prefix='/policies', tags=['policies'])


def _with_spend(policy: policies.PolicyRule, rt: RuntimeDep) -> dict[str, Any]:
    """The policy with this period's spend per scope value (`current`, costliest first) and the largest."""
    spend = rt.checker.current_spend(policy.id) if rt.checker is not None else {}
    current = [{'scope_value': key or None, **money('spent', spent)}
               for key, spent in sorted(spend.items(), key=lambda kv: (-kv[1], kv[0]))]
    return {**policy.as_dict(), **money('spent', max(spend.values(), default=0)), 'current': current[:100]}


@router.get('')
def list_policies(conn: ReadConn, rt: RuntimeDep) -> dict[str, Any]:
    """Every policy with its spend in the current period (from the in-memory counters)."""
    items = [_with_spend(p, rt) for p in policies.list_policies(conn)]
    return {'items': items, 'count': len(items)}


@router.get('/{policy_id}')
def get_policy(policy_id: RowId, conn: ReadConn, rt: RuntimeDep) -> dict[str, Any]:
    return _with_spend(policies.get_policy(conn, policy_id), rt)


@router.post('', status_code=201)
def create_policy(body: PolicyIn, rt: RuntimeDep, actor: Caller) -> dict[str, Any]:
    """Limit in USD (`limit_usd`, a decimal string); soft/critical percent default to 80/95."""
    return rt.commands.policies.create(actor, body).as_dict()


@router.patch('/{policy_id}')
def update_policy(policy_id: RowId, rt: RuntimeDep, actor: Caller,
                  changes: dict[str, Any] = Body(...)) -> dict[str, Any]:  # noqa: B008
    """Change some fields; the result is validated as a whole policy."""
    return rt.commands.policies.update(actor, policy_id, changes).as_dict()


@router.delete('/{policy_id}')
def delete_policy(policy_id: RowId, rt: RuntimeDep, actor: Caller) -> dict[str, Any]:
    """Policies from the file or the environment are read-only here (409): change them where they come from."""
    rt.commands.policies.delete(actor, policy_id)
    return {'deleted': policy_id}
