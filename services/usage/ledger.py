"""The only writer of usage events: validate, price, insert idempotently, update the rollups in the same
transaction, then publish a live event."""
from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache
from typing import Any, Literal

import orjson
from pydantic import ValidationError
from sqlalchemy import (
    JSON,
    ColumnElement,
    Connection,
    Engine,
    Table,
    and_,
    bindparam,
    delete,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql
from typing_extensions import TypedDict

from services.audit.journal import Journal
from services.core.db import WalCheckpointer
from services.core.errors import Invalid
from services.core.money import micros_to_usd
from services.core.periods import as_utc, hour_floor, midnight_on_or_before
from services.core.tables import (
    AGENTS,
    DAILY,
    EVENTS,
    HOURLY,
    ROLLUPS,
    SCOPE_ROLLUPS,
    SESSION_AGENTS,
    SESSION_SCOPES,
    SESSIONS,
    TASK_SPEND,
)
from services.live.hub import EventHub
from services.live.hub import hub as default_hub
from services.live.topics import SpendRow, UsageChanged
from services.spend.day_zone import day_zone, local_day
from services.usage import retention
from services.usage.events import UsageEventIn, describe_errors
from services.usage.pricing import Pricer, TokenCounts
from services.usage.units import CallUnits

MAX_BATCH = 10_000
Status = Literal['stored', 'duplicate', 'rejected']
# NOTE: _insert_events builds each row's values in exactly this order.
EVENT_COLUMNS = ('event_id', 'source', 'channel', 'ts', 'provider', 'model', 'agent_id', 'session_id', 'user_id',
                 'project', 'task_id', 'tags', 'input_tokens', 'output_tokens', 'cache_read_tokens',
                 'cache_write_tokens', 'cost_micros', 'cost_source', 'latency_ms', 'metadata', 'created_at', 'kind',
                 'units')
assert set(EVENT_COLUMNS) == {c.name for c in EVENTS.columns} - {'id'}, 'EVENT_COLUMNS is out of date'
INSERT_CHUNK = 32_000 // len(EVENT_COLUMNS)  # SQLite allows 32,766 bound values per statement
REMOVE_CHUNK = 5_000
PRUNE_CHUNK = 5_000
TOKEN_COLUMNS = ('input_tokens', 'output_tokens', 'cache_read_tokens', 'cache_write_tokens')
SUMS = (*TOKEN_COLUMNS, 'cost_micros', 'requests')  # of the hourly, daily and scope rollups
ROLLUP_SUMS = (*SUMS, 'unpriced_requests')
DAY_KEY = ('agent_id', 'provider', 'model', 'channel')
SESSION_SUMS = ('input_tokens', 'output_tokens', 'cost_micros', 'requests')  # of sessions and their breakdowns


class EventOut(TypedDict):
    """A stored usage event."""

    id: int
    event_id: str  # the idempotency key (generated when the caller gave none); unique with source
    source: str  # api, sdk, litellm_callback, litellm_pull, demo
    channel: str  # litellm, direct
    ts: str
    provider: str
    model: str
    agent_id: str | None
    session_id: str | None
    user_id: str | None
    project: str | None
    task_id: str | None
    tags: list[str]
    input_tokens: int  # cache reads and writes included
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_micros: int
    cost_usd: str
    cost_source: str  # priced (by our prices), reported (by the caller or LiteLLM), unpriced (unknown model: $0)
    latency_ms: int | None
    metadata: dict[str, Any]
    created_at: str
    kind: str | None  # chat, embedding, image, audio_transcription, audio_speech; None when not said
    # audio/image tokens (parts of input/output tokens), audio_seconds, characters, images {count, size, quality};
    # None when the call reported none
    units: dict[str, Any] | None


class RecordedEvent(EventOut):
    status: Literal['stored', 'duplicate']  # duplicate: the event_id was recorded before; counted once


class StoredItem(TypedDict):
    index: int  # in the batch
    status: Literal['stored', 'duplicate']
    event_id: str | None
    id: int | None
    cost_micros: int | None
    cost_source: str | None
    cost_usd: str


class RejectedItem(TypedDict):
    index: int
    status: Literal['rejected']
    event_id: str | None  # as sent, when it was a string
    reason: str  # names the field


class BatchOut(TypedDict):
    stored: int
    duplicate: int
    rejected: int
    results: list[StoredItem | RejectedItem]  # one per event, in order


class EventRejected(Invalid):
    """An event failed validation; the message names the field."""


@dataclass
class ItemResult:
    index: int
    status: Status
    event_id: str | None = None
    id: int | None = None
    cost_micros: int | None = None
    cost_source: str | None = None
    reason: str | None = None

    def as_dict(self) -> StoredItem | RejectedItem:
        if self.status == 'rejected':
            return {'index': self.index, 'status': self.status, 'event_id': self.event_id,
                    'reason': self.reason or ''}
        return {'index': self.index, 'status': self.status, 'event_id': self.event_id, 'id': self.id,
                'cost_micros': self.cost_micros, 'cost_source': self.cost_source,
                'cost_usd': micros_to_usd(self.cost_micros or 0)}


def batch_out(results: list[ItemResult]) -> BatchOut:
    """The answer to a batch: how many were stored, repeated and rejected, and each event's result."""
    counts = {'stored': 0, 'duplicate': 0, 'rejected': 0}
    for result in results:
        counts[result.status] += 1
    return {'stored': counts['stored'], 'duplicate': counts['duplicate'], 'rejected': counts['rejected'],
            'results': [r.as_dict() for r in results]}


class Ledger:
    def __init__(self, engine: Engine, pricer: Pricer, hub: EventHub | None = None) -> None:
        self.engine = engine
        self.pricer = pricer
        self.hub = hub or default_hub
        self._dialect = engine.dialect.name
        self._placeholder = '?' if engine.dialect.paramstyle == 'qmark' else '%s'
        # PostgreSQL: one statement per table and batch, its rows as one array per column (see _unnest)
        self._arrays = self._dialect == 'postgresql'
        self._time_to_db = _sqlite_time if self._dialect == 'sqlite' else _same
        self._json_to_db = _sqlite_json if self._dialect == 'sqlite' else _postgres_json
        # SQLite has one writer at a time; taking turns here avoids busy retries between our own threads.
        self._write_lock = threading.Lock() if self._dialect == 'sqlite' else None
        self._writer: Connection | None = None  # SQLite: the connection all writes go through (_transaction)
        # SQLite: checkpoints off the ingest path (services/core/db.py)
        self._checkpointer = WalCheckpointer(engine) if WalCheckpointer.wanted(engine) else None
        self.journal: Journal | None = None  # SPENDGAUGE_AUDIT_LOG: every payload as received goes there too

    # --- public API -------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Close what the ledger holds of its own (SQLite: the write connection and the checkpoint thread), after the
        write under way; the engine stays its owner's to dispose of."""
        if self._write_lock is None:
            return
        with self._write_lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
        if self._checkpointer is not None:
            self._checkpointer.close()

    def record(self, payload: dict[str, Any] | UsageEventIn) -> tuple[Literal['stored', 'duplicate'], EventOut]:
        """Record one event; returns ('stored' | 'duplicate', the stored row). Raises EventRejected."""
        result = self.record_batch([payload])[0]
        if result.status == 'rejected':
            raise EventRejected(result.reason)
        row = self.get_event(result.id) if result.id is not None else None
        assert row is not None and result.status != 'rejected'
        return result.status, row

    def record_batch(self, payloads: Sequence[dict[str, Any] | UsageEventIn]) -> list[ItemResult]:
        """Record many events: valid ones are stored even when others are rejected; repeats are counted once."""
        if len(payloads) > MAX_BATCH:
            raise EventRejected(f'events: at most {MAX_BATCH} events per batch, got {len(payloads)}')
        if self.journal is not None:  # a reference on its queue: written by its own thread
            self.journal.events(payloads)
        results: list[ItemResult] = []
        keyed: list[tuple[ItemResult, tuple[str, str]]] = []
        rows: dict[tuple[str, str], dict[str, Any]] = {}  # the first row for each (source, event_id)
        now = datetime.now(UTC)
        for index, payload in enumerate(payloads):
            try:
                event = payload if isinstance(payload, UsageEventIn) else UsageEventIn.model_validate(payload)
            except ValidationError as exc:
                results.append(ItemResult(index, 'rejected', _raw_event_id(payload), reason=describe_errors(exc)))
                continue
            row = self._row(event, now)
            key = (row['source'], row['event_id'])
            result = ItemResult(index, 'stored', row['event_id'])
            results.append(result)
            keyed.append((result, key))
            rows.setdefault(key, row)
        if not rows:
            return results
        with self.hub.gate.passing():  # until the rows are published: a counter recount waits for them
            return self._store(results, keyed, rows)

    def _store(self, results: list[ItemResult], keyed: list[tuple[ItemResult, tuple[str, str]]],
               rows: dict[tuple[str, str], dict[str, Any]]) -> list[ItemResult]:
        inserted = self._write(list(rows.values()))
        stored = {key: (pk, rows[key]['cost_micros'], rows[key]['cost_source']) for key, pk in inserted.items()}
        stored.update(self._stored([key for key in rows if key not in inserted]))
        first_seen: set[tuple[str, str]] = set()
        for result, key in keyed:
            result.id, result.cost_micros, result.cost_source = stored.get(key, (None, None, None))
            if key not in inserted or key in first_seen:
                result.status = 'duplicate'
            first_seen.add(key)
        if inserted:
            new_rows = [rows[key] for key in inserted]
            # `rows` lets in-memory budget counters follow the ledger exactly, without reading it back
            self.hub.publish(UsageChanged(
                rows=tuple(SpendRow(r['ts'], r['cost_micros'], r['agent_id'], r['session_id'], r['user_id'],
                                    r['project'], tuple(r['tags']), r['provider'], r['model'], r['event_id'],
                                    r['source'], r['channel'])
                           for r in new_rows),
                count=len(new_rows), cost_micros=sum(r['cost_micros'] for r in new_rows),
                agents=tuple(sorted({r['agent_id'] for r in new_rows if r['agent_id']})),
                stored=tuple((pk, rows[key]) for key, pk in inserted.items())))
        return results

    def get_event(self, event_pk: int) -> EventOut | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(EVENTS).where(EVENTS.c.id == event_pk)).mappings().first()
        return event_to_dict(row) if row else None

    # --- internals --------------------------------------------------------------------------------------------

    def _row(self, event: UsageEventIn, now: datetime) -> dict[str, Any]:
        ts = event.ts_utc
        provider = (event.provider or '').strip().lower() or self._infer_provider(event.model)
        tokens = TokenCounts(event.input_tokens, event.output_tokens, event.cache_read_tokens,
                             event.cache_write_tokens)
        units = event.call_units()
        quote = self.pricer.quote(provider, event.model, tokens, ts, event.cost_usd, units)
        return {
            'event_id': event.event_id or uuid.uuid4().hex, 'source': event.source, 'channel': event.channel,
            'ts': ts, 'provider': provider, 'model': event.model, 'agent_id': event.agent_id,
            'session_id': event.session_id, 'user_id': event.user_id, 'project': event.project,
            'task_id': event.task_id, 'tags': event.tags, 'input_tokens': event.input_tokens,
            'output_tokens': event.output_tokens, 'cache_read_tokens': event.cache_read_tokens,
            'cache_write_tokens': event.cache_write_tokens, 'cost_micros': quote.cost_micros,
            'cost_source': quote.cost_source, 'latency_ms': event.latency_ms, 'metadata': event.metadata,
            'created_at': now, 'kind': event.kind, 'units': units.as_json() if units is not None else None,
        }

    def _infer_provider(self, model: str) -> str:
        return self.pricer.provider_of(model) or 'unknown'

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        if self._write_lock is None:
            with self.engine.begin() as conn:
                yield conn
            return
        with self._write_lock:
            # SQLite: always the same connection. Each pooled connection has its own page cache, which SQLite empties
            # whenever another connection has written since; writing through whichever connection the pool hands
            # out would read the event indexes afresh for every batch.
            if self._writer is None or self._writer.closed or self._writer.invalidated:
                self._writer = self.engine.connect()
            with self._writer.begin():
                yield self._writer

    def _write(self, rows: list[dict[str, Any]]) -> dict[tuple[str, str], int]:
        """Insert the new rows and fold them into the rollups, all in one transaction."""
        with self._transaction() as conn:
            inserted = self._insert_events(conn, rows)
            if inserted:
                self._fold(conn, [row for row in rows if (row['source'], row['event_id']) in inserted])
        if inserted and self._checkpointer:
            self._checkpointer.request()
        return inserted

    def reprice_unpriced(self, provider: str, model: str) -> int:
        """Price the events stored as unpriced for a provider/model (after a price override was added) and move
        the difference into the rollups and totals. Returns how many events were priced."""
        with self._transaction() as conn:
            hours = [h for (h,) in conn.execute(
                select(ROLLUPS.c.hour).distinct().where(ROLLUPS.c.provider == provider, ROLLUPS.c.model == model,
                                                        ROLLUPS.c.unpriced_requests > 0))]
            corrections: list[tuple[Mapping[str, Any], int]] = []
            for chunk in _chunks(hours, 200):  # the rollups say which hours to look in: no scan of all events
                in_hours = or_(*(and_(EVENTS.c.ts >= h, EVENTS.c.ts < h + timedelta(hours=1)) for h in chunk))
                query = select(EVENTS).where(EVENTS.c.provider == provider, EVENTS.c.model == model,
                                             EVENTS.c.cost_source == 'unpriced', in_hours)
                for event in conn.execute(query).mappings():
                    tokens = TokenCounts(*(event[c] for c in TOKEN_COLUMNS))
                    quote = self.pricer.quote(provider, model, tokens, event['ts'],
                                              units=CallUnits.from_json(event['units']))
                    if quote.cost_source == 'priced':
                        corrections.append((dict(event), quote.cost_micros))
            self.correct_costs(conn, corrections)
        if corrections:
            self.hub.publish(UsageChanged(rows=None, count=len(corrections),
                                          cost_micros=sum(cost for _, cost in corrections)))
        return len(corrections)

    @contextmanager
    def writing(self) -> Iterator[Connection]:
        """A write transaction of the ledger's (on SQLite under its write lock, on its write connection), for a
        correction made in steps: read events, then `correct_costs` them in the same transaction."""
        with self._transaction() as conn:
            yield conn

    def correct_costs(self, conn: Connection, corrections: Sequence[tuple[Mapping[str, Any], int]]) -> None:
        """Give stored events a new price: each (event as stored, its new cost) becomes cost_source 'priced' with that
        cost, and the difference moves into the rollups and the session, agent and task totals. The event mapping
        needs the columns the rollups are keyed by (see `_fold`), its tokens, cost and cost source. Never for
        reported events. The caller publishes the correction (UsageChanged with rows=None) after committing."""
        if not corrections:
            return
        conn.execute(update(EVENTS).where(EVENTS.c.id == bindparam('pk'))
                     .values(cost_micros=bindparam('cost'), cost_source='priced'),
                     [{'pk': event['id'], 'cost': cost} for event, cost in corrections])
        self._fold(conn, [{**event, 'cost_micros': cost - event['cost_micros'], **dict.fromkeys(TOKEN_COLUMNS, 0)}
                          for event, cost in corrections], requests=0)

    def remove_events(self, where: ColumnElement[bool]) -> int:
        """Delete the events matching `where` and take them out of the rollups and totals: they are folded in
        negated, the aggregate rows they leave without requests are deleted, and the rows that keep other events
        get their first/last times (and an agent its latest session) back from those events. Returns the count."""
        removed, cost, last_id = 0, 0, -1
        hours: set[datetime] = set()
        days: set[date] = set()
        sessions: set[str] = set()
        agents: set[str] = set()
        tasks: set[str] = set()
        with self._transaction() as conn:
            zone = day_zone(conn)
            while True:  # in chunks, all in one transaction: a long-running demo leaves hundreds of thousands
                query = select(EVENTS).where(where, EVENTS.c.id > last_id).order_by(EVENTS.c.id).limit(REMOVE_CHUNK)
                events = [dict(e) for e in conn.execute(query).mappings()]
                if not events:
                    break
                last_id = events[-1]['id']
                conn.execute(delete(EVENTS).where(EVENTS.c.id.in_([e['id'] for e in events])))
                self._fold(conn, [{**e, 'cost_micros': -e['cost_micros'], **{c: -e[c] for c in TOKEN_COLUMNS}}
                                  for e in events], requests=-1)
                removed, cost = removed + len(events), cost + sum(e['cost_micros'] for e in events)
                hours.update(hour_floor(e['ts']) for e in events)
                days.update(local_day(e['ts'], zone) for e in events)
                sessions.update(e['session_id'] for e in events if e['session_id'])
                agents.update(e['agent_id'] for e in events if e['agent_id'])
                tasks.update(e['task_id'] for e in events if e['task_id'])
            self._prune(conn, sorted(hours), sorted(days), sorted(sessions), sorted(agents), sorted(tasks))
        if removed:
            self.hub.publish(UsageChanged(rows=None, count=removed, cost_micros=-cost, agents=tuple(sorted(agents))))
        return removed

    def prune_before(self, before: datetime, chunk: int = PRUNE_CHUNK) -> tuple[datetime, int]:
        """Delete the events older than the local midnight (of the daily rollups' zone) at or before `before`, and
        nothing else: the rollups and the session, agent and task totals keep what they added up to. (Where a local
        midnight cuts an hour, that hour's events stay: services/usage/retention.py.) Oldest first, in chunks of
        `chunk`, each its own short transaction (under the write lock on SQLite), so ingest waits for one chunk at
        most and no more than a chunk's ids are ever in hand. The first chunk that deletes raises the watermark.
        Returns the cutoff and how many events were deleted."""
        with self.engine.connect() as conn:
            zone = day_zone(conn)
            cutoff = midnight_on_or_before(as_utc(before), zone)
            oldest = conn.scalar(select(func.min(EVENTS.c.ts)).where(EVENTS.c.ts < cutoff))
        deleted = 0
        for start, end in retention.prunable_ranges(oldest, cutoff, zone) if oldest is not None else ():
            chunk_ids = (select(EVENTS.c.id).where(EVENTS.c.ts >= start, EVENTS.c.ts < end)
                         .order_by(EVENTS.c.ts, EVENTS.c.id).limit(chunk))
            while True:
                with self._transaction() as conn:
                    count = conn.execute(delete(EVENTS).where(EVENTS.c.id.in_(chunk_ids))).rowcount
                    if count and not deleted:
                        retention.raise_watermark(conn, cutoff)
                deleted += count
                if count < chunk:
                    break
        return cutoff, deleted

    def _prune(self, conn: Connection, hours: list[datetime], days: list[date], sessions: list[str],
               agents: list[str], tasks: list[str]) -> None:
        """After a negated fold: drop the touched aggregate rows left without requests, then recompute the time
        bounds of the touched rows that remain (the fold can only widen them)."""
        for table, column, keys in ((ROLLUPS, ROLLUPS.c.hour, hours), (HOURLY, HOURLY.c.hour, hours),
                                    (DAILY, DAILY.c.day, days),
                                    (SCOPE_ROLLUPS, SCOPE_ROLLUPS.c.hour, hours), (SESSIONS, SESSIONS.c.id, sessions),
                                    (SESSION_AGENTS, SESSION_AGENTS.c.session_id, sessions),
                                    (SESSION_SCOPES, SESSION_SCOPES.c.session_id, sessions),
                                    (AGENTS, AGENTS.c.id, agents), (TASK_SPEND, TASK_SPEND.c.task_id, tasks)):
            for chunk in _chunks(keys, 500):
                conn.execute(delete(table).where(column.in_(chunk), table.c.requests <= 0))

        def bounds(*match: ColumnElement[bool]) -> tuple[Any, Any]:
            return (select(func.min(EVENTS.c.ts)).where(*match).scalar_subquery(),
                    select(func.max(EVENTS.c.ts)).where(*match).scalar_subquery())

        for chunk in _chunks(sessions, 500):
            first, last = bounds(EVENTS.c.session_id == SESSIONS.c.id)
            conn.execute(update(SESSIONS).where(SESSIONS.c.id.in_(chunk)).values(started_at=first, last_event_at=last))
            first, last = bounds(EVENTS.c.session_id == SESSION_AGENTS.c.session_id,
                                 EVENTS.c.agent_id == SESSION_AGENTS.c.agent_id)
            conn.execute(update(SESSION_AGENTS).where(SESSION_AGENTS.c.session_id.in_(chunk))
                         .values(first_ts=first, last_ts=last))
        for chunk in _chunks(agents, 500):
            first, last = bounds(EVENTS.c.agent_id == AGENTS.c.id)
            latest_session = (select(EVENTS.c.session_id)
                              .where(EVENTS.c.agent_id == AGENTS.c.id, EVENTS.c.session_id.is_not(None))
                              .order_by(EVENTS.c.ts.desc(), EVENTS.c.id.desc()).limit(1).scalar_subquery())
            conn.execute(update(AGENTS).where(AGENTS.c.id.in_(chunk))
                         .values(first_seen_at=first, last_request_at=last, last_session_id=latest_session))
        for chunk in _chunks(tasks, 500):
            first, last = bounds(EVENTS.c.task_id == TASK_SPEND.c.task_id)
            conn.execute(update(TASK_SPEND).where(TASK_SPEND.c.task_id.in_(chunk)).values(first_ts=first, last_ts=last))

    def _insert_events(self, conn: Connection, rows: list[dict[str, Any]]) -> dict[tuple[str, str], int]:
        """Multi-row INSERT ... ON CONFLICT DO NOTHING RETURNING, with values converted here rather than by
        SQLAlchemy's per-value type processing (a third of the ingest time otherwise). On PostgreSQL the rows go as
        one array per column (_unnest): a VALUES list of 10,000 placeholders cost psycopg more to parse on every
        batch than the server took to insert it."""
        time_to_db, json_to_db = self._time_to_db, self._json_to_db
        created_at = time_to_db(rows[0]['created_at'])  # one batch, one created_at
        inserted: dict[tuple[str, str], int] = {}
        rows = sorted(rows, key=lambda row: (row['source'], row['event_id']))  # one lock order for all writers
        columns = ', '.join(EVENT_COLUMNS)
        cursor = conn.connection.cursor()
        try:
            if self._arrays:
                chunks: Iterable[list[dict[str, Any]]] = [rows]
            else:
                chunks = _chunks(rows, INSERT_CHUNK)
                row_sql = '(' + ', '.join([self._placeholder] * len(EVENT_COLUMNS)) + ')'
            for chunk in chunks:
                values: list[Any] = []
                for row in chunk:
                    values += [row['event_id'], row['source'], row['channel'], time_to_db(row['ts']), row['provider'],
                               row['model'], row['agent_id'], row['session_id'], row['user_id'], row['project'],
                               row['task_id'], json_to_db(row['tags']), row['input_tokens'], row['output_tokens'],
                               row['cache_read_tokens'], row['cache_write_tokens'], row['cost_micros'],
                               row['cost_source'], row['latency_ms'], json_to_db(row['metadata']), created_at,
                               row['kind'], _units_to_db(row['units'])]
                if self._arrays:  # the flat list, column by column: one array per column
                    width = len(EVENT_COLUMNS)
                    given, values = _unnest(EVENTS, EVENT_COLUMNS), [values[i::width] for i in range(width)]
                else:
                    given = 'VALUES ' + ', '.join([row_sql] * len(chunk))
                cursor.execute(f'INSERT INTO usage_events ({columns}) {given} '
                               'ON CONFLICT (source, event_id) DO NOTHING RETURNING id, source, event_id', values)
                inserted.update(((source, event_id), pk) for pk, source, event_id in cursor.fetchall())
        finally:
            cursor.close()
        return inserted

    def _stored(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], tuple[int, int, str]]:
        """(id, cost_micros, cost_source) of events already in the ledger."""
        found: dict[tuple[str, str], tuple[int, int, str]] = {}
        if not keys:
            return found
        with self.engine.connect() as conn:
            for source in {s for s, _ in keys}:
                event_ids = [e for s, e in keys if s == source]
                for chunk in _chunks(event_ids, 500):
                    query = select(EVENTS.c.id, EVENTS.c.event_id, EVENTS.c.cost_micros, EVENTS.c.cost_source).where(
                        EVENTS.c.source == source, EVENTS.c.event_id.in_(chunk))
                    for r in conn.execute(query):
                        found[(source, r.event_id)] = (r.id, r.cost_micros, r.cost_source)
        return found

    def _fold(self, conn: Connection, rows: list[dict[str, Any]], requests: int = 1) -> None:
        """Add events to the hourly rollups and to the session, agent and task totals. With requests=0 the rows are
        corrections to events already counted (the difference of a new price, their cost_source the one they had:
        an unpriced event is priced now), not new requests; with requests=-1 they are negated events being
        removed."""
        rollups: dict[tuple, dict[str, Any]] = {}
        hourly: dict[tuple, dict[str, Any]] = {}
        daily: dict[tuple, dict[str, Any]] = {}
        scoped: dict[tuple, dict[str, Any]] = {}
        sessions: dict[str, dict[str, Any]] = {}
        session_agents: dict[tuple[str, str], dict[str, Any]] = {}
        session_scopes: dict[tuple[str, str, str], dict[str, Any]] = {}
        agents: dict[str, dict[str, Any]] = {}
        tasks: dict[str, dict[str, Any]] = {}
        zone = day_zone(conn)
        for row in rows:
            ts, agent, session, task = row['ts'], row['agent_id'], row['session_id'], row['task_id']
            hour = hour_floor(ts)
            key = (hour, agent or '', row['provider'], row['model'], row['channel'])
            r = rollups.get(key)
            if r is None:
                r = rollups[key] = dict(zip(('hour', *DAY_KEY), key, strict=True), **_zero(ROLLUP_SUMS))
            _sum(r, row, requests)
            r['unpriced_requests'] += (requests if requests else -1) * (row['cost_source'] == 'unpriced')
            h = hourly.get((hour, row['channel']))
            if h is None:
                h = hourly[(hour, row['channel'])] = {'hour': hour, 'channel': row['channel'], **_zero(SUMS)}
            _sum(h, row, requests)
            day_key = (local_day(ts, zone), *key[1:])
            d = daily.get(day_key)
            if d is None:
                d = daily[day_key] = dict(zip(('day', *DAY_KEY), day_key, strict=True), **_zero(SUMS))
            _sum(d, row, requests)
            for scope, value in (('user', row['user_id']), ('project', row['project']), ('session', session),
                                 *(('tag', tag) for tag in dict.fromkeys(row['tags'] or ()))):
                if value:
                    by_scope = scoped.get((scope, hour, value))
                    if by_scope is None:
                        by_scope = scoped[(scope, hour, value)] = {'scope': scope, 'hour': hour, 'value': value,
                                                                   **_zero(SUMS)}
                    _sum(by_scope, row, requests)
            if session:
                _add(sessions, session, {'id': session}, row, requests)
                if agent:
                    _add(session_agents, (session, agent), {'session_id': session, 'agent_id': agent}, row, requests,
                         first='first_ts', last='last_ts')
                for scope, value in (('user', row['user_id']), ('project', row['project']),
                                     ('provider', row['provider']), ('model', row['model']),
                                     *(('tag', tag) for tag in dict.fromkeys(row['tags'] or ()))):
                    if value:
                        total = session_scopes.get((session, scope, value))
                        if total is None:
                            total = session_scopes[(session, scope, value)] = {
                                'session_id': session, 'scope': scope, 'value': value, **_zero(SESSION_SUMS)}
                        total['input_tokens'] += row['input_tokens']
                        total['output_tokens'] += row['output_tokens']
                        total['cost_micros'] += row['cost_micros']
                        total['requests'] += requests
            if agent:
                a = _add(agents, agent, {'id': agent, 'last_session_id': None, 'paused': False}, row, requests,
                         first='first_seen_at', last='last_request_at')
                if ts >= a['last_request_at'] and session:
                    a['last_session_id'] = session
            if task:
                _add(tasks, task, {'task_id': task}, row, requests, first='first_ts', last='last_ts')
        cursor = conn.connection.cursor()
        try:
            self._upsert(cursor, ROLLUPS, list(rollups.values()), ROLLUP_SUMS)
            self._upsert(cursor, HOURLY, list(hourly.values()), SUMS)
            self._upsert(cursor, DAILY, list(daily.values()), SUMS)
            self._upsert(cursor, SCOPE_ROLLUPS, list(scoped.values()), SUMS)
            sums = SESSION_SUMS
            self._upsert(cursor, SESSIONS, list(sessions.values()), sums, first='started_at', last='last_event_at')
            self._upsert(cursor, SESSION_AGENTS, list(session_agents.values()), sums, first='first_ts',
                         last='last_ts')
            self._upsert(cursor, SESSION_SCOPES, list(session_scopes.values()), SESSION_SUMS)
            self._upsert(cursor, AGENTS, list(agents.values()), sums, first='first_seen_at', last='last_request_at',
                         follow_last=('last_session_id',))
            self._upsert(cursor, TASK_SPEND, list(tasks.values()), sums, first='first_ts', last='last_ts')
        finally:
            cursor.close()

    def _upsert(self, cursor: Any, table: Table, rows: list[dict[str, Any]], sums: Iterable[str],
                first: str | None = None, last: str | None = None, follow_last: Iterable[str] = ()) -> None:
        """Insert rows or add them to existing ones: sums add up, `first` keeps the minimum, `last` the maximum,
        and `follow_last` columns take the new value when the new row is the latest. `rows` has one row per key.

        Plain SQL, not SQLAlchemy's (its per-value processing cost more than the upserts themselves): on SQLite a
        VALUES row run with the driver's executemany (in-process: a statement costs microseconds); on PostgreSQL all
        the rows in one statement as arrays (_unnest), where executemany's statement per row, pipelined or not,
        made a batch of 500 events some 2,000 upserts."""
        if not rows:
            return
        name, columns = table.name, list(rows[0])
        changes = [f'{c} = {name}.{c} + excluded.{c}' for c in sums]
        if first:
            changes.append(f'{first} = CASE WHEN excluded.{first} < {name}.{first} '
                           f'THEN excluded.{first} ELSE {name}.{first} END')
        if last:
            latest = f'excluded.{last} >= {name}.{last}'
            changes.append(f'{last} = CASE WHEN {latest} THEN excluded.{last} ELSE {name}.{last} END')
            changes += [f'{c} = CASE WHEN {latest} THEN COALESCE(excluded.{c}, {name}.{c}) ELSE {name}.{c} END'
                        for c in follow_last]
        key_columns = keys_of(table)
        keys = ', '.join(key_columns)
        source = (_unnest(table, tuple(columns)) if self._arrays
                  else f'VALUES ({", ".join([self._placeholder] * len(columns))})')
        sql = (f'INSERT INTO {name} ({", ".join(columns)}) {source} '
               f'ON CONFLICT ({keys}) DO UPDATE SET {", ".join(changes)}')
        # The same key order in every transaction: concurrent writers on PostgreSQL then queue, never deadlock.
        # (unnest gives the rows in array order, and INSERT ... SELECT takes them in that order.)
        rows = sorted(rows, key=lambda row: tuple(str(row[c]) for c in key_columns))
        if self._arrays:  # PostgreSQL takes aware datetimes as they are (_same): no conversion to make
            cursor.execute(sql, [[row[c] for row in rows] for c in columns])
            return
        times = [c for c in columns if isinstance(rows[0][c], datetime)]
        values = []
        for row in rows:
            if times:
                row = {**row, **{c: self._time_to_db(row[c]) for c in times}}
            values.append([row[c] for c in columns])
        cursor.executemany(sql, values)


