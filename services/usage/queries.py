"""Reading the ledger back: filtered, newest first, with an opaque cursor for the next page; and the same filtered
set exported, streamed page by page."""
from __future__ import annotations

import base64
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy import ColumnElement, Connection, Select, exists, func, literal, select, tuple_
from typing_extensions import TypedDict

from services.core.errors import Invalid
from services.core.export import csv_lines
from services.core.periods import PERIODS, as_utc, checked_utc, period_containing
from services.core.tables import EVENTS
from services.usage import retention
from services.usage.ledger import EventOut, event_to_dict

FILTERS = ('agent_id', 'session_id', 'provider', 'model', 'task_id', 'user_id', 'project', 'channel', 'cost_source')
INDEXED = ('agent_id', 'session_id', 'task_id')  # each with an index on (it, ts, id)
SERVED_BY_TIME = ('from', 'to', *INDEXED)  # the filters the time order's indexes serve
SORTS = ('time', 'cost')  # newest first, or dearest first
COST_SPAN = 200_000  # the newest events ranked by cost, read from the (ts, id, cost_micros) index alone (~45 ms at 5M)
SEARCH_SPAN = 20_000  # events a page looks through for the filters no index serves (about 10-20 ms)
COST_SOURCES = ('priced', 'reported', 'unpriced')
CHANNELS = ('litellm', 'direct')
MAX_PAGE = 1000
MAX_EXPORT = 1_000_000  # events in one export: a larger set is cut there (narrow the range for the rest)
EXPORT_PAGE = 1000
EXPORT_MEDIA = {'csv': 'text/csv', 'jsonl': 'application/x-ndjson'}  # the export's formats and media types
EXPORT_COLUMNS = ('id', 'event_id', 'ts', 'source', 'channel', 'provider', 'model', 'agent_id', 'session_id', 'user_id',
                  'project', 'task_id', 'tags', 'input_tokens', 'output_tokens', 'cache_read_tokens',
                  'cache_write_tokens', 'cost_usd', 'cost_source', 'latency_ms')
MAX_PAGE_BYTES = 4 * 2**20  # of event metadata per page: 1,000 events of 16 KB come in four pages


class UsagePage(TypedDict):
    items: list[EventOut]  # newest first (sort=time) or dearest first (sort=cost)
    count: int
    next_cursor: str | None  # pass it back as `cursor` for the next page; None on the last page. A page may hold
    # fewer than `limit` events when their metadata is large (4 MiB a page)
    searched_to: str | None  # ISO UTC. By time: a filter no index serves was looked for back to this event's time and
    # the page is short there; `next_cursor` goes on from it. By cost: only the calls back to this time are ranked
    # (the newest 200,000, or 20,000 with any filter but the range); set `to` earlier to rank older ones. None: nothing
    # was cut
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
    tag: str | None = None  # events carrying this tag among theirs
    cost_source: str | None = None  # priced, reported or unpriced
    sort: str = 'time'  # time: newest first; cost: dearest first


def period_or_range(period: str | None, start: datetime | None, end: datetime | None,
                    zone: ZoneInfo) -> tuple[datetime | None, datetime | None]:
    """The listing's time range: the day, week or month containing now, or from/to as given."""
    if period is None:
        return start, end
    if start is not None or end is not None:
        raise Invalid('give a period or from/to, not both')
    if period not in PERIODS:
        raise Invalid(f'period: must be one of {", ".join(PERIODS)}')
    span = period_containing(period, datetime.now(UTC), zone)
    return span.start, span.end


def time_param(params: Mapping[str, str], name: str) -> datetime | None:
    """An ISO time (or date) query parameter as the API parses it, for the CLI's --db path; None when not given."""
    text = params.get(name)
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text.replace('Z', '+00:00'))
    except ValueError:
        raise Invalid(f'{name}: not an ISO datetime: {text!r}') from None


def limit_param(params: Mapping[str, str], default: int = 100) -> int:
    try:
        return int(params.get('limit', str(default)))
    except ValueError:
        raise Invalid(f'limit: not a whole number: {params["limit"]!r}') from None


def usage_query_from(params: Mapping[str, str], zone: ZoneInfo) -> UsageQuery:
    """The query the API would make of these query parameters (the CLI's --db path reads them so)."""
    start, end = period_or_range(params.get('period'), time_param(params, 'from'), time_param(params, 'to'), zone)
    limit = limit_param(params)
    query = UsageQuery(start, end, limit=limit, cursor=params.get('cursor'), tag=params.get('tag'),
                       sort=params.get('sort', 'time'), **{name: params.get(name) for name in FILTERS})
    usage_query(query)  # refuses bad filters now
    return query


