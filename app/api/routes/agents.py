"""Agents with this session's tokens and cost, last request and cost-per-request trend; pause and resume."""
from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import READ, Admin, ReadConn, RuntimeDep
from services.commands.agents import AgentState
from services.spend import agents
from services.spend.agents import AgentList

router = APIRouter(prefix='/agents', tags=['agents'])


@router.get('', dependencies=READ)
def list_agents(conn: ReadConn) -> AgentList:
    """Every agent, most recently active first."""
    items = agents.list_agents(conn)
    return {'items': items, 'count': len(items)}


@router.post('/{agent_id}/pause')
def pause(agent_id: str, rt: RuntimeDep, actor: Admin) -> AgentState:
    """Block every check for this agent until it is resumed. Only agents the ledger has seen (404 otherwise)."""
    return rt.commands.agents.pause(actor, agent_id)


@router.post('/{agent_id}/resume')
def resume(agent_id: str, rt: RuntimeDep, actor: Admin) -> AgentState:
    """Let this agent's checks through again."""
    return rt.commands.agents.resume(actor, agent_id)
