"""Prices LLM calls. The only importer of genai-prices.

Token semantics follow genai-prices: `input_tokens` includes cached tokens (cache reads and cache writes), which
are priced at their own rates. Price overrides from the database are applied first.

`calc_price` costs about 60 µs a call, too slow for bulk ingest, so for each (provider, model, price tier) we
derive the per-token rates once by probing genai-prices itself, then price by four multiplications. Within one
tier genai-prices is linear in the token counts; models with per-request fees take the slow path every time, as do
calls with audio or image tokens, audio seconds or characters (services/usage/units.py).

A call is `unpriced` (never a silent $0) when its price comes to 0 while it reports something the price has no rate
for (images where genai-prices knows no per-image price, audio seconds for a model priced by tokens), or when its
model is priced only by units it does not report (whisper-1 without audio_seconds).

The price data is genai-prices' bundled copy until newer data is given (`use_data`, `spendgauge prices update`):
parsed and checked here with genai-prices' own types (`parse_price_data`). Its network updater is never started.
"""
from __future__ import annotations

import difflib
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import orjson
from genai_prices import Usage, data_snapshot
from genai_prices import __version__ as GENAI_PRICES_VERSION
from genai_prices import data as bundled_data
from genai_prices.types import TieredPrices, _providers_from_raw
from genai_prices.update_prices import DEFAULT_UPDATE_URL
from pydantic import ValidationError

from services.core.money import usd_to_micros
from services.usage.units import ANY, CallUnits

CostSource = Literal['priced', 'reported', 'unpriced']
DEFAULT_PRICE_DATA_URL = DEFAULT_UPDATE_URL  # genai-prices' own: the newest data, in the format this version reads
BUNDLED = f'bundled with genai-prices {GENAI_PRICES_VERSION}'
RATE_KINDS = ('input', 'output', 'cache_read', 'cache_write')  # per million tokens
MTOK = 1_000_000
PICO_PER_USD = 10**12
PICO_PER_MICRO = 10**6
_LINEAR_PRICE_KEYS = {'input_mtok', 'output_mtok', 'cache_read_mtok', 'cache_write_mtok', 'cache_write_1h_mtok',
                      'input_audio_mtok', 'input_image_mtok', 'input_video_mtok', 'output_audio_mtok',
                      'output_image_mtok', 'output_video_mtok', 'output_reasoning_mtok', 'output_citation_mtok',
                      'cache_audio_read_mtok', 'cache_image_read_mtok', 'web_searches_kcount',
                      'storage_searches_kcount'}
_TOKEN_PRICE_KEYS = {'input_mtok', 'output_mtok'}
_AUDIO_TIME_KEYS = {'audio_hours', 'input_audio_hours', 'output_audio_hours'}
_CHARACTER_KEYS = {'input_mchars'}
MS_PER_MINUTE = 60_000
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TokenCounts:
    input_tokens: int = 0  # includes cache_read_tokens and cache_write_tokens
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    @property
    def uncached_input_tokens(self) -> int:
        return self.input_tokens - self.cache_read_tokens - self.cache_write_tokens


class NoRate(ValueError):
    """The price has no rate for what the call reports (or the call reports nothing its price is made of)."""


