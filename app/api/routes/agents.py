"""Agents with this session's tokens and cost, last request and cost-per-request trend."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from app.api.deps import ReadConn
from services import agents

router = APIRouter(prefix='/agents', tags=['agents'])


@router.get('')
def list_agents(conn: ReadConn) -> dict[str, Any]:
    """Every agent, most recently active first."""
    items = agents.list_agents(conn)
    return {'items': items, 'count': len(items)}