def usage_query(q: UsageQuery, dialect: str = 'sqlite') -> Select:
    """The statement of one page, one row more than the page (to know whether there is a next one).

    By time: the filters, the keyset after the cursor, newest first. The (ts, id) index and those on (agent_id |
    session_id | task_id, ts, id) serve the range and those three; another filter looks at the next SEARCH_SPAN events
    those indexes give, no more: a rare value costs a page what a common one does, and the listing goes on from where
    the search stopped (`list_usage`).

    By cost: the newest COST_SPAN events of the range, read from the (ts, id, cost_micros) index alone, ranked dearest
    first; with any other filter, the newest SEARCH_SPAN events the indexes give (the agent, session and task indexes
    do not carry the cost: each event is read from the table; an agent index with the cost made ingest at 5M events
    1.5x slower than into an empty database, against 1.3x). The cursor pins that window to the newest event of the
    first page, so later pages rank the same calls while new ones arrive."""
    if not 1 <= q.limit <= MAX_PAGE:
        raise Invalid(f'limit: must be between 1 and {MAX_PAGE}')
    if q.sort not in SORTS:
        raise Invalid(f'sort: must be one of {", ".join(SORTS)}')
    if q.cost_source is not None and q.cost_source not in COST_SOURCES:
        raise Invalid(f'cost_source: must be one of {", ".join(COST_SOURCES)}')
    if q.channel is not None and q.channel not in CHANNELS:
        raise Invalid(f'channel: must be one of {", ".join(CHANNELS)}')
    if q.sort == 'cost':
        return _by_cost(q, dialect)
    scanned = _scanned(q)
    searched = _searched(q)
    if not searched:
        return scanned.order_by(*_newest(EVENTS)).limit(q.limit + 1)
    window = scanned.order_by(*_newest(EVENTS)).limit(SEARCH_SPAN).subquery('window')
    query = select(window).where(*(_matches(name, value, window, dialect) for name, value in searched.items()))
    if dialect != 'sqlite':  # PostgreSQL knows the window comes in this order and stops at the page's end;
        query = query.order_by(*_newest(window))  # SQLite would sort all of it: its co-routine yields in order
    return query.limit(q.limit + 1)


def _scanned(q: UsageQuery) -> Select:
    """The events in time order that an index serves: the range, an agent, session or task; by time, after the
    cursor; by cost, up to the newest event of the cursor's window."""
    query = select(EVENTS).where(*(_matches(name, value, EVENTS) for name, value in _filters(q).items()
                                   if name in SERVED_BY_TIME))
    if q.cursor and q.sort == 'time':
        ts, pk = decode_cursor(q.cursor)
        # a row value, not `ts < :ts OR (ts = :ts AND id < :id)`: SQLite and PostgreSQL both read it as one range of
        # the index, so a deep page costs what the first does
        query = query.where(tuple_(EVENTS.c.ts, EVENTS.c.id) < tuple_(ts, pk))
    elif q.cursor:
        top = decode_cost_cursor(q.cursor).top
        query = query.where(tuple_(EVENTS.c.ts, EVENTS.c.id) <= tuple_(*top))
    return query


def _searched(q: UsageQuery) -> dict[str, Any]:
    """The filters the time order's indexes do not serve, by name."""
    return {name: value for name, value in _filters(q).items() if name not in SERVED_BY_TIME}


def _cost_span(q: UsageQuery) -> int:
    """How many of the newest events the listing sorted by cost ranks: COST_SPAN when the time index alone gives them
    with their costs, SEARCH_SPAN when an agent, session or task filter (an index without the cost) or another filter
    reads each event from the table."""
    return COST_SPAN if set(_filters(q)) <= {'from', 'to'} else SEARCH_SPAN