@dataclass(frozen=True)
class OverrideRates:
    """Micro-USD per million tokens (cache rates default to the input rate; audio and image tokens are priced as
    the input or output tokens they are part of), per call, per minute of audio, and per image by (size, quality),
    where either may be ANY."""

    input: int
    output: int
    cache_read: int | None = None
    cache_write: int | None = None
    request: int = 0
    audio_minute: int | None = None
    images: Mapping[tuple[str, str], int] = field(default_factory=dict)

    def cost_micros(self, tokens: TokenCounts, units: CallUnits | None = None) -> int:
        """Rounded half-even once, for the whole call. Raises NoRate."""
        cache_read = self.input if self.cache_read is None else self.cache_read
        cache_write = self.input if self.cache_write is None else self.cache_write
        numerator = (tokens.uncached_input_tokens * self.input + tokens.cache_read_tokens * cache_read
                     + tokens.cache_write_tokens * cache_write + tokens.output_tokens * self.output)
        if units is None:
            cost = divide_half_even(numerator, MTOK) + self.request
            if cost == 0:
                self._check_reported(units)
            return cost
        unrated = []
        audio_ms = int(units.audio_seconds * 1000) if units.audio_seconds else 0
        if audio_ms and self.audio_minute is None:
            unrated.append('audio_seconds')
        numerator = numerator * MS_PER_MINUTE + audio_ms * (self.audio_minute or 0) * MTOK
        fixed = self.request
        if units.images is not None and units.images.count:
            if self.images:
                fixed += units.images.count * self.image_price(units.images.size, units.images.quality)
            else:
                unrated.append('images')
        if units.characters:
            unrated.append('characters')
        cost = divide_half_even(numerator, MTOK * MS_PER_MINUTE) + fixed
        if cost == 0 and unrated:
            raise NoRate(f'the price override has no rate for {" or ".join(unrated)}')
        if cost == 0:
            self._check_reported(units)
        return cost

    def _check_reported(self, units: CallUnits | None) -> None:
        """For a call priced at 0 by an override made only of per-image or per-minute prices: NoRate when the call
        reports neither images nor audio seconds (a DALL-E 3 call sent without its images)."""
        if self.input or self.output or self.cache_read or self.cache_write or self.request:
            return
        wanted = [name for name, rated in (('images', self.images), ('audio_seconds', self.audio_minute)) if rated]
        reported = units is not None and ((units.images is not None and units.images.count) or units.audio_seconds)
        if wanted and not reported:
            raise NoRate(f'the price override prices this model by {" or ".join(wanted)}, which the call does not '
                         'report')

    def image_price(self, size: str | None, quality: str | None) -> int:
        """Micro-USD per image of this size and quality: the exact pair first, then either one with ANY."""
        size, quality = size or ANY, quality or ANY
        for key in ((size, quality), (size, ANY), (ANY, quality), (ANY, ANY)):
            if key in self.images:
                return self.images[key]
        priced = ', '.join(f'{s}/{q}' for s, q in sorted(self.images))
        raise NoRate(f'the price override has no image price for size {size}, quality {quality} (priced: {priced})')


@dataclass(frozen=True)
class Quote:
    cost_micros: int
    cost_source: CostSource
    reason: str = ''


@dataclass(frozen=True)
class _LinearRates:
    """USD per token for uncached input, cache read, cache write and output, within one price tier."""

    uncached: Decimal
    cache_read: Decimal
    cache_write: Decimal
    output: Decimal
    picos: tuple[int, int, int, int] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Published prices have few decimals, so rates are almost always whole pico-USD per token: then the cost
        # is integer arithmetic, exactly equal to the Decimal sum and several times faster.
        picos = [rate * PICO_PER_USD for rate in (self.uncached, self.cache_read, self.cache_write, self.output)]
        exact = all(p == p.to_integral_value() for p in picos)
        object.__setattr__(self, 'picos', tuple(int(p) for p in picos) if exact else None)

    def cost_micros(self, t: TokenCounts) -> int:
        picos = self.picos
        if picos is None:
            return usd_to_micros(self.uncached * t.uncached_input_tokens + self.cache_read * t.cache_read_tokens
                                 + self.cache_write * t.cache_write_tokens + self.output * t.output_tokens)
        total = (picos[0] * (t.input_tokens - t.cache_read_tokens - t.cache_write_tokens)
                 + picos[1] * t.cache_read_tokens + picos[2] * t.cache_write_tokens + picos[3] * t.output_tokens)
        return divide_half_even(total, PICO_PER_MICRO)


MixRates = OverrideRates | _LinearRates  # each has cost_micros(TokenCounts)


class UnknownModel(LookupError):
    pass


