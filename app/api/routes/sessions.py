"""Sessions: the last N, one with its per-agent breakdown, ending one, CSV export."""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Response

from app.api.deps import WRITE, ReadConn, RuntimeDep, WriteConn
from services.spend import sessions

router = APIRouter(tags=['sessions'])


@router.get('/sessions')
def list_sessions(conn: ReadConn, limit: Annotated[int, Query(ge=1, le=1000)] = 30) -> dict[str, Any]:
    """The most recent sessions: id, start, end, tokens, cost and agents."""
    items = sessions.list_sessions(conn, limit)
    return {'items': items, 'count': len(items)}


@router.get('/sessions.csv', response_class=Response)
def sessions_csv(conn: ReadConn, limit: Annotated[int, Query(ge=1, le=100_000)] = 1000) -> Response:
    """The most recent sessions as CSV."""
    return Response(sessions.sessions_csv(conn, limit), media_type='text/csv',
                    headers={'Content-Disposition': 'attachment; filename="sessions.csv"'})


@router.get('/sessions/{session_id}')
def get_session(session_id: str, conn: ReadConn) -> dict[str, Any]:
    """One session with its per-agent breakdown."""
    try:
        return sessions.get_session(conn, session_id)
    except sessions.SessionNotFound as exc:
        raise HTTPException(404, str(exc)) from None


@router.post('/sessions/{session_id}/end', dependencies=WRITE)
def end_session(session_id: str, conn: WriteConn, rt: RuntimeDep) -> dict[str, Any]:
    """Mark a session as ended now."""
    try:
        result = sessions.end_session(conn, session_id)
    except sessions.SessionNotFound as exc:
        raise HTTPException(404, str(exc)) from None
    conn.commit()  # before the news goes out: listeners read what was written
    rt.hub.publish('sessions', session_id=session_id, ended=True)
    return result