def _by_cost(q: UsageQuery, dialect: str) -> Select:
    cursor = decode_cost_cursor(q.cursor) if q.cursor else None
    searched = _searched(q)
    scanned = _scanned(q)
    if not searched:  # the window's ids and costs come from the index; the page's rows are read by id
        window = scanned.with_only_columns(EVENTS.c.id, EVENTS.c.cost_micros).order_by(*_newest(EVENTS)) \
            .limit(_cost_span(q)).subquery('window')
        ranked = select(window.c.id, window.c.cost_micros)
        if cursor is not None:
            ranked = ranked.where(tuple_(window.c.cost_micros, window.c.id) < tuple_(cursor.cost, cursor.id))
        page = ranked.order_by(*_dearest(window)).limit(q.limit + 1).subquery('page')
        return select(EVENTS).join(page, EVENTS.c.id == page.c.id).order_by(*_dearest(page))
    window = scanned.order_by(*_newest(EVENTS)).limit(SEARCH_SPAN).subquery('window')
    query = select(window).where(*(_matches(name, value, window, dialect) for name, value in searched.items()))
    if cursor is not None:
        query = query.where(tuple_(window.c.cost_micros, window.c.id) < tuple_(cursor.cost, cursor.id))
    return query.order_by(*_dearest(window)).limit(q.limit + 1)


def _filters(q: UsageQuery) -> dict[str, Any]:
    """Every filter given: `from` and `to` (UTC), the columns of FILTERS, and `tag`."""
    found: dict[str, Any] = {'from': q.start and checked_utc(q.start, 'from'), 'to': q.end and checked_utc(q.end, 'to')}
    found.update((name, getattr(q, name)) for name in (*FILTERS, 'tag'))
    if found['provider'] is not None:
        found['provider'] = found['provider'].lower()
    return {name: value for name, value in found.items() if value is not None}


def _matches(name: str, value: Any, table: Any, dialect: str = 'sqlite') -> ColumnElement[bool]:
    if name == 'from':
        return table.c.ts >= value
    if name == 'to':
        return table.c.ts < value
    if name == 'tag':
        return _has_tag(value, dialect, table.c.tags)
    return table.c[name] == value


def _newest(table: Any) -> tuple[Any, Any]:
    return table.c.ts.desc(), table.c.id.desc()


def _dearest(table: Any) -> tuple[Any, Any]:
    return table.c.cost_micros.desc(), table.c.id.desc()


def list_usage(conn: Connection, q: UsageQuery) -> UsagePage:
    if q.sort == 'cost' and not q.cursor:  # pin the window to the newest event there is now
        usage_query(q)  # bad filters fail before the database is asked
        newest = conn.execute(_scanned(q).with_only_columns(EVENTS.c.ts, EVENTS.c.id).order_by(*_newest(EVENTS))
                              .limit(1)).first()
        if newest is not None:
            q = replace(q, cursor=encode_cost_cursor(CostCursor(2**63 - 1, 2**63 - 1, (newest.ts, newest.id))))
    page: list[EventOut] = []
    size, more = 0, False
    # streamed, and cut at MAX_PAGE_BYTES of metadata: a page of large events costs bounded memory (next_cursor
    # goes on from there)
    # (closed when the page is cut: PostgreSQL's server-side cursor is not left open)
    # (the options on the statement: on the connection they would stay for its later statements)
    statement = usage_query(q, conn.dialect.name).execution_options(stream_results=True, yield_per=100)
    with conn.execute(statement) as result:
        for row in result.mappings():
            if len(page) == q.limit or size >= MAX_PAGE_BYTES:
                more = True
                break
            item = event_to_dict(row)
            size += len(orjson.dumps(item['metadata'])) if item['metadata'] else 0
            page.append(item)
    last = page[-1] if page else None
    next_cursor, searched_to = None, None
    if q.sort == 'cost':
        if more and last and q.cursor:
            pinned = decode_cost_cursor(q.cursor).top
            next_cursor = encode_cost_cursor(CostCursor(last['cost_micros'], last['id'], pinned))
        bound = conn.execute(_bound(q, _cost_span(q))).all()
        if len(bound) == 2:  # the window was cut: older calls are not ranked
            searched_to = as_utc(bound[0].ts).isoformat()
    else:
        if more and last:
            next_cursor = encode_cursor(datetime.fromisoformat(last['ts']), last['id'])
        if not more and _searched(q):  # a short page: did the search stop at its bound, with events beyond it?
            bound = conn.execute(_bound(q, SEARCH_SPAN)).all()
            if len(bound) == 2:  # the last event looked at, and one beyond it
                next_cursor = encode_cursor(bound[0].ts, bound[0].id)
                searched_to = as_utc(bound[0].ts).isoformat()
    return {'items': page, 'count': len(page), 'next_cursor': next_cursor, 'searched_to': searched_to,
            'pruned_before': retention.iso(retention.pruned_before(conn))}


