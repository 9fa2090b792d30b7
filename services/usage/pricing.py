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
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Literal

from genai_prices import Usage, data_snapshot
from genai_prices.types import TieredPrices

from services.core.money import usd_to_micros
from services.usage.units import ANY, CallUnits

CostSource = Literal['priced', 'reported', 'unpriced']
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
            cost = _divide_half_even(numerator, MTOK) + self.request
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
        cost = _divide_half_even(numerator, MTOK * MS_PER_MINUTE) + fixed
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
        return _divide_half_even(total, PICO_PER_MICRO)


class UnknownModel(LookupError):
    pass


class Pricer:
    """Turns (provider, model, tokens) into micro-USD; thread-safe, caches every lookup."""

    def __init__(self, overrides: dict[tuple[str, str], OverrideRates] | None = None) -> None:
        self._overrides = dict(overrides or {})
        self._models: dict[tuple[str, str], tuple[Any, Any] | None] = {}
        self._prices: dict[tuple[str, str, date], tuple[Any, tuple[int, ...], bool]] = {}
        self._rates: dict[tuple[str, str, date, int], _LinearRates] = {}
        self._lock = threading.Lock()

    def set_overrides(self, overrides: dict[tuple[str, str], OverrideRates]) -> None:
        self._overrides = dict(overrides)

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
        ts = ts or datetime.now(UTC)
        day = ts.date()
        model_price, tier_starts, linear = self._model_price(provider, model, day)
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
        rates = self._rates.get(key)
        if rates is None:
            rates = _probe_rates(model_price, tokens.input_tokens)
            self._rates[key] = rates
        return rates.cost_micros(tokens)

    def _model_price(self, provider: str, model: str, day: date) -> tuple[Any, tuple[int, ...], bool]:
        cached = self._prices.get((provider, model, day))
        if cached is not None:
            return cached
        found = self._find(provider, model)
        if found is None:
            raise UnknownModel(f'no price known for {provider}/{model}')
        _provider, model_info = found
        if _has_time_of_day_prices(model_info):
            result: tuple[Any, tuple[int, ...], bool] = (_TimeOfDayPrices(model_info), (), False)
            self._prices[(provider, model, day)] = result
            return result
        model_price = model_info.get_prices(datetime.combine(day, datetime.min.time(), tzinfo=UTC))
        prices = {k: v for k, v in model_price.__dict__.items() if not k.startswith('_') and v is not None}
        starts = sorted({tier.start for v in prices.values() if isinstance(v, TieredPrices) for tier in v.tiers})
        linear = set(prices) <= _LINEAR_PRICE_KEYS
        result = (model_price, tuple(starts), linear)
        self._prices[(provider, model, day)] = result
        return result

    def _find(self, provider: str, model: str) -> tuple[Any, Any] | None:
        key = (provider, model)
        if key in self._models:
            return self._models[key]
        with self._lock:
            found = _lookup(provider, model)
            self._models[key] = found
        return found

    def resolve(self, provider: str, model: str) -> str | None:
        """genai-prices' 'provider/model' id for ours, or None when it does not know the model."""
        found = self._find(provider, model)
        return f'{found[0].id}/{found[1].id}' if found else None


@dataclass(frozen=True)
class _TimeOfDayPrices:
    """A model whose price depends on the hour (off-peak discounts): priced at each call's own time."""

    model_info: Any


def _has_time_of_day_prices(model_info: Any) -> bool:
    prices = model_info.prices if isinstance(model_info.prices, list) else []
    return any(p.constraint is not None and 'TimeOf' in type(p.constraint).__name__ for p in prices)


def _lookup(provider: str, model: str) -> tuple[Any, Any] | None:
    snapshot = data_snapshot.get_snapshot()
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
    keys = {k for k, v in model_price.__dict__.items() if not k.startswith('_') and v is not None}
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


def _divide_half_even(numerator: int, denominator: int) -> int:
    quotient, remainder = divmod(numerator, denominator)
    twice = 2 * remainder
    if twice > denominator or (twice == denominator and quotient % 2 == 1):
        quotient += 1
    return quotient
