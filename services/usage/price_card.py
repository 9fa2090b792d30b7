"""What a model costs, as ingest would price a call of it now (`spendgauge prices MODEL`, `GET /prices/models/...`):
its price override when it has one, else genai-prices' price from the data in use, with every unit the price has
(tokens of each kind, requests, audio, characters, images) and where it came from. Looked up by the ingest's own
pricer (services/usage/pricing.py), never a second lookup."""
from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Literal

from sqlalchemy import Connection
from typing_extensions import TypedDict

from services.core.errors import Invalid, NotFound
from services.core.money import micros_to_usd, usd_to_micros
from services.usage import price_data
from services.usage.price_data import PriceDataOut
from services.usage.pricing import OverrideRates, Pricer, PriceSheet, bundled_installed_at

MAX_MODELS = 500  # models in use listed at most
MAX_NAME = 200
# genai-prices' unit suffixes: what one price is per
FIRST = ('input_mtok', 'output_mtok', 'cache_read_mtok', 'cache_write_mtok')  # listed in this order, then the rest
UNITS = {'mtok': 'million tokens', 'kcount': 'thousand', 'hours': 'hour', 'mchars': 'million characters'}


class TierOut(TypedDict):
    above_input_tokens: int  # this price applies to calls with more input tokens than this
    micros: int
    usd: str


class PriceOut(TypedDict):
    kind: str  # genai-prices' name (input_mtok, requests_kcount, audio_hours, ...) or an override's
    what: str  # 'input', 'cache read', 'requests', 'image 1024x1024 hd', ...
    per: str  # 'million tokens', 'thousand', 'hour', 'minute', 'call', 'image', 'million characters'
    micros: int  # micro-USD per unit, rounded half-even
    usd: str
    tiers: list[TierOut]  # higher prices for larger calls (empty: one price)


class PriceCard(TypedDict):
    provider: str
    model: str  # as genai-prices names it, or as the override does
    name: str | None  # genai-prices' display name
    source: Literal['override', 'genai-prices']
    data: PriceDataOut  # the genai-prices data in use (an override wins over it for this model)
    data_as_of: str  # ISO date: when that data was fetched, or when the bundled genai-prices was installed
    context_window: int | None
    deprecated: bool
    time_of_day: bool  # the price changes with the hour of the call (shown: the price now)
    prices: list[PriceOut]


class ModelRef(TypedDict):
    provider: str
    model: str


class PriceCardList(TypedDict):
    items: list[PriceCard]  # the models in use (seen in the ledger) that have a price, by provider and model
    unpriced: list[ModelRef]  # models in use without one: their calls are stored as unpriced
    count: int
    truncated: bool  # more than MAX_MODELS models in use: the first ones are listed
    data: PriceDataOut
    data_as_of: str


def model_card(conn: Connection, pricer: Pricer, model: str, provider: str | None = None,
               at: datetime | None = None) -> PriceCard:
    """The price of `model` (of `provider`, else the provider genai-prices knows it by, as ingest infers it).
    NotFound naming the closest names when nothing prices it."""
    model = model.strip()
    if not model or len(model) > MAX_NAME:
        raise Invalid(f'model: a name of 1 to {MAX_NAME} characters')
    provider = (provider or '').strip().lower()
    data = price_data.describe(conn)
    card = _card(pricer, provider or _provider_of(pricer, model), model, data, at)
    if card is not None:
        return card
    closest = pricer.closest_names(provider, model)
    where = f'{provider}/{model}' if provider else model
    hint = f'; closest (provider/model): {", ".join(closest)}' if closest else '; no similar name either'
    raise NotFound(f'model: no price known for {where} (neither a price override nor genai-prices {data["label"]})'
                   + hint)


