"""Re-pricing stored events with today's prices (`spendgauge prices recalculate`), after a price update or an
override changed: the events of a range that we priced are priced again with the current pricer (overrides first,
as ingest does), and the difference moves into every rollup and total through the ledger (`Ledger.correct_costs`).

- `reported` events (a cost the caller or LiteLLM gave) are never touched.
- `priced` events take the new price; one whose model has no price any more keeps the one it has (counted as
  `events_kept`), never drops to $0.
- `unpriced` events whose model has a price now become `priced` (as an override's PUT does for its model).

Events are read in batches of BATCH by keyset on (ts, id), each batch priced, written and committed on its own
(on SQLite under the ledger's write lock: ingest waits for one batch at most), so a range of millions of events
never sits in memory. An audit row (`price_audits`) is written when a run starts and brought up to date in each
batch's transaction: it always says what was changed, also of a run that failed half-way. A dry run reads the same
batches and writes nothing.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Connection, insert, select, tuple_, update
from typing_extensions import TypedDict

from services.core.errors import Invalid
from services.core.money import money
from services.core.tables import EVENTS, PRICE_AUDITS
from services.spend.budget import resolve_range
from services.spend.day_zone import day_zone
from services.usage.ledger import TOKEN_COLUMNS, Ledger
from services.usage.pricing import TokenCounts
from services.usage.units import CallUnits

BATCH = 2_000
MAX_AUDITS = 500  # listed at once
REPRICED_SOURCES = ('priced', 'unpriced')
# what the rollups are keyed by and sum, as Ledger.correct_costs needs them, and the units the price needs (not the
# metadata: it may be large)
_COLUMNS = [EVENTS.c[name] for name in ('id', 'ts', 'provider', 'model', 'channel', 'agent_id', 'session_id',
                                        'user_id', 'project', 'task_id', 'tags', *TOKEN_COLUMNS, 'cost_micros',
                                        'cost_source', 'units')]


class ModelDelta(TypedDict):
    provider: str
    model: str
    events: int  # whose cost changed
    before_micros: int
    before_usd: str
    after_micros: int
    after_usd: str
    delta_micros: int  # after - before
    delta_usd: str


class RecalculateOut(TypedDict):
    """What a re-pricing changed (or, dry run, would change)."""

    dry_run: bool
    audit_id: int | None  # GET /prices/audit; None for a dry run
    start: str  # ISO UTC, inclusive
    end: str  # ISO UTC, exclusive
    price_data: str  # the genai-prices data priced with
    events_examined: int  # priced and unpriced events in the range (reported ones are never re-priced)
    events_changed: int  # a new cost, or priced at last
    events_newly_priced: int  # unpriced before, priced now
    events_kept: int  # priced, but no price is known now: they keep the one they have
    before_micros: int  # of the changed events
    before_usd: str
    after_micros: int
    after_usd: str
    delta_micros: int
    delta_usd: str
    by_model: list[ModelDelta]  # largest change first


class AuditOut(RecalculateOut):
    """A re-pricing as the audit keeps it."""

    started_at: str
    finished_at: str | None
    actor: str
    status: str  # running, done, failed
    error: str | None


class AuditList(TypedDict):
    items: list[AuditOut]  # newest first
    count: int


def resolve(conn: Connection, start: str, end: str | None, now: datetime | None = None) -> tuple[datetime, datetime]:
    """The range [start, end) of `from` and `to`: ISO dates (local days of the daily rollups' zone, `to` inclusive)
    or datetimes; `to` defaults to now. At most ten years."""
    end = end or (now or datetime.now(UTC)).isoformat()
    span = resolve_range(None, start, end, day_zone(conn), now)
    return span.start, span.end


@dataclass
class _Tally:
    examined: int = 0
    changed: int = 0
    newly_priced: int = 0
    kept: int = 0
    before: int = 0
    after: int = 0
    by_model: dict[tuple[str, str], list[int]] = field(default_factory=dict)  # [events, before, after]

    def price(self, ledger: Ledger, events: Sequence[Mapping[str, Any]]) -> list[tuple[Mapping[str, Any], int]]:
        """The new cost of each event whose cost changes (or that is priced at last)."""
        corrections = []
        for event in events:
            self.examined += 1
            tokens = TokenCounts(*(event[c] for c in TOKEN_COLUMNS))
            quote = ledger.pricer.quote(event['provider'], event['model'], tokens, event['ts'],
                                        units=CallUnits.from_json(event['units']))
            was_unpriced = event['cost_source'] == 'unpriced'
            if quote.cost_source != 'priced':
                self.kept += not was_unpriced
                continue
            if quote.cost_micros == event['cost_micros'] and not was_unpriced:
                continue
            corrections.append((event, quote.cost_micros))
            self.changed += 1
            self.newly_priced += was_unpriced
            self.before += event['cost_micros']
            self.after += quote.cost_micros
            model = self.by_model.setdefault((event['provider'], event['model']), [0, 0, 0])
            model[0] += 1
            model[1] += event['cost_micros']
            model[2] += quote.cost_micros
        return corrections

    def models(self) -> list[ModelDelta]:
        rows = sorted(self.by_model.items(), key=lambda kv: (-abs(kv[1][2] - kv[1][1]), kv[0]))
        return [cast(ModelDelta, {'provider': provider, 'model': model, 'events': events, **money('before', before),
                                  **money('after', after), **money('delta', after - before)})
                for (provider, model), (events, before, after) in rows]

    def audit_values(self) -> dict[str, Any]:
        return {'events_examined': self.examined, 'events_changed': self.changed,
                'events_newly_priced': self.newly_priced, 'events_kept': self.kept, 'before_micros': self.before,
                'after_micros': self.after,
                'by_model': [{'provider': m['provider'], 'model': m['model'], 'events': m['events'],
                              'before_micros': m['before_micros'], 'after_micros': m['after_micros']}
                             for m in self.models()]}


class Recalculation:
    """One re-pricing of the events in [start, end) by `actor`: `dry_run()` or `apply()` (once)."""

    def __init__(self, ledger: Ledger, start: datetime, end: datetime, actor: str, batch: int = BATCH) -> None:
        if not start < end:
            raise Invalid('to must be after from')
        self.ledger = ledger
        self.start, self.end = start, end
        self.actor = actor
        self.batch = batch
        self.tally = _Tally()
        self.audit_id: int | None = None
        self.price_data = ledger.pricer.data_label

    def dry_run(self) -> RecalculateOut:
        self._run(self.ledger.engine.connect, write=False)
        return self._result(dry_run=True)

    def apply(self) -> RecalculateOut:
        """Re-price batch by batch, each committed with the audit row brought up to date. On a failure the audit
        says `failed` and how far it got, and the error goes on up."""
        with self.ledger.engine.begin() as conn:
            self.audit_id = conn.execute(insert(PRICE_AUDITS).values(
                started_at=datetime.now(UTC), actor=self.actor, range_start=self.start, range_end=self.end,
                status='running', price_data=self.price_data, by_model=[])
                .returning(PRICE_AUDITS.c.id)).scalar_one()
        try:
            self._run(self.ledger.writing, write=True)
        except Exception as exc:
            self._close('failed', f'{type(exc).__name__}: {exc}'[:2000])
            raise
        self._close('done')
        return self._result(dry_run=False)

    def _run(self, connect: Callable[[], AbstractContextManager[Connection]], write: bool) -> None:
        """Batch after batch, each in a transaction of its own: read, priced, and (write) corrected and audited
        before it commits."""
        after: tuple[datetime, int] | None = None
        while True:
            with connect() as conn:
                query = (select(*_COLUMNS).where(EVENTS.c.ts >= self.start, EVENTS.c.ts < self.end,
                                                 EVENTS.c.cost_source.in_(REPRICED_SOURCES))
                         .order_by(EVENTS.c.ts, EVENTS.c.id).limit(self.batch))
                if after is not None:
                    query = query.where(tuple_(EVENTS.c.ts, EVENTS.c.id) > tuple_(*after))
                if write:  # PostgreSQL: no other correction changes these events until the batch commits
                    query = query.with_for_update()
                events = [dict(row) for row in conn.execute(query).mappings()]
                corrections = self.tally.price(self.ledger, events)
                if write and events:
                    self.ledger.correct_costs(conn, corrections)
                    conn.execute(update(PRICE_AUDITS).where(PRICE_AUDITS.c.id == self.audit_id)
                                 .values(**self.tally.audit_values()))
            if len(events) < self.batch:
                return
            after = (events[-1]['ts'], events[-1]['id'])

    def _close(self, status: str, error: str | None = None) -> None:
        with self.ledger.engine.begin() as conn:
            conn.execute(update(PRICE_AUDITS).where(PRICE_AUDITS.c.id == self.audit_id).values(
                status=status, error=error, finished_at=datetime.now(UTC), **self.tally.audit_values()))

    def summary(self) -> RecalculateOut:
        """What the run has changed so far (all of it once `apply` returned)."""
        return self._result(dry_run=False)

    def _result(self, dry_run: bool) -> RecalculateOut:
        t = self.tally
        return {'dry_run': dry_run, 'audit_id': self.audit_id, 'start': self.start.isoformat(),
                'end': self.end.isoformat(), 'price_data': self.price_data, 'events_examined': t.examined,
                'events_changed': t.changed, 'events_newly_priced': t.newly_priced, 'events_kept': t.kept,
                **money('before', t.before), **money('after', t.after),  # type: ignore[typeddict-item]
                **money('delta', t.after - t.before), 'by_model': t.models()}


def list_audits(conn: Connection, limit: int = 50) -> list[AuditOut]:
    """The latest re-pricings, newest first."""
    query = select(PRICE_AUDITS).order_by(PRICE_AUDITS.c.id.desc()).limit(min(max(limit, 1), MAX_AUDITS))
    return [_audit(row) for row in conn.execute(query)]


def _audit(row: Any) -> AuditOut:
    by_model = [{**m, **money('before', m['before_micros']), **money('after', m['after_micros']),
                 **money('delta', m['after_micros'] - m['before_micros'])} for m in row.by_model or []]
    return cast(AuditOut, {
        'dry_run': False, 'audit_id': row.id, 'start': row.range_start.isoformat(), 'end': row.range_end.isoformat(),
        'price_data': row.price_data, 'events_examined': row.events_examined, 'events_changed': row.events_changed,
        'events_newly_priced': row.events_newly_priced, 'events_kept': row.events_kept,
        **money('before', row.before_micros), **money('after', row.after_micros),
        **money('delta', row.after_micros - row.before_micros), 'by_model': by_model,
        'started_at': row.started_at.isoformat(),
        'finished_at': row.finished_at.isoformat() if row.finished_at else None, 'actor': row.actor,
        'status': row.status, 'error': row.error})


