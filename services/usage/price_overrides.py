"""Price overrides for a provider/model, stored in the database and applied first: USD per million tokens, per call,
per minute of audio and per image by size and quality."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, NotRequired, cast

from sqlalchemy import ColumnElement, Connection, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from typing_extensions import TypedDict

from services.core.money import micros_to_usd, usd_to_micros
from services.core.tables import PRICE_OVERRIDES, ROLLUPS
from services.usage.pricing import OverrideRates
from services.usage.units import ANY

RATE_NAMES = ('input', 'output', 'cache_read', 'cache_write')
MAX_IMAGE_PRICES = 100


@dataclass(frozen=True)
class UnitPrices:
    """The prices of an override beyond tokens, in USD: per call, per minute of audio, per image by (size, quality)
    where either may be ANY ('*')."""

    request: Decimal | None = None
    audio_per_minute: Decimal | None = None
    images: dict[tuple[str, str], Decimal] = field(default_factory=dict)


class ImagePrice(TypedDict):
    size: str  # '*': any size
    quality: str  # '*': any quality
    micros: int
    usd: str


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
    request_micros: int | None  # per call, on top of everything else
    request_usd: str | None
    audio_micros_per_minute: int | None  # for audio_seconds
    audio_usd_per_minute: str | None
    image_prices: list[ImagePrice]  # per image generated, by size and quality
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
                                                 r.cache_read_micros_per_mtok, r.cache_write_micros_per_mtok,
                                                 r.request_micros or 0, r.audio_micros_per_minute,
                                                 _image_keys(r.image_micros))
            for r in conn.execute(select(PRICE_OVERRIDES))}


def list_overrides(conn: Connection) -> list[OverrideOut]:
    query = select(PRICE_OVERRIDES).order_by(PRICE_OVERRIDES.c.provider, PRICE_OVERRIDES.c.model)
    return [_public(r) for r in conn.execute(query)]


def put(conn: Connection, provider: str, model: str, usd_per_mtok: dict[str, Decimal | None],
        units: UnitPrices | None = None) -> OverrideOut:
    units = units or UnitPrices()
    values: dict[str, Any] = {'provider': provider, 'model': model, 'updated_at': datetime.now(UTC)}
    for name in RATE_NAMES:
        usd = usd_per_mtok.get(name)
        values[f'{name}_micros_per_mtok'] = None if usd is None else usd_to_micros(usd)
    values['request_micros'] = None if units.request is None else usd_to_micros(units.request)
    values['audio_micros_per_minute'] = (None if units.audio_per_minute is None
                                         else usd_to_micros(units.audio_per_minute))
    values['image_micros'] = ({f'{size}/{quality}': usd_to_micros(usd)
                               for (size, quality), usd in sorted(units.images.items())} or None)
    insert = postgresql.insert if conn.dialect.name == 'postgresql' else sqlite.insert
    statement = insert(PRICE_OVERRIDES).values(**values)
    conn.execute(statement.on_conflict_do_update(
        index_elements=['provider', 'model'],
        set_={k: statement.excluded[k] for k in values if k not in ('provider', 'model')}))
    row = conn.execute(select(PRICE_OVERRIDES).where(_key(provider, model))).one()
    return _public(row)


def get(conn: Connection, provider: str, model: str) -> OverrideOut | None:
    row = conn.execute(select(PRICE_OVERRIDES).where(_key(provider, model))).first()
    return None if row is None else _public(row)


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
    prices = [*(f'{name}_micros_per_mtok' for name in RATE_NAMES), 'request_micros', 'audio_micros_per_minute']
    for name in prices:
        micros = getattr(row, name)
        result[name] = micros
        result[name.replace('micros', 'usd')] = None if micros is None else micros_to_usd(micros)
    result['image_prices'] = [{'size': size, 'quality': quality, 'micros': micros, 'usd': micros_to_usd(micros)}
                              for (size, quality), micros in _image_keys(row.image_micros).items()]
    return cast(OverrideOut, result)


def _image_keys(stored: dict[str, int] | None) -> dict[tuple[str, str], int]:
    """{'1024x1024/hd': 80000} -> {('1024x1024', 'hd'): 80000}"""
    found: dict[tuple[str, str], int] = {}
    for key, micros in (stored or {}).items():
        size, _, quality = key.partition('/')
        found[(size or ANY, quality or ANY)] = int(micros)
    return found
