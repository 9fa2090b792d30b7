"""Price overrides, the models we could not price, newer genai-prices data and re-pricing stored events."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import ConfigDict, Field, StrictBool, StringConstraints, model_validator

from app.api.deps import READ, Admin, ReadConn, RuntimeDep
from app.api.errors import refusals
from services.core.inputs import NO_NUL, Input
from services.core.money import Usd
from services.usage import price_card, price_data, price_overrides, repricing
from services.usage.price_card import MAX_NAME, PriceCard, PriceCardList
from services.usage.price_data import MAX_URL, PriceDataOut, UpdateOut
from services.usage.price_overrides import (
    MAX_IMAGE_PRICES,
    OverrideDeleted,
    OverrideList,
    OverrideOut,
    UnitPrices,
    UnpricedList,
)
from services.usage.repricing import MAX_AUDITS, AuditList, RecalculateOut
from services.usage.units import ANY

router = APIRouter(prefix='/prices', tags=['prices'])
UsdPerMtok = Annotated[Usd, Field(le=1_000_000)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=NO_NUL)]
# as a usage event's images name them (services/usage/events.py), or '*' for any
ImageKey = Annotated[str, StringConstraints(strip_whitespace=True, to_lower=True, min_length=1, max_length=32,
                                            pattern=r'^(\*|[A-Za-z0-9][A-Za-z0-9_.:-]*)$')]


class ImagePriceIn(Input):
    size: ImageKey = Field(default=ANY, description="'1024x1024', '1792x1024', ...; '*' (the default): any size")
    quality: ImageKey = Field(default=ANY, description="'standard', 'hd', ...; '*' (the default): any quality")
    usd: Annotated[Usd, Field(le=1_000)] = Field(description='per image')


class OverrideIn(Input):
    provider: Name
    model: Name
    input_usd_per_mtok: UsdPerMtok
    output_usd_per_mtok: UsdPerMtok
    cache_read_usd_per_mtok: UsdPerMtok | None = Field(default=None, description='defaults to the input price')
    cache_write_usd_per_mtok: UsdPerMtok | None = Field(default=None, description='defaults to the input price')
    request_usd: Annotated[Usd, Field(le=1_000)] | None = Field(default=None, description='per call, on top')
    audio_usd_per_minute: Annotated[Usd, Field(le=1_000)] | None = Field(
        default=None, description="for the calls' audio_seconds (transcription, speech)")
    image_prices: list[ImagePriceIn] = Field(
        default_factory=list, max_length=MAX_IMAGE_PRICES,
        description="per image generated, by size and quality; the exact pair wins over '*'")

    @model_validator(mode='after')
    def _one_price_per_image_kind(self) -> OverrideIn:
        seen: set[tuple[str, str]] = set()
        for price in self.image_prices:
            key = (price.size, price.quality)
            if key in seen:
                raise ValueError(f'image_prices: size {key[0]}, quality {key[1]} is priced twice')
            seen.add(key)
        return self


@router.get('', dependencies=READ)
def list_overrides(conn: ReadConn) -> OverrideList:
    """Our own prices, applied before genai-prices."""
    items = price_overrides.list_overrides(conn)
    return {'items': items, 'count': len(items)}


@router.put('', responses=refusals(e503='No pricer runs in this process'))
def put_override(body: OverrideIn, rt: RuntimeDep, actor: Admin) -> OverrideOut:
    """Create or replace the price of a provider/model: USD per million tokens, and optionally per call, per minute
    of audio and per image by size and quality. Events already stored as unpriced for that model are priced with it
    (`repriced_events`)."""
    units = UnitPrices(body.request_usd, body.audio_usd_per_minute,
                       {(p.size, p.quality): p.usd for p in body.image_prices})
    return rt.commands.prices.put(actor, body.provider, body.model, {
        'input': body.input_usd_per_mtok, 'output': body.output_usd_per_mtok,
        'cache_read': body.cache_read_usd_per_mtok, 'cache_write': body.cache_write_usd_per_mtok}, units)


@router.delete('', responses=refusals(e404='No override for that provider/model',
                                          e503='No pricer runs in this process'))
def delete_override(provider: Annotated[str, Query(min_length=1, max_length=200)],
                    model: Annotated[str, Query(min_length=1, max_length=200)],
                    rt: RuntimeDep, actor: Admin) -> OverrideDeleted:
    """Remove an override; the model goes back to genai-prices."""
    rt.commands.prices.remove(actor, provider, model)
    return {'deleted': True, 'provider': provider.lower(), 'model': model}


@router.get('/unpriced', dependencies=READ)
def unpriced(conn: ReadConn) -> UnpricedList:
    """Models seen without a known price: their calls are stored with cost_source=unpriced, never a silent $0."""
    items = price_overrides.unpriced(conn)
    return {'items': items, 'count': len(items)}


Point = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=40, pattern=NO_NUL)]


class UpdateIn(Input):
    model_config = ConfigDict(extra='forbid')

    url: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_URL,
                                          pattern=NO_NUL)] | None = Field(
        None, description='where to fetch genai-prices data (a JSON list of providers); default: '
                          "SPENDGAUGE_PRICE_DATA_URL, else genai-prices' own")


class RecalculateIn(Input):
    model_config = ConfigDict(extra='forbid', populate_by_name=True)

    start: Point = Field(alias='from', description='ISO date (a local day) or datetime: the first event re-priced')
    end: Point | None = Field(None, alias='to', description='ISO date (inclusive local day) or datetime '
                                                             '(exclusive); default: now')
    dry_run: StrictBool = Field(False, description='only say what would change')


@router.get('/data', dependencies=READ)
def get_price_data(conn: ReadConn) -> PriceDataOut:
    """The genai-prices data prices come from: bundled with genai-prices, or fetched by `POST /prices/update`."""
    return price_data.describe(conn)


@router.post('/update', responses=refusals(e503='No pricer runs in this process'))
def update_prices(body: UpdateIn, rt: RuntimeDep, actor: Admin) -> UpdateOut:
    """Fetch genai-prices data, check it with genai-prices' own types, store it and price with it from now on
    (every instance: the others load it when they hear of the change). Lists what changed for the models in use.
    Stored events keep their cost until `POST /prices/recalculate`."""
    return rt.commands.prices.update(actor, body.url or rt.settings.price_data_url or None)


@router.post('/recalculate', responses=refusals(e503='No ledger runs in this process'))
def recalculate(body: RecalculateIn, rt: RuntimeDep, actor: Admin) -> RecalculateOut:
    """Re-price the events of a range with the current prices (overrides first): priced events take the new price,
    unpriced ones whose model has a price now are priced, reported ones are never touched. Every rollup, total and
    budget counter follows; an audit row says what changed (`GET /prices/audit`). `dry_run`: change nothing."""
    return rt.commands.prices.recalculate(actor, body.start, body.end, body.dry_run)


@router.get('/audit', dependencies=READ)
def audit(conn: ReadConn, limit: Annotated[int, Query(ge=1, le=MAX_AUDITS)] = 50) -> AuditList:
    """The latest re-pricings, newest first: who, which range, how many events changed and by how much."""
    items = repricing.list_audits(conn, limit)
    return {'items': items, 'count': len(items)}


@router.get('/models', dependencies=READ)
def models_in_use(conn: ReadConn, rt: RuntimeDep) -> PriceCardList:
    """The price of each model calls were recorded for, as ingest prices a call now (override, else genai-prices),
    and the models in use without one."""
    return price_card.models_in_use(conn, rt.pricer)


@router.get('/models/{model:path}', dependencies=READ,
            responses=refusals(e404='No price known for the model: the closest names are in the detail'))
def model_price(model: Annotated[str, Path(min_length=1, max_length=MAX_NAME)], conn: ReadConn, rt: RuntimeDep,
                provider: Annotated[str | None, Query(max_length=MAX_NAME)] = None) -> PriceCard:
    """What a model costs per unit (million tokens of each kind, thousand requests, hour of audio, image, ...) and
    where the price comes from. `provider`: default the one genai-prices knows the model by."""
    return price_card.model_card(conn, rt.pricer, model, provider)
