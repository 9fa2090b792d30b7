"""Sessions: the last N, one with its per-agent breakdown, ending one, CSV export."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from app.api.deps import READ, Admin, ReadConn, RuntimeDep
from services.spend import sessions
from services.spend.sessions import CSV_COLUMNS, SessionDetail, SessionList

router = APIRouter(tags=['sessions'])


@router.get('/sessions', dependencies=READ)
def list_sessions(conn: ReadConn, limit: Annotated[int, Query(ge=1, le=1000)] = 30) -> SessionList:
    """The most recent sessions: id, start, end, tokens, cost and agents."""
    items = sessions.list_sessions(conn, limit)
    return {'items': items, 'count': len(items)}


@router.get('/sessions.csv', dependencies=READ, response_class=Response, responses={200: {
    'description': f'One row per session, most recent first; columns {", ".join(CSV_COLUMNS)}',
    'content': {'text/csv': {'schema': {'type': 'string'}}}}})
def sessions_csv(conn: ReadConn, limit: Annotated[int, Query(ge=1, le=100_000)] = 1000) -> Response:
    """The most recent sessions as CSV."""
    return Response(sessions.sessions_csv(conn, limit), media_type='text/csv',
                    headers={'Content-Disposition': 'attachment; filename="sessions.csv"'})


@router.get('/sessions/{session_id}', dependencies=READ)
def get_session(session_id: str, conn: ReadConn) -> SessionDetail:
    """One session with its per-agent breakdown."""
    return sessions.get_session(conn, session_id)


@router.post('/sessions/{session_id}/end')
def end_session(session_id: str, rt: RuntimeDep, actor: Admin) -> SessionDetail:
    """Mark a session as ended now; its session-period budgets stop counting it."""
    return rt.commands.sessions.end(actor, session_id)
