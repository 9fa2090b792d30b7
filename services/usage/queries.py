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
SORTS = ('time', 'cost')  # newest first, or dearest first (the (cost_micros, id) index)
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
    searched_to: str | None  # ISO UTC: a filter no index serves was looked for back to this event's time and the
    # page is short there; `next_cursor` goes on from it. None: the page holds all there is up to its end
    searched_to_cost_micros: int | None  # the same, sorted by cost: looked for down to this cost
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


def usage_query_from(params: Mapping[str, str], zone: ZoneInfo) -> UsageQuery:
    """The query the API would make of these query parameters (the CLI's --db path reads them so)."""
    def time(name: str) -> datetime | None:
        text = params.get(name)
        if text is None:
            return None
        try:
            return datetime.fromisoformat(text.replace('Z', '+00:00'))
        except ValueError:
            raise Invalid(f'{name}: not an ISO datetime: {text!r}') from None

    start, end = period_or_range(params.get('period'), time('from'), time('to'), zone)
    try:
        limit = int(params.get('limit', '100'))
    except ValueError:
        raise Invalid(f'limit: not a whole number: {params["limit"]!r}') from None
    query = UsageQuery(start, end, limit=limit, cursor=params.get('cursor'), tag=params.get('tag'),
                       sort=params.get('sort', 'time'), **{name: params.get(name) for name in FILTERS})
    usage_query(query)  # refuses bad filters now
    return query


def usage_query(q: UsageQuery, dialect: str = 'sqlite') -> Select:
    """The statement of one page: the filters, the keyset after the cursor, newest (or dearest) first, one row more
    than the page (to know whether there is a next one). A filter the sort's index does not serve looks at the next
    SEARCH_SPAN events that index gives, no more: a rare value costs a page what a common one does, and the listing
    goes on from where the search stopped (`list_usage`). By time, the (ts, id) index and those on (agent_id |
    session_id | task_id, ts, id) serve the range and those three; by cost, (cost_micros, id) serves none."""
    if not 1 <= q.limit <= MAX_PAGE:
        raise Invalid(f'limit: must be between 1 and {MAX_PAGE}')
    if q.sort not in SORTS:
        raise Invalid(f'sort: must be one of {", ".join(SORTS)}')
    if q.cost_source is not None and q.cost_source not in COST_SOURCES:
        raise Invalid(f'cost_source: must be one of {", ".join(COST_SOURCES)}')
    if q.channel is not None and q.channel not in CHANNELS:
        raise Invalid(f'channel: must be one of {", ".join(CHANNELS)}')
    scanned = _scanned(q)
    searched = _searched(q)
    if not searched:
        return scanned.order_by(*_order(EVENTS, q.sort)).limit(q.limit + 1)
    window = scanned.order_by(*_order(EVENTS, q.sort)).limit(SEARCH_SPAN).subquery('window')
    query = select(window).where(*(_matches(name, value, window, dialect) for name, value in searched.items()))
    if dialect != 'sqlite':  # PostgreSQL knows the window comes in this order and stops at the page's end;
        query = query.order_by(*_order(window, q.sort))  # SQLite would sort all of it: its co-routine yields in order
    return query.limit(q.limit + 1)


def _scanned(q: UsageQuery) -> Select:
    """The events in the sort's order that its index serves: by time the range, an agent, session or task; after
    the cursor."""
    query = select(EVENTS)
    if q.sort == 'time':
        query = query.where(*(_matches(name, value, EVENTS) for name, value in _filters(q).items()
                              if name in SERVED_BY_TIME))
    if q.cursor:
        key, pk = decode_cursor(q.cursor, q.sort)
        # a row value, not `ts < :ts OR (ts = :ts AND id < :id)`: SQLite and PostgreSQL both read it as one range of
        # the index, so a deep page costs what the first does
        query = query.where(tuple_(_order_key(EVENTS, q.sort), EVENTS.c.id) < tuple_(key, pk))
    return query


