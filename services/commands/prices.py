"""Our own prices for a provider/model, applied before genai-prices; the unpriced calls of that model are priced."""
from __future__ import annotations

from decimal import Decimal

from services.commands.base import CommandContext
from services.core.access import Actor, Role, require
from services.core.errors import NotFound, Unavailable
from services.live.topics import PricesChanged
from services.usage import price_overrides
from services.usage.price_overrides import OverrideOut, UnitPrices


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
        with self.ctx.transaction() as conn:
            result = price_overrides.put(conn, provider, model, usd_per_mtok, units)
        self._reload()
        ledger = self.ctx.ledger
        result['repriced_events'] = ledger.reprice_unpriced(provider, model) if ledger is not None else 0
        self.ctx.publish(PricesChanged(provider, model))
        return result

    def remove(self, actor: Actor, provider: str, model: str) -> None:
        """The model goes back to genai-prices' price."""
        require(actor, Role.ADMIN, 'removing a price')
        provider = provider.lower()
        with self.ctx.transaction() as conn:
            if not price_overrides.remove(conn, provider, model):
                raise NotFound(f'no price override for {provider}/{model}')
        self._reload()
        self.ctx.publish(PricesChanged(provider, model))

    def _reload(self) -> None:
        if self.ctx.pricer is None:
            raise Unavailable('prices cannot change here: no pricer is running')
        with self.ctx.engine.connect() as conn:
            self.ctx.pricer.set_overrides(price_overrides.load(conn))
