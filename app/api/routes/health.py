"""Liveness and readiness."""
from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from sqlalchemy import text
from typing_extensions import TypedDict

from app import __version__
from app.api.deps import ReadConn, RuntimeDep

router = APIRouter(tags=['health'])


class Health(TypedDict):
    status: Literal['ok']
    version: str
    database: str  # sqlite, postgresql
    scheduler: Literal['leader', 'standby', 'starting']  # whether this instance runs the scheduled jobs


@router.get('/health')
def health(conn: ReadConn, rt: RuntimeDep) -> Health:
    """200 when the server and its database answer; `scheduler` says whether this instance runs the scheduled
    jobs (`leader`) or another instance on the same PostgreSQL does (`standby`)."""
    conn.execute(text('SELECT 1'))
    return {'status': 'ok', 'version': __version__, 'database': conn.dialect.name,
            'scheduler': rt.leadership.role if rt.leadership is not None else 'leader'}