def keys_of(table: Table) -> list[str]:
    return [column.name for column in table.primary_key.columns]


@cache
def _unnest(table: Table, columns: tuple[str, ...]) -> str:
    """PostgreSQL: `SELECT * FROM unnest(%b::type[], ...)`, the rows of a multi-row INSERT as one array parameter
    per column, cast to the column's type (JSON columns take their JSON as text). A statement's text and its
    parameter count stay the same whatever the batch size: psycopg parses it once and the server prepares it.
    `%b`: psycopg dumps arrays in binary ten times faster than as text (which it scans for quoting item by item)."""
    casts = []
    for name in columns:
        column_type = table.c[name].type
        cast = 'text[]::json' if isinstance(column_type, JSON) else column_type.compile(dialect=postgresql.dialect())
        casts.append(f'%b::{cast}[]')
    return f'SELECT * FROM unnest({", ".join(casts)})'


def _add(into: dict, key: Any, identity: dict[str, Any], row: dict[str, Any], requests: int,
         first: str = 'started_at', last: str = 'last_event_at') -> dict[str, Any]:
    total = into.get(key)
    if total is None:
        total = into[key] = {**identity, first: row['ts'], last: row['ts'], 'input_tokens': 0, 'output_tokens': 0,
                             'cost_micros': 0, 'requests': 0}
    total['input_tokens'] += row['input_tokens']
    total['output_tokens'] += row['output_tokens']
    total['cost_micros'] += row['cost_micros']
    total['requests'] += requests
    if row['ts'] < total[first]:
        total[first] = row['ts']
    if row['ts'] > total[last]:
        total[last] = row['ts']
    return total