def _searched(q: UsageQuery) -> dict[str, Any]:
    """The filters the sort's index does not serve, by name."""
    return {name: value for name, value in _filters(q).items() if q.sort == 'cost' or name not in SERVED_BY_TIME}


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


def _order_key(table: Any, sort: str) -> Any:
    return table.c.cost_micros if sort == 'cost' else table.c.ts


def _order(table: Any, sort: str) -> tuple[Any, Any]:
    return _order_key(table, sort).desc(), table.c.id.desc()


def list_usage(conn: Connection, q: UsageQuery) -> UsagePage:
    page: list[EventOut] = []
    size, more = 0, False
    # streamed, and cut at MAX_PAGE_BYTES of metadata: a page of large events costs bounded memory (next_cursor
    # goes on from there)
    # (closed when the page is cut: PostgreSQL's server-side cursor is not left open)
    with conn.execution_options(stream_results=True, yield_per=100).execute(usage_query(q, conn.dialect.name)) \
            as result:
        for row in result.mappings():
            if len(page) == q.limit or size >= MAX_PAGE_BYTES:
                more = True
                break
            item = event_to_dict(row)
            size += len(orjson.dumps(item['metadata'])) if item['metadata'] else 0
            page.append(item)
    last = page[-1] if page else None
    next_cursor = None
    if more and last:
        next_cursor = encode_cursor(last['cost_micros'] if q.sort == 'cost' else datetime.fromisoformat(last['ts']),
                                    last['id'])
    searched_to, searched_to_cost = None, None
    if not more and _searched(q):  # a short page: did the search stop at its bound, with events beyond it?
        bound = conn.execute(_bound(q)).all()
        if len(bound) == 2:  # the last event looked at, and one beyond it
            if q.sort == 'cost':
                next_cursor = encode_cursor(bound[0].cost_micros, bound[0].id)
                searched_to_cost = bound[0].cost_micros
            else:
                next_cursor = encode_cursor(bound[0].ts, bound[0].id)
                searched_to = as_utc(bound[0].ts).isoformat()
    return {'items': page, 'count': len(page), 'next_cursor': next_cursor, 'searched_to': searched_to,
            'searched_to_cost_micros': searched_to_cost, 'pruned_before': retention.iso(retention.pruned_before(conn))}


def _bound(q: UsageQuery) -> Select:
    """The last event a search looks at (the SEARCH_SPAN-th the index serves) and the next, if there are so many."""
    scanned = _scanned(q).with_only_columns(EVENTS.c.ts, EVENTS.c.cost_micros, EVENTS.c.id)
    return scanned.order_by(*_order(EVENTS, q.sort)).offset(SEARCH_SPAN - 1).limit(2)


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


def encode_cursor(key: datetime | int, pk: int) -> str:
    """A page's cursor: the last event's time (or, sorted by cost, its cost) and id."""
    text = f'cost:{key}' if isinstance(key, int) else as_utc(key).isoformat()
    return base64.urlsafe_b64encode(f'{text}|{pk}'.encode()).decode().rstrip('=')


def decode_cursor(cursor: str, sort: str = 'time') -> tuple[Any, int]:
    """(time, id), or (cost in micro-USD, id) for a cursor of the listing sorted by cost."""
    try:
        raw = base64.urlsafe_b64decode(cursor + '=' * (-len(cursor) % 4)).decode()
        key, pk = raw.rsplit('|', 1)
        number = int(pk)
        if not 0 < number < 2**63:
            raise ValueError
    except (ValueError, UnicodeDecodeError):
        raise Invalid('cursor: not a cursor returned by this API') from None
    if key.startswith('cost:') != (sort == 'cost'):
        raise Invalid(f'cursor: it pages the listing sorted by {"time" if sort == "cost" else "cost"}, not by {sort}')
    try:
        if sort == 'cost':
            cost = int(key.removeprefix('cost:'))
            if not 0 <= cost < 2**63:
                raise ValueError
            return cost, number
        return checked_utc(datetime.fromisoformat(key), 'cursor'), number
    except ValueError:
        raise Invalid('cursor: not a cursor returned by this API') from None