def _bound(q: UsageQuery, span: int) -> Select:
    """The last event a search looks at (the span-th the index serves) and the next, if there are so many."""
    scanned = _scanned(q).with_only_columns(EVENTS.c.ts, EVENTS.c.id)
    return scanned.order_by(*_newest(EVENTS)).offset(span - 1).limit(2)


def _has_tag(tag: str, dialect: str, tags: Any) -> ColumnElement[bool]:
    """The event's tags (a JSON list) hold `tag`."""
    elements = func.json_each if dialect == 'sqlite' else func.json_array_elements_text
    each = elements(tags).table_valued('value').alias('tag')
    return exists(select(literal(1)).select_from(each).where(each.c.value == tag))


def export_usage(read_page: Callable[[UsageQuery], UsagePage], q: UsageQuery, kind: str,
                 most: int = MAX_EXPORT, page: int = EXPORT_PAGE) -> Iterator[str]:
    """The filtered events as CSV (EXPORT_COLUMNS, through the shared writer) or JSON lines, newest first, at most
    `most` of them: page after page by the keyset, each page read by `read_page` (a connection of its own), so an
    export of a million events holds one page in memory and no connection between pages."""
    if kind not in EXPORT_MEDIA:
        raise Invalid(f'format: must be one of {", ".join(EXPORT_MEDIA)}')
    if not 1 <= most <= MAX_EXPORT:
        raise Invalid(f'limit: must be between 1 and {MAX_EXPORT}')
    query = replace(q, limit=min(page, most))
    usage_query(query)  # bad filters fail here, before anything is sent
    return _export_pages(read_page, query, kind, most, page)


def _export_pages(read_page: Callable[[UsageQuery], UsagePage], query: UsageQuery, kind: str, most: int,
                  page_size: int) -> Iterator[str]:
    if kind == 'csv':
        yield csv_lines([EXPORT_COLUMNS])
    left = most
    while left > 0:
        page = read_page(query)
        items = page['items'][:left]
        if kind == 'csv':
            yield csv_lines([' '.join(item['tags']) if name == 'tags' else item[name]  # type: ignore[literal-required]
                             for name in EXPORT_COLUMNS] for item in items)
        else:
            yield ''.join(orjson.dumps(item).decode() + '\n' for item in items)
        left -= len(items)
        if not page['next_cursor']:
            return
        query = replace(query, cursor=page['next_cursor'], limit=min(page_size, left))


def encode_cursor(ts: datetime, pk: int) -> str:
    """A page's cursor, by time: the last event's time and id."""
    return _b64(f'{as_utc(ts).isoformat()}|{pk}')


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    parts = _parts(cursor)
    if parts[0] == 'cost' or len(parts) != 2:
        raise Invalid('cursor: it pages the listing sorted by cost, not by time' if parts[0] == 'cost' else _BAD)
    try:
        return checked_utc(datetime.fromisoformat(parts[0]), 'cursor'), _id(parts[1])
    except ValueError:
        raise Invalid(_BAD) from None


@dataclass(frozen=True)
class CostCursor:
    """A page's cursor, by cost: the last event's cost and id, and the newest event of the window ranked."""

    cost: int
    id: int
    top: tuple[datetime, int]


def encode_cost_cursor(c: CostCursor) -> str:
    return _b64(f'cost|{c.cost}|{c.id}|{as_utc(c.top[0]).isoformat()}|{c.top[1]}')


def decode_cost_cursor(cursor: str) -> CostCursor:
    parts = _parts(cursor)
    if parts[0] != 'cost':
        raise Invalid('cursor: it pages the listing sorted by time, not by cost' if len(parts) == 2 else _BAD)
    try:
        _, cost, pk, ts, top = parts
        return CostCursor(_id(cost, low=0), _id(pk), (checked_utc(datetime.fromisoformat(ts), 'cursor'), _id(top)))
    except ValueError:
        raise Invalid(_BAD) from None


_BAD = 'cursor: not a cursor returned by this API'


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip('=')


def _parts(cursor: str) -> list[str]:
    try:
        return base64.urlsafe_b64decode(cursor + '=' * (-len(cursor) % 4)).decode().split('|')
    except (ValueError, UnicodeDecodeError):
        raise Invalid(_BAD) from None


def _id(text: str, low: int = 1) -> int:
    number = int(text)
    if not low <= number < 2**63:
        raise ValueError
    return number