def _zero(names: Iterable[str]) -> dict[str, int]:
    return dict.fromkeys(names, 0)


def _sum(into: dict[str, Any], row: dict[str, Any], requests: int) -> None:
    """Add an event's tokens, cost and request count to a rollup row."""
    for column in TOKEN_COLUMNS:
        into[column] += row[column]
    into['cost_micros'] += row['cost_micros']
    into['requests'] += requests


def _raw_event_id(payload: Any) -> str | None:
    value = payload.get('event_id') if isinstance(payload, dict) else None
    return value if isinstance(value, str) else None


def _chunks(items: list, size: int) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _sqlite_time(value: datetime) -> str:
    """What SQLAlchemy stores in SQLite for an aware UTC datetime: naive UTC text with microseconds."""
    return value.replace(tzinfo=None).isoformat(' ', 'microseconds')


def _sqlite_json(value: Any) -> str:
    return orjson.dumps(value).decode() if value else ('[]' if isinstance(value, list) else '{}')


def _units_to_db(value: dict[str, Any] | None) -> str | None:
    """A nullable JSON column: SQL NULL when there is nothing (a chat call), not JSON 'null'."""
    return None if value is None else orjson.dumps(value).decode()


def _postgres_json(value: Any) -> str:
    """JSON text, for a `text[]::json[]` array (_unnest); the same text psycopg's Json(value) sent before."""
    return orjson.dumps(value).decode()


def _same(value: Any) -> Any:
    return value


def event_to_dict(row: Any) -> EventOut:
    """A stored event (a row mapping) as the API returns it."""
    return {'id': row['id'], 'event_id': row['event_id'], 'source': row['source'], 'channel': row['channel'],
            'ts': row['ts'].isoformat(), 'provider': row['provider'], 'model': row['model'],
            'agent_id': row['agent_id'], 'session_id': row['session_id'], 'user_id': row['user_id'],
            'project': row['project'], 'task_id': row['task_id'], 'tags': row['tags'],
            'input_tokens': row['input_tokens'], 'output_tokens': row['output_tokens'],
            'cache_read_tokens': row['cache_read_tokens'], 'cache_write_tokens': row['cache_write_tokens'],
            'cost_micros': row['cost_micros'], 'cost_usd': micros_to_usd(row['cost_micros']),
            'cost_source': row['cost_source'], 'latency_ms': row['latency_ms'], 'metadata': row['metadata'] or {},
            'created_at': row['created_at'].isoformat(), 'kind': row['kind'], 'units': row['units']}