def models_in_use(conn: Connection, pricer: Pricer, at: datetime | None = None) -> PriceCardList:
    """The price of every model calls were recorded for (the daily rollups), and those without one."""
    data = price_data.describe(conn)
    used = price_data.models_in_use(conn, MAX_MODELS + 1)
    items: list[PriceCard] = []
    unpriced: list[ModelRef] = []
    for provider, model in used[:MAX_MODELS]:
        card = _card(pricer, provider, model, data, at)
        if card is None:
            unpriced.append({'provider': provider, 'model': model})
        else:
            items.append(card)
    return {'items': items, 'unpriced': unpriced, 'count': len(items), 'truncated': len(used) > MAX_MODELS,
            'data': data, 'data_as_of': _as_of(data)}


def _provider_of(pricer: Pricer, model: str) -> str:
    """genai-prices' provider of the model, as the ledger infers a call's provider; else the one provider with an
    override of that name."""
    known = pricer.provider_of(model)
    if known:
        return known
    owners = [p for p, m in pricer.overrides if m == model]
    return owners[0] if len(owners) == 1 else ''


def _card(pricer: Pricer, provider: str, model: str, data: PriceDataOut, at: datetime | None) -> PriceCard | None:
    override = pricer.overrides.get((provider, model))
    sheet = pricer.price_sheet(provider, model, at or datetime.now(UTC))
    if override is None and sheet is None:
        return None
    card: PriceCard = {
        'provider': provider, 'model': model, 'name': sheet.name if sheet else None, 'source': 'genai-prices',
        'data': data, 'data_as_of': _as_of(data), 'context_window': sheet.context_window if sheet else None,
        'deprecated': sheet.deprecated if sheet else False, 'time_of_day': False, 'prices': []}
    if override is not None:
        return {**card, 'source': 'override', 'prices': _override_prices(override)}
    assert sheet is not None
    return {**card, 'provider': sheet.provider, 'model': sheet.model, 'time_of_day': sheet.time_of_day,
            'prices': _sheet_prices(sheet)}


def _as_of(data: PriceDataOut) -> str:
    return (data['fetched_at'] or bundled_installed_at().isoformat())[:10]


def _sheet_prices(sheet: PriceSheet) -> list[PriceOut]:
    prices = []
    for kind, usd in sorted(sheet.prices.items(), key=lambda item: FIRST.index(item[0]) if item[0] in FIRST else 99):
        what, _, unit = kind.rpartition('_')
        tiers = [_tier(start, price) for start, price in sheet.tiers.get(kind, [])]
        prices.append(_price(kind, what.replace('_', ' '), UNITS.get(unit, unit), usd, tiers))
    return prices


def _override_prices(rates: OverrideRates) -> list[PriceOut]:
    per_mtok = {'input': rates.input, 'output': rates.output,  # cache prices default to the input price
                'cache read': rates.input if rates.cache_read is None else rates.cache_read,
                'cache write': rates.input if rates.cache_write is None else rates.cache_write}
    prices = [_price(f'{what.replace(" ", "_")}_mtok', what, 'million tokens', micros)
              for what, micros in per_mtok.items()]
    if rates.request:
        prices.append(_price('request', 'requests', 'call', rates.request))
    if rates.audio_minute is not None:
        prices.append(_price('audio_minute', 'audio', 'minute', rates.audio_minute))
    for (size, quality), micros in sorted(rates.images.items()):
        prices.append(_price('image', f'image {size} {quality}', 'image', micros))
    return prices


def _price(kind: str, what: str, per: str, amount: Decimal | int, tiers: list[TierOut] | None = None) -> PriceOut:
    micros = _micros(amount)
    return {'kind': kind, 'what': what, 'per': per, 'micros': micros, 'usd': micros_to_usd(micros),
            'tiers': tiers or []}


def _tier(start: int, price: Decimal) -> TierOut:
    micros = _micros(price)
    return {'above_input_tokens': start, 'micros': micros, 'usd': micros_to_usd(micros)}


def _micros(amount: Decimal | int) -> int:
    """Decimal USD, or int micro-USD already."""
    return amount if isinstance(amount, int) else usd_to_micros(amount)
