"""Reading the trail back (GET /api/v1/audit, `spendgauge audit`): admins only, newest first, filtered by time,
actor, action and target, paged by the keyset (at, id) with the usage listing's opaque cursor."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select, tuple_
from typing_extensions import TypedDict

from services.core.access import Actor, Role, require
from services.core.errors import Invalid
from services.core.inputs import unstorable_text
from services.core.periods import as_utc, checked_span, checked_utc
from services.core.tables import AUDIT_LOG
from services.usage.queries import decode_cursor, encode_cursor, limit_param, time_param

MAX_PAGE = 1000
DEFAULT_SPAN = timedelta(days=30)  # without `from`: the 30 days up to `to`
MAX_FILTER = 500  # the longest actor, action or target filter (the columns' own lengths)


class AuditRow(TypedDict):
    id: int
    at: str  # ISO UTC
    actor: str
    action: str
    target: str
    before: Any
    after: Any


class AuditPage(TypedDict):
    items: list[AuditRow]
    count: int
    next_cursor: str | None  # pass it back as `cursor` for the next page; None on the last page
    start: str  # the range searched, ISO UTC: from inclusive, to exclusive
    end: str


@dataclass(frozen=True)
class AuditQuery:
    start: datetime | None = None
    end: datetime | None = None
    actor: str | None = None
    action: str | None = None  # exact (`policies.create`), or every action of a group (`policies.`, `policies.*`)
    target: str | None = None  # exact (`policy:3`)
    limit: int = 100
    cursor: str | None = None


def resolved_range(start: datetime | None, end: datetime | None,
                   now: datetime | None = None) -> tuple[datetime, datetime]:
    """From/to as asked: `to` defaults to now, `from` to 30 days before `to`; 2000-2099, at most ten years."""
    end = checked_utc(end, 'to') if end is not None else as_utc(now or datetime.now(UTC))
    start = checked_utc(start, 'from') if start is not None else end - DEFAULT_SPAN
    if start >= end:
        raise Invalid('from: must be before to')
    checked_span(start, end, 'from/to')
    return start, end


def list_audit(conn: Connection, actor: Actor, q: AuditQuery) -> AuditPage:
    require(actor, Role.ADMIN, 'reading the audit trail')
    if not 1 <= q.limit <= MAX_PAGE:
        raise Invalid(f'limit: between 1 and {MAX_PAGE}')
    for name, value in (('actor', q.actor), ('action', q.action), ('target', q.target)):
        if value is not None and len(value) > MAX_FILTER:
            raise Invalid(f'{name}: at most {MAX_FILTER} characters')
        if value is not None and (problem := unstorable_text(value)):  # NUL, lone surrogates: no database takes them
            raise Invalid(f'{name}: {problem}')
    start, end = resolved_range(q.start, q.end)
    c = AUDIT_LOG.c
    query = select(AUDIT_LOG).where(c.at >= start, c.at < end)
    if q.actor is not None:
        query = query.where(c.actor == q.actor)
    if q.action is not None:
        group = q.action.removesuffix('*')
        query = query.where(c.action.startswith(group, autoescape=True) if group.endswith('.')
                            else c.action == q.action)
    if q.target is not None:
        query = query.where(c.target == q.target)
    if q.cursor:
        at, pk = decode_cursor(q.cursor)
        query = query.where(tuple_(c.at, c.id) < tuple_(at, pk))
    rows = conn.execute(query.order_by(c.at.desc(), c.id.desc()).limit(q.limit + 1)).all()
    items: list[AuditRow] = [{'id': r.id, 'at': as_utc(r.at).isoformat(), 'actor': r.actor, 'action': r.action,
                              'target': r.target, 'before': r.before, 'after': r.after} for r in rows[:q.limit]]
    more = len(rows) > q.limit
    next_cursor = encode_cursor(rows[q.limit - 1].at, rows[q.limit - 1].id) if more else None
    return {'items': items, 'count': len(items), 'next_cursor': next_cursor, 'start': start.isoformat(),
            'end': end.isoformat()}


def audit_query_from(params: Mapping[str, str]) -> AuditQuery:
    """The query the API would make of these parameters (the CLI's --db path reads them so)."""
    return AuditQuery(time_param(params, 'from'), time_param(params, 'to'), params.get('actor'), params.get('action'),
                      params.get('target'), limit_param(params), params.get('cursor'))
