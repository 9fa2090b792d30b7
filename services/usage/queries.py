"""Reading the ledger back: filtered, newest first, with an opaque cursor for the next page."""
from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime

import orjson
from sqlalchemy import Connection, Select, select, tuple_
from typing_extensions import TypedDict

from services.core.errors import Invalid
from services.core.periods import as_utc, checked_utc
from services.core.tables import EVENTS
from services.usage import retention
from services.usage.ledger import EventOut, event_to_dict

FILTERS = ('agent_id', 'session_id', 'provider', 'model', 'task_id', 'user_id', 'project', 'channel')
MAX_PAGE = 1000
MAX_PAGE_BYTES = 4 * 2**20  # of event metadata per page: 1,000 events of 16 KB come in four pages


class UsagePage(TypedDict):
    items: list[EventOut]  # newest first
    count: int
    next_cursor: str | None  # pass it back as `cursor` for the next page; None on the last page. A page may hold
    # fewer than `limit` events when their metadata is large (4 MiB a page)
    pruned_before: str | None  # ISO UTC: events before it were deleted by retention (`spendgauge prune`) and are not
    # listed, though every total still counts them; None: nothing was ever pruned


@dataclass
class UsageQuery:
    start: datetime | None = None
    end: datetime | None = None
    agent_id: str | None = None
    session_id: str | None = None
    provider: str | None = None
    model: str | None = None
    task_id: str | None = None
    user_id: str | None = None
    project: str | None = None
    channel: str | None = None
    limit: int = 100
    cursor: str | None = None


def usage_query(q: UsageQuery) -> Select:
    """The statement of one page: the filters, the keyset after the cursor, newest first, one row more than the page
    (to know whether there is a next one)."""
    if not 1 <= q.limit <= MAX_PAGE:
        raise Invalid(f'limit: must be between 1 and {MAX_PAGE}')
    query = select(EVENTS)
    if q.start:
        query = query.where(EVENTS.c.ts >= checked_utc(q.start, 'from'))
    if q.end:
        query = query.where(EVENTS.c.ts < checked_utc(q.end, 'to'))
    for name in FILTERS:
        value = getattr(q, name)
        if value is not None:
            query = query.where(EVENTS.c[name] == (value.lower() if name == 'provider' else value))
    if q.cursor:
        ts, pk = decode_cursor(q.cursor)
        # a row value, not `ts < :ts OR (ts = :ts AND id < :id)`: SQLite and PostgreSQL both read it as one range of
        # the (ts, id) index (or of (agent_id | session_id | task_id, ts, id) after that filter), so a deep page
        # costs what the first does
        query = query.where(tuple_(EVENTS.c.ts, EVENTS.c.id) < tuple_(ts, pk))
    return query.order_by(EVENTS.c.ts.desc(), EVENTS.c.id.desc()).limit(q.limit + 1)


def list_usage(conn: Connection, q: UsageQuery) -> UsagePage:
    page: list[EventOut] = []
    size, more = 0, False
    # streamed, and cut at MAX_PAGE_BYTES of metadata: a page of large events costs bounded memory (next_cursor
    # goes on from there)
    # (closed when the page is cut: PostgreSQL's server-side cursor is not left open)
    with conn.execution_options(stream_results=True, yield_per=100).execute(usage_query(q)) as result:
        for row in result.mappings():
            if len(page) == q.limit or size >= MAX_PAGE_BYTES:
                more = True
                break
            item = event_to_dict(row)
            size += len(orjson.dumps(item['metadata'])) if item['metadata'] else 0
            page.append(item)
    last = page[-1] if page else None
    next_cursor = encode_cursor(datetime.fromisoformat(last['ts']), last['id']) if more and last else None
    return {'items': page, 'count': len(page), 'next_cursor': next_cursor,
            'pruned_before': retention.iso(retention.pruned_before(conn))}


def encode_cursor(ts: datetime, pk: int) -> str:
    return base64.urlsafe_b64encode(f'{as_utc(ts).isoformat()}|{pk}'.encode()).decode().rstrip('=')


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + '=' * (-len(cursor) % 4)).decode()
        ts, pk = raw.rsplit('|', 1)
        value, number = checked_utc(datetime.fromisoformat(ts), 'cursor'), int(pk)
        if not 0 < number < 2**63:
            raise ValueError
        return value, number
    except (ValueError, UnicodeDecodeError):
        raise Invalid('cursor: not a cursor returned by this API') from None
