"""The audit trail: every state change a command made, newest first (admins only)."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from app.api.deps import Admin, ReadConn
from services.audit.queries import MAX_FILTER, MAX_PAGE, AuditPage, AuditQuery, list_audit

router = APIRouter(tags=['audit'])


@router.get('/audit')
def get_audit(
    conn: ReadConn, actor: Admin,
    start: Annotated[datetime | None, Query(alias='from', description='ISO time, inclusive (default: 30 days '
                                                                      'before `to`)')] = None,
    end: Annotated[datetime | None, Query(alias='to', description='ISO time, exclusive (default: now)')] = None,
    by: Annotated[str | None, Query(alias='actor', max_length=MAX_FILTER,
                                    description='who: a token or user name, `cli`, `spendgauge`')] = None,
    action: Annotated[str | None, Query(max_length=MAX_FILTER,
                                        description='a command (`policies.create`) or a group (`policies.*`)')] = None,
    target: Annotated[str | None, Query(max_length=MAX_FILTER, description='what changed, e.g. `policy:3`')] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    cursor: str | None = None,
) -> AuditPage:
    """State changes with who made them, their target and the state before and after (secrets masked), newest
    first; pass `next_cursor` back as `cursor` for the next page. A range is at most ten years."""
    return list_audit(conn, actor, AuditQuery(start, end, by, action, target, limit, cursor))
