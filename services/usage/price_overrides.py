"""Price overrides (USD per million tokens for a provider/model), stored in the database and applied first."""
from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, NotRequired, cast

from sqlalchemy import ColumnElement, Connection, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from typing_extensions import TypedDict

from services.core.money import micros_to_usd, usd_to_micros
from services.core.tables import PRICE_OVERRIDES, ROLLUPS
from services.usage.pricing import OverrideRates

RATE_NAMES = ('input', 'output', 'cache_read', 'cache_write')


class OverrideOut(TypedDict):
    """Our price for a provider/model: micro-USD and USD per million tokens of each kind (cache prices default to
    the input price when null)."""

    provider: str
    model: str
    updated_at: str
    input_micros_per_mtok: int
    input_usd_per_mtok: str
    output_micros_per_mtok: int
    output_usd_per_mtok: str
    cache_read_micros_per_mtok: int | None
    cache_read_usd_per_mtok: str | None
    cache_write_micros_per_mtok: int | None
    cache_write_usd_per_mtok: str | None
    repriced_events: NotRequired[int]  # after a PUT: stored unpriced calls of the model now priced with it


class OverrideList(TypedDict):
    items: list[OverrideOut]  # by provider and model
    count: int


class OverrideDeleted(TypedDict):
    deleted: bool
    provider: str
    model: str


class UnpricedModel(TypedDict):
    provider: str
    model: str
    requests: int  # calls stored at $0 with cost_source=unpriced
    first_seen_hour: str
    last_seen_hour: str


class UnpricedList(TypedDict):
    items: list[UnpricedModel]  # most calls first
    count: int


def load(conn: Connection) -> dict[tuple[str, str], OverrideRates]:
    return {(r.provider, r.model): OverrideRates(r.input_micros_per_mtok, r.output_micros_per_mtok,
                                                 r.cache_read_micros_per_mtok, r.cache_write_micros_per_mtok)
            for r in conn.execute(select(PRICE_OVERRIDES))}


def list_overrides(conn: Connection) -> list[OverrideOut]:
    query = select(PRICE_OVERRIDES).order_by(PRICE_OVERRIDES.c.provider, PRICE_OVERRIDES.c.model)
    return [_public(r) for r in conn.execute(query)]


def put(conn: Connection, provider: str, model: str, usd_per_mtok: dict[str, Decimal | None]) -> OverrideOut:
    values: dict[str, Any] = {'provider': provider, 'model': model, 'updated_at': datetime.now(UTC)}
    for name in RATE_NAMES:
        usd = usd_per_mtok.get(name)
        values[f'{name}_micros_per_mtok'] = None if usd is None else usd_to_micros(usd)
    insert = postgresql.insert if conn.dialect.name == 'postgresql' else sqlite.insert
    statement = insert(PRICE_OVERRIDES).values(**values)
    conn.execute(statement.on_conflict_do_update(
        index_elements=['provider', 'model'],
        set_={k: statement.excluded[k] for k in values if k not in ('provider', 'model')}))
    row = conn.execute(select(PRICE_OVERRIDES).where(_key(provider, model))).one()
    return _public(row)


def remove(conn: Connection, provider: str, model: str) -> bool:
    return conn.execute(delete(PRICE_OVERRIDES).where(_key(provider, model))).rowcount > 0


def _key(provider: str, model: str) -> ColumnElement[bool]:
    return (PRICE_OVERRIDES.c.provider == provider) & (PRICE_OVERRIDES.c.model == model)


def unpriced(conn: Connection) -> list[UnpricedModel]:
    """Models seen without a price: their calls are stored at $0 with cost_source=unpriced until priced."""
    query = (select(ROLLUPS.c.provider, ROLLUPS.c.model, func.sum(ROLLUPS.c.unpriced_requests).label('requests'),
                    func.min(ROLLUPS.c.hour).label('first_seen'), func.max(ROLLUPS.c.hour).label('last_seen'))
             .where(ROLLUPS.c.unpriced_requests > 0).group_by(ROLLUPS.c.provider, ROLLUPS.c.model)
             .order_by(func.sum(ROLLUPS.c.unpriced_requests).desc()))
    return [{'provider': r.provider, 'model': r.model, 'requests': int(r.requests),
             'first_seen_hour': r.first_seen.isoformat(), 'last_seen_hour': r.last_seen.isoformat()}
            for r in conn.execute(query)]


def _public(row: Any) -> OverrideOut:
    result: dict[str, Any] = {'provider': row.provider, 'model': row.model,
                              'updated_at': row.updated_at.isoformat()}
    for name in RATE_NAMES:
        micros = getattr(row, f'{name}_micros_per_mtok')
        result[f'{name}_micros_per_mtok'] = micros
        result[f'{name}_usd_per_mtok'] = None if micros is None else micros_to_usd(micros)
    return cast(OverrideOut, result)