@dataclass(frozen=True)
class CatalogueModel:
    """A model genai-prices knows, by its own ids (which `quote` takes), with its context window (None: unknown)."""

    provider: str
    model: str
    context_window: int | None


# Specialised models (audio, images, search, embeddings, fine-tunes): priced per text token too, but not a stand-in
# for a chat model, so never offered as a cheaper tier of one
SPECIALISED = ('audio', 'realtime', 'transcribe', 'tts', 'image', 'search', 'embedding', 'moderation', 'computer-use',
               'deep-research', 'ft:', '.ft-')
_TEXT_PRICE_KEYS = {'input_mtok', 'output_mtok', 'cache_read_mtok', 'cache_write_mtok', 'cache_write_1h_mtok',
                    'web_searches_kcount', 'storage_searches_kcount'}


@dataclass(frozen=True)
class PriceSheet:
    """What genai-prices charges for a model at one time, as plain data: USD per unit for each price it gives, by
    genai-prices' own names (input_mtok: per million input tokens, requests_kcount: per thousand requests,
    audio_hours: per hour of audio, ...), each with its higher tiers (above so many input tokens)."""

    provider: str  # genai-prices' ids, which `quote` takes
    model: str
    name: str | None
    context_window: int | None
    deprecated: bool
    prices: dict[str, Decimal]  # the base (lowest tier) price per unit
    tiers: dict[str, list[tuple[int, Decimal]]]  # (input tokens above which, price) for tiered prices
    time_of_day: bool  # the price depends on the hour of each call (off-peak discounts)


class InvalidPriceData(ValueError):
    """Data that is not genai-prices data this version can read; the message says what is wrong."""


@dataclass(frozen=True)
class PriceData:
    """genai-prices data other than the bundled copy, read by genai-prices' own types."""

    providers: list[Any]
    label: str  # what it is, for people: e.g. the SHA-256 of the file it came from

    @property
    def model_count(self) -> int:
        return sum(len(provider.models) for provider in self.providers)


