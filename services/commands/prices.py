"""Prices: our own for a provider/model, applied before genai-prices (the unpriced calls of that model are priced);
newer genai-prices data (`update`); and re-pricing the stored events of a range with the current prices
(`recalculate`)."""
from __future__ import annotations

import logging
from datetime import datetime
from decimal import Decimal

from services.commands.base import CommandContext
from services.core.access import Actor, Role, require
from services.core.errors import NotFound, Unavailable
from services.live.topics import PricesChanged, UsageChanged
from services.usage import price_data, price_overrides, repricing
from services.usage.price_data import UpdateOut
from services.usage.price_overrides import OverrideOut, UnitPrices
from services.usage.pricing import DEFAULT_PRICE_DATA_URL, Pricer
from services.usage.repricing import RecalculateOut, Recalculation

log = logging.getLogger(__name__)


class PriceCommands:
    def __init__(self, ctx: CommandContext) -> None:
        self.ctx = ctx

    def put(self, actor: Actor, provider: str, model: str, usd_per_mtok: dict[str, Decimal | None],
            units: UnitPrices | None = None) -> OverrideOut:
        """Create or replace the override (USD per million tokens by kind: input, output, cache_read,
        cache_write; and per call, per minute of audio, per image by size and quality); the events stored as
        unpriced for that model are priced with it (`repriced_events`)."""
        require(actor, Role.ADMIN, 'setting a price')
        provider = provider.lower()
        with self.ctx.audited(actor, 'prices.put', f'price:{provider}/{model}') as (conn, entry):
            entry.before = price_overrides.get(conn, provider, model)
            result = price_overrides.put(conn, provider, model, usd_per_mtok, units)
            entry.after = dict(result)
        self._reload()
        ledger = self.ctx.ledger
        result['repriced_events'] = ledger.reprice_unpriced(provider, model) if ledger is not None else 0
        self.ctx.publish(PricesChanged(provider, model))
        return result

    def remove(self, actor: Actor, provider: str, model: str) -> None:
        """The model goes back to genai-prices' price."""
        require(actor, Role.ADMIN, 'removing a price')
        provider = provider.lower()
        with self.ctx.audited(actor, 'prices.remove', f'price:{provider}/{model}') as (conn, entry):
            entry.before = price_overrides.get(conn, provider, model)
            if not price_overrides.remove(conn, provider, model):
                raise NotFound(f'no price override for {provider}/{model}')
        self._reload()
        self.ctx.publish(PricesChanged(provider, model))

    def update(self, actor: Actor, url: str | None = None) -> UpdateOut:
        """Fetch genai-prices data (its published file by default), check it with genai-prices' own types, store
        it and price with it from now on; says what changed for the models in use. Stored events keep their cost
        until `recalculate`."""
        require(actor, Role.ADMIN, 'updating prices')
        pricer = self._pricer()
        url = url or DEFAULT_PRICE_DATA_URL
        raw = price_data.fetch(url)
        sha256 = price_data.sha256_of(raw)
        data = price_data.parse(raw, url, sha256)
        with self.ctx.engine.connect() as conn:
            unchanged = price_data.stored_sha256(conn) == sha256
            models = price_data.models_in_use(conn)
        changes = price_data.changes(pricer, pricer.with_data(data), models)
        if not unchanged:
            with self.ctx.audited(actor, 'prices.update', 'price_data') as (conn, entry):
                entry.before = price_data.describe(conn)
                price_data.store(conn, raw, url, sha256, data, actor.name)
                entry.after = {'data': price_data.describe(conn), 'changes': changes}
        pricer.use_data(data)
        with self.ctx.engine.connect() as conn:
            stored = price_data.describe(conn)
        log.info('prices updated from %s (%s) by %s: %d models in use changed', url, data.label, actor.name,
                 len(changes))
        self.ctx.publish(PricesChanged('', ''))  # every model; other instances load the stored data
        return {'data': stored, 'unchanged': unchanged, 'models_in_use': len(models), 'changes': changes}

    def recalculate(self, actor: Actor, start: str, end: str | None = None, dry_run: bool = False,
                    now: datetime | None = None) -> RecalculateOut:
        """Re-price the priced (and unpriced) events from `start` to `end` (ISO dates, local days with `end`
        inclusive, or datetimes; `end` defaults to now) with the current prices; reported events are never
        touched. Records an audit row, moves the differences into every rollup and total, and the budget checker
        recounts before this returns. `dry_run`: the same summary, nothing changed."""
        require(actor, Role.ADMIN, 're-pricing usage events')
        if self.ctx.ledger is None:
            raise Unavailable('events cannot be re-priced here: no ledger is running')
        with self.ctx.engine.connect() as conn:
            first, after = repricing.resolve(conn, start, end, now)
        run = Recalculation(self.ctx.ledger, first, after, actor.name)
        if dry_run:
            return run.dry_run()
        try:
            result = run.apply()
        finally:
            if run.audit_id is not None:  # committed batch by batch: its trail row once it is over (or failed)
                self.ctx.audit(actor, 'prices.recalculate', f'price_audit:{run.audit_id}',
                               {'cost_micros': run.tally.before}, run.summary())
            if run.tally.changed:  # also of a run that failed after committing some batches
                # a correction: the checker recounts (its rebuild) on this thread, kept reads are dropped, the
                # dashboard reloads, and the other instances recount too
                self.ctx.publish(UsageChanged(rows=None, count=run.tally.changed,
                                              cost_micros=run.tally.after - run.tally.before))
        log.info('re-priced %d of %d events from %s to %s (%s): %+d micro-USD', result['events_changed'],
                 result['events_examined'], result['start'], result['end'], actor.name, result['delta_micros'])
        return result

    def _pricer(self) -> Pricer:
        if self.ctx.pricer is None:
            raise Unavailable('prices cannot change here: no pricer is running')
        return self.ctx.pricer

    def _reload(self) -> None:
        pricer = self._pricer()
        with self.ctx.engine.connect() as conn:
            pricer.set_overrides(price_overrides.load(conn))
