"""Agents with this session's tokens and cost, last request and cost-per-request trend; pause and resume."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from app.api.deps import WRITE, ReadConn, RuntimeDep, WriteConn
from app.api.errors import BadRequest
from services.budget import policies
from services.spend import agents

router = APIRouter(prefix='/agents', tags=['agents'])


@router.get('')
def list_agents(conn: ReadConn) -> dict[str, Any]:
    """Every agent, most recently active first."""
    items = agents.list_agents(conn)
    return {'items': items, 'count': len(items)}


def _set_paused(agent_id: str, paused: bool, conn: WriteConn, rt: RuntimeDep) -> dict[str, Any]:
    if not policies.set_agent_paused(conn, agent_id, paused):
        raise BadRequest(f'agent_id: no agent {agent_id!r} has recorded usage yet', 404)
    conn.commit()
    if rt.checker is not None:
        rt.checker.set_paused(agent_id, paused)
    rt.hub.publish('agents', agent_id=agent_id, paused=paused)
    return {'agent_id': agent_id, 'paused': paused}


@router.post('/{agent_id}/pause', dependencies=WRITE)
def pause(agent_id: str, conn: WriteConn, rt: RuntimeDep) -> dict[str, Any]:
    """Block every check for this agent until it is resumed. Only agents the ledger has seen (404 otherwise)."""
    return _set_paused(agent_id, True, conn, rt)


@router.post('/{agent_id}/resume', dependencies=WRITE)
def resume(agent_id: str, conn: WriteConn, rt: RuntimeDep) -> dict[str, Any]:
    return _set_paused(agent_id, False, conn, rt)