def parse_price_data(raw: bytes | str, label: str) -> PriceData:
    """Read genai-prices' data file (the JSON list of providers it publishes), checked with its own types."""
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidPriceData(f'not JSON ({exc})') from None
    if not isinstance(payload, list) or not payload:
        raise InvalidPriceData('not a list of providers: genai-prices data is a JSON list of providers')
    try:
        providers = _providers_from_raw(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = '.'.join(str(part) for part in first['loc'][:6])
        raise InvalidPriceData(f'not genai-prices data: {exc.error_count()} errors, the first at {where}: '
                               f'{first["msg"]}') from None
    except (TypeError, ValueError, KeyError) as exc:
        raise InvalidPriceData(f'not genai-prices data: {exc}') from None
    data = PriceData(providers, label)
    if data.model_count == 0:
        raise InvalidPriceData('no models in it')
    return data


@dataclass
class _Lookups:
    """One price data set and what was looked up in it: swapped whole when the data changes, so a call in flight
    finishes on the data it started with and nothing of the old data stays cached."""

    snapshot: Any
    label: str
    models: dict[tuple[str, str], tuple[Any, Any] | None] = field(default_factory=dict)
    prices: dict[tuple[str, str, date], tuple[Any, tuple[int, ...], bool]] = field(default_factory=dict)
    rates: dict[tuple[str, str, date, int], _LinearRates] = field(default_factory=dict)
    catalogues: dict[tuple[str, str, date], list[CatalogueModel]] = field(default_factory=dict)


class Pricer:
    """Turns (provider, model, tokens) into micro-USD; thread-safe, caches every lookup."""

    def __init__(self, overrides: dict[tuple[str, str], OverrideRates] | None = None,
                 data: PriceData | None = None) -> None:
        self._overrides = dict(overrides or {})
        self._lookups = _lookups_for(data)
        self._lock = threading.Lock()

    def set_overrides(self, overrides: dict[tuple[str, str], OverrideRates]) -> None:
        self._overrides = dict(overrides)

    @property
    def overrides(self) -> Mapping[tuple[str, str], OverrideRates]:
        return self._overrides

    def use_data(self, data: PriceData | None) -> None:
        """Price with `data` from now on (None: the data bundled with genai-prices)."""
        self._lookups = _lookups_for(data)

    @property
    def data_label(self) -> str:
        return self._lookups.label

    def with_data(self, data: PriceData | None) -> Pricer:
        """Another pricer with these overrides and `data` (to compare prices before switching)."""
        return Pricer(self._overrides, data)

    def quote(self, provider: str, model: str, tokens: TokenCounts, ts: datetime | None = None,
              reported_cost_usd: Decimal | None = None, units: CallUnits | None = None) -> Quote:
        """The cost of one call: a caller-reported cost wins, then an override, then genai-prices."""
        if reported_cost_usd is not None:
            return Quote(usd_to_micros(reported_cost_usd), 'reported')
        override = self._overrides.get((provider, model))
        if override is not None:
            try:
                return Quote(override.cost_micros(tokens, units), 'priced', 'override')
            except NoRate as exc:
                return Quote(0, 'unpriced', f'{provider}/{model}: {exc}')
        try:
            return Quote(self.genai_price_micros(provider, model, tokens, ts, units), 'priced')
        except UnknownModel as exc:
            return Quote(0, 'unpriced', str(exc))
        except ValueError as exc:  # usage genai-prices cannot price for this model
            return Quote(0, 'unpriced', str(exc))

    def genai_price_micros(self, provider: str, model: str, tokens: TokenCounts, ts: datetime | None = None,
                           units: CallUnits | None = None) -> int:
        """The genai-prices cost, rounded half-even to micro-USD. Raises UnknownModel, or ValueError (NoRate) for
        usage genai-prices cannot price for this model."""
        lookups = self._lookups
        ts = ts or datetime.now(UTC)
        day = ts.date()
        model_price, tier_starts, linear = self._model_price(lookups, provider, model, day)
        if isinstance(model_price, _TimeOfDayPrices):
            return usd_to_micros(model_price.model_info.get_prices(ts).calc_price(_usage(tokens, units))['total_price'])
        full_usage = units is not None and (units.has_token_parts or units.audio_seconds or units.characters)
        if not linear or full_usage:
            cost = usd_to_micros(model_price.calc_price(_usage(tokens, units))['total_price'])
            if cost == 0:
                _check_rated(model_price, tokens, units)
            return cost
        if units is not None and units.images is not None and units.images.count and not tokens.input_tokens \
                and not tokens.output_tokens:
            _check_rated(model_price, tokens, units)
        # tier -1: no input tokens, so only the output rate is known from the probe
        tier = sum(tokens.input_tokens > start for start in tier_starts) if tokens.input_tokens else -1
        key = (provider, model, day, tier)
        rates = lookups.rates.get(key)
        if rates is None:
            rates = _probe_rates(model_price, tokens.input_tokens)
            lookups.rates[key] = rates
        return rates.cost_micros(tokens)

    def rates_per_mtok(self, provider: str, model: str, at: datetime | None = None) -> dict[str, Decimal] | None:
        """genai-prices' USD per million tokens of each kind (RATE_KINDS) for the model at `at` (the lowest tier's
        where prices are tiered), or None when it does not know the model. Overrides are not applied."""
        sheet = self.price_sheet(provider, model, at)
        if sheet is None:
            return None
        return {kind: sheet.prices[f'{kind}_mtok'] for kind in RATE_KINDS if f'{kind}_mtok' in sheet.prices}

    def price_sheet(self, provider: str, model: str, at: datetime | None = None) -> PriceSheet | None:
        """genai-prices' price of the model at `at` (default now) with every unit it has, found as `quote` finds it;
        None when genai-prices does not know the model. Overrides are not applied."""
        found = self._find(self._lookups, provider, model)
        if found is None:
            return None
        provider_info, info = found
        given = _given_prices(info.get_prices(at or datetime.now(UTC)))
        prices = {key: Decimal(value.base if isinstance(value, TieredPrices) else value) for key, value in
                  given.items() if isinstance(value, TieredPrices | Decimal | int | float)}
        tiers = {key: [(tier.start, Decimal(tier.price)) for tier in value.tiers]
                 for key, value in given.items() if isinstance(value, TieredPrices)}
        return PriceSheet(provider_info.id, info.id, info.name, info.context_window, bool(info.deprecated), prices,
                          tiers, _has_time_of_day_prices(info))

    def closest_names(self, provider: str, model: str, limit: int = 5) -> list[str]:
        """The 'provider/model' names most like `model` (of `provider` when genai-prices knows it), overrides
        included: the model ids containing it first (shortest first), then the most similar ones."""
        wanted = model.strip().lower()
        providers = [p for p in self._lookups.snapshot.providers if not provider or p.id == provider.lower()] \
            or self._lookups.snapshot.providers  # in genai-prices' order: the model makers first
        names = [*(f'{p}/{m}' for p, m in self._overrides if not provider or p == provider.lower()),
                 *(f'{p.id}/{m.id}' for p in providers for m in p.models)]
        first: dict[str, str] = {}  # model id -> the first name that has it
        for name in names:
            first.setdefault(name.split('/', 1)[1], name)
        containing = sorted((i for i in first if wanted and wanted in i.lower()), key=len)
        similar = difflib.get_close_matches(wanted, list(first), n=limit, cutoff=0.6)
        overridden = {f'{p}/{m}' for p, m in self._overrides}
        # as a call of that name is priced (aliases once); an id genai-prices' own matching does not find is left out
        resolved = (self.resolve(provider, i) or (first[i] if first[i] in overridden else None)
                    for i in dict.fromkeys([*containing, *similar]))
        return list(dict.fromkeys(name for name in resolved if name))[:limit]

    def _model_price(self, lookups: _Lookups, provider: str, model: str,
                     day: date) -> tuple[Any, tuple[int, ...], bool]:
        cached = lookups.prices.get((provider, model, day))
        if cached is not None:
            return cached
        found = self._find(lookups, provider, model)
        if found is None:
            raise UnknownModel(f'no price known for {provider}/{model}')
        _provider, model_info = found
        if _has_time_of_day_prices(model_info):
            result: tuple[Any, tuple[int, ...], bool] = (_TimeOfDayPrices(model_info), (), False)
            lookups.prices[(provider, model, day)] = result
            return result
        model_price = model_info.get_prices(datetime.combine(day, datetime.min.time(), tzinfo=UTC))
        prices = _given_prices(model_price)
        starts = sorted({tier.start for v in prices.values() if isinstance(v, TieredPrices) for tier in v.tiers})
        linear = set(prices) <= _LINEAR_PRICE_KEYS
        result = (model_price, tuple(starts), linear)
        lookups.prices[(provider, model, day)] = result
        return result

    def _find(self, lookups: _Lookups, provider: str, model: str) -> tuple[Any, Any] | None:
        key = (provider, model)
        if key in lookups.models:
            return lookups.models[key]
        with self._lock:
            found = _lookup(lookups.snapshot, provider, model)
            lookups.models[key] = found
        return found

    def catalogue_entry(self, provider: str, model: str) -> CatalogueModel | None:
        """Our (provider, model) as genai-prices names it (as given when only an override prices it); None when
        neither knows the model."""
        found = self._find(self._lookups, provider, model)
        if found is None:
            return CatalogueModel(provider, model, None) if (provider, model) in self._overrides else None
        return CatalogueModel(found[0].id, found[1].id, found[1].context_window)

    def provider_models(self, provider: str, model: str, ts: datetime) -> list[CatalogueModel]:
        """The chat models of `model`'s provider besides it, as priced on the day of `ts`: not deprecated, with a
        known context window, prices per input and output token and no others (audio, images), not SPECIALISED."""
        lookups = self._lookups
        found = self._find(lookups, provider, model)
        if found is None:
            return []
        provider_info, current = found
        key = (provider_info.id, current.id, ts.date())
        cached = lookups.catalogues.get(key)
        if cached is not None:
            return cached
        ts = datetime.combine(ts.date(), datetime.min.time(), tzinfo=UTC)
        models = []
        for info in provider_info.models:
            if info.id == current.id or info.deprecated or not info.context_window:
                continue
            if any(word in info.id for word in SPECIALISED):
                continue
            prices = info.get_prices(ts)
            keys = set(_given_prices(prices))
            if _TOKEN_PRICE_KEYS <= keys <= _TEXT_PRICE_KEYS and self.resolve(provider_info.id, info.id) \
                    == f'{provider_info.id}/{info.id}':
                models.append(CatalogueModel(provider_info.id, info.id, info.context_window))
        lookups.catalogues[key] = models
        return models

    def mix_rates(self, provider: str, model: str, ts: datetime) -> MixRates | str:
        """The rates that price summed tokens of many calls at `ts` exactly as `quote` prices each call (before its
        rounding): an override's, or genai-prices' linear ones. Else why not: price tiers by the size of a call,
        prices by the time of day, per-request fees and an override's prices per image or minute depend on each
        call, which a sum no longer tells."""
        override = self._overrides.get((provider, model))
        if override is not None:
            if override.request or override.audio_minute is not None or override.images:
                return 'priced by its override per image, minute of audio or call'
            return override
        day = ts.date()
        lookups = self._lookups
        try:
            model_price, tier_starts, linear = self._model_price(lookups, provider, model, day)
        except UnknownModel as exc:
            return str(exc)
        if isinstance(model_price, _TimeOfDayPrices):
            return 'priced by the time of day of each call'
        if not linear:
            return 'priced per request or by more than tokens'
        if tier_starts:
            return 'priced in tiers by the size of each call'
        key = (provider, model, day, 0)  # the one tier of any call with input tokens, as genai_price_micros keys it
        rates = lookups.rates.get(key)
        if rates is None:
            rates = lookups.rates[key] = _probe_rates(model_price, MTOK)
        return rates

    def resolve(self, provider: str, model: str) -> str | None:
        """genai-prices' 'provider/model' id for ours, or None when it does not know the model."""
        found = self._find(self._lookups, provider, model)
        return f'{found[0].id}/{found[1].id}' if found else None

    def provider_of(self, model: str) -> str | None:
        """The provider genai-prices knows the model under (a call that names none is stored under it), or None."""
        found = self._find(self._lookups, '', model)
        return found[0].id if found else None


def bundled_installed_at() -> date:
    """When the bundled price data was installed (its file's date): it is at least this old. genai-prices states
    no date of its own."""
    return datetime.fromtimestamp(Path(bundled_data.__file__).stat().st_mtime, UTC).date()


def _lookups_for(data: PriceData | None) -> _Lookups:
    if data is None:
        return _Lookups(data_snapshot.get_snapshot(), BUNDLED)
    return _Lookups(data_snapshot.DataSnapshot(providers=data.providers, from_auto_update=False), data.label)


@dataclass(frozen=True)
class _TimeOfDayPrices:
    """A model whose price depends on the hour (off-peak discounts): priced at each call's own time."""

    model_info: Any


def _has_time_of_day_prices(model_info: Any) -> bool:
    prices = model_info.prices if isinstance(model_info.prices, list) else []
    return any(p.constraint is not None and 'TimeOf' in type(p.constraint).__name__ for p in prices)


def _given_prices(model_price: Any) -> dict[str, Any]:
    """The prices a genai-prices ModelPrice gives, by field name (input_mtok, requests_kcount, ...)."""
    return {k: v for k, v in model_price.__dict__.items() if not k.startswith('_') and v is not None}


def _lookup(snapshot: Any, provider: str, model: str) -> tuple[Any, Any] | None:
    provider_id = provider.strip().lower() or None
    candidates = [model]
    if '/' in model and provider_id and model.lower().startswith(provider_id + '/'):
        candidates.append(model.split('/', 1)[1])  # LiteLLM style 'openai/gpt-4o'
    for ref in candidates:
        for pid in (provider_id, None) if provider_id else (None,):
            try:
                return snapshot.find_provider_model(ref, None, pid, None)
            except LookupError as exc:
                if pid is not None and 'Unable to find provider' not in str(exc):
                    break  # the provider is known but the model is not: don't guess another provider
    return None


def _usage(tokens: TokenCounts, units: CallUnits | None = None) -> Usage:
    if units is None:
        return Usage(input_tokens=tokens.input_tokens, output_tokens=tokens.output_tokens,
                     cache_read_tokens=tokens.cache_read_tokens, cache_write_tokens=tokens.cache_write_tokens)
    extra = {'input_audio_tokens': units.audio_input_tokens, 'output_audio_tokens': units.audio_output_tokens,
             'input_image_tokens': units.image_input_tokens, 'output_image_tokens': units.image_output_tokens,
             'audio_seconds': units.audio_seconds, 'input_characters': units.characters}
    return Usage(input_tokens=tokens.input_tokens, output_tokens=tokens.output_tokens,
                 cache_read_tokens=tokens.cache_read_tokens, cache_write_tokens=tokens.cache_write_tokens,
                 **{k: v for k, v in extra.items() if v})


def _check_rated(model_price: Any, tokens: TokenCounts, units: CallUnits | None) -> None:
    """For a call genai-prices priced at 0: NoRate when it reports units the price has no rate for, or reports none
    of the units a price without token rates is made of."""
    keys = set(_given_prices(model_price))
    unrated = []
    if units is not None:
        if units.images is not None and units.images.count:
            unrated.append('images')  # genai-prices has no per-image prices
        if units.audio_seconds and not keys & _AUDIO_TIME_KEYS:
            unrated.append('audio_seconds')
        if units.characters and not keys & _CHARACTER_KEYS:
            unrated.append('characters')
    if unrated:
        raise NoRate(f'genai-prices has no price per {" or ".join(unrated)} for this model; set a price override')
    if keys & _TOKEN_PRICE_KEYS:
        return
    wanted = [name for name, found in (('audio_seconds', keys & _AUDIO_TIME_KEYS),
                                       ('characters', keys & _CHARACTER_KEYS)) if found]
    if wanted and not (units is not None and (units.audio_seconds or units.characters)):
        raise NoRate(f'genai-prices prices this model by {" or ".join(wanted)}, which the call does not report')


def _probe_rates(model_price: Any, input_tokens: int) -> _LinearRates:
    """Per-token rates in the tier of `input_tokens`, read off genai-prices with probe usages of that size."""
    probe = max(input_tokens, 1)

    def total(**kwargs: int) -> Decimal:
        return Decimal(model_price.calc_price(Usage(**kwargs))['total_price'])

    output = total(input_tokens=input_tokens, output_tokens=MTOK) - total(input_tokens=input_tokens)
    if input_tokens == 0:  # no input means no cache tokens either; input rates are never used
        zero = Decimal(0)
        return _LinearRates(zero, zero, zero, output / MTOK)
    return _LinearRates(
        uncached=total(input_tokens=probe) / probe,
        cache_read=total(input_tokens=probe, cache_read_tokens=probe) / probe,
        cache_write=total(input_tokens=probe, cache_write_tokens=probe) / probe,
        output=output / MTOK,
    )


def divide_half_even(numerator: int, denominator: int) -> int:
    quotient, remainder = divmod(numerator, denominator)
    twice = 2 * remainder
    if twice > denominator or (twice == denominator and quotient % 2 == 1):
        quotient += 1
    return quotient
