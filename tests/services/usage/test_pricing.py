"""Pricing against hand-computed figures from the published per-million-token prices."""
from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from genai_prices import Usage, calc_price, data_snapshot
from hypothesis import given, settings
from hypothesis import strategies as st

from services.core.money import micros_to_usd, usd_to_micros
from services.usage.pricing import NoRate, OverrideRates, Pricer, TokenCounts

pricer = Pricer()


def test_gpt_4o_with_cached_input() -> None:
    # $2.50 input, $1.25 cached input, $10 output per million; input_tokens includes the 200 cached
    quote = pricer.quote('openai', 'gpt-4o', TokenCounts(input_tokens=1000, output_tokens=500, cache_read_tokens=200))
    assert quote.cost_source == 'priced'
    assert quote.cost_micros == 800 * 2.5 + 200 * 1.25 + 500 * 10 == 7250


def test_claude_with_cache_read_and_cache_write() -> None:
    # claude-sonnet-4-5: $3 input, $0.30 cache read, $3.75 cache write (5 min), $15 output per million
    tokens = TokenCounts(input_tokens=10_000, output_tokens=2000, cache_read_tokens=4000, cache_write_tokens=1000)
    quote = pricer.quote('anthropic', 'claude-sonnet-4-5', tokens)
    assert quote.cost_micros == 5000 * 3 + 4000 * 0.3 + 1000 * 3.75 + 2000 * 15 == 49_950


def test_claude_long_context_tier_prices_every_token_at_the_tier_rate() -> None:
    # above 200k input tokens: $6 input, $22.50 output per million, for all tokens
    quote = pricer.quote('anthropic', 'claude-sonnet-4-5', TokenCounts(input_tokens=300_000, output_tokens=1000))
    assert quote.cost_micros == 300_000 * 6 + 1000 * 22.5 == 1_822_500


def test_openrouter_model() -> None:
    # openai/gpt-4o-mini on OpenRouter: $0.15 input, $0.075 cached input, $0.60 output per million
    tokens = TokenCounts(input_tokens=100_000, output_tokens=10_000, cache_read_tokens=20_000)
    quote = pricer.quote('openrouter', 'openai/gpt-4o-mini', tokens)
    assert quote.cost_micros == 80_000 * 0.15 + 20_000 * 0.075 + 10_000 * 0.6 == 19_500


def test_litellm_style_model_name_with_provider_prefix() -> None:
    assert pricer.quote('openai', 'openai/gpt-4o', TokenCounts(1000, 500, 200)).cost_micros == 7250


def test_unknown_model_is_unpriced_not_free() -> None:
    quote = pricer.quote('openai', 'gpt-nonexistent-9', TokenCounts(1000, 500))
    assert (quote.cost_micros, quote.cost_source) == (0, 'unpriced')
    assert 'gpt-nonexistent-9' in quote.reason


def test_known_provider_does_not_borrow_another_providers_model() -> None:
    assert pricer.quote('anthropic', 'gpt-4o', TokenCounts(1000, 500)).cost_source == 'unpriced'


def test_reported_cost_wins_and_is_kept_as_reported() -> None:
    quote = pricer.quote('openai', 'gpt-4o', TokenCounts(1000, 500), reported_cost_usd=Decimal('0.0123456'))
    assert (quote.cost_micros, quote.cost_source) == (12346, 'reported')


def test_override_is_applied_first() -> None:
    p = Pricer({('openai', 'gpt-4o'): OverrideRates(input=1_000_000, output=2_000_000, cache_read=500_000)})
    # $1 input, $0.50 cache read, $2 output per million; cache write defaults to the input rate
    tokens = TokenCounts(input_tokens=10_000, output_tokens=1000, cache_read_tokens=2000, cache_write_tokens=1000)
    quote = p.quote('openai', 'gpt-4o', tokens)
    assert quote.cost_micros == 7000 * 1 + 2000 * 0.5 + 1000 * 1 + 1000 * 2 == 11_000
    assert quote.reason == 'override'


def test_override_prices_an_unknown_model() -> None:
    p = Pricer({('acme', 'house-model'): OverrideRates(input=250_000, output=750_000)})
    assert p.quote('acme', 'house-model', TokenCounts(4_000_000, 2_000_000)).cost_micros == 1_000_000 + 1_500_000


def test_override_rounds_half_even() -> None:
    p = Pricer({('x', 'm'): OverrideRates(input=1, output=3)})  # 1 and 3 micro-USD per million tokens
    assert p.quote('x', 'm', TokenCounts(input_tokens=500_000)).cost_micros == 0  # 0.5 -> 0
    assert p.quote('x', 'm', TokenCounts(input_tokens=1_500_000)).cost_micros == 2  # 1.5 -> 2
    assert p.quote('x', 'm', TokenCounts(output_tokens=500_000)).cost_micros == 2  # 1.5 -> 2


def test_money_conversions_are_exact() -> None:
    assert usd_to_micros('0.0000025') == 2
    assert usd_to_micros('0.0000035') == 4
    assert micros_to_usd(7250) == '0.007250'
    assert micros_to_usd(123_456_789) == '123.456789'
    with pytest.raises(ValueError):
        usd_to_micros('NaN')


def test_time_of_day_prices_follow_the_call_time() -> None:
    model = 'deepseek-chat'
    tokens = TokenCounts(input_tokens=100_000, output_tokens=10_000)
    usage = Usage(input_tokens=100_000, output_tokens=10_000)
    for hour in (3, 20):
        ts = datetime(2026, 6, 1, hour, tzinfo=UTC)
        expected = calc_price(usage, model, provider_id='deepseek', genai_request_timestamp=ts).total_price
        assert pricer.quote('deepseek', model, tokens, ts).cost_micros == usd_to_micros(expected)


_MODELS = [(p.id, m.id) for p in data_snapshot.get_snapshot().providers for m in p.models]


@st.composite
def _usage(draw: st.DrawFn) -> TokenCounts:
    input_tokens = draw(st.sampled_from([0, 1, 999, 128_000, 200_000, 200_001, 1_000_000]) | st.integers(0, 2_000_000))
    cache_read = draw(st.integers(0, input_tokens))
    cache_write = draw(st.integers(0, input_tokens - cache_read))
    return TokenCounts(input_tokens, draw(st.integers(0, 200_000)), cache_read, cache_write)


@settings(max_examples=400, deadline=None)
@given(model=st.sampled_from(_MODELS), tokens=_usage())
def test_fast_path_equals_genai_prices(model: tuple[str, str], tokens: TokenCounts) -> None:
    """Our cached per-tier rates give exactly what genai-prices' calc_price gives, for every bundled model."""
    provider, model_id = model
    usage = Usage(input_tokens=tokens.input_tokens, output_tokens=tokens.output_tokens,
                  cache_read_tokens=tokens.cache_read_tokens, cache_write_tokens=tokens.cache_write_tokens)
    ts = datetime(2026, 11, 29, 12, tzinfo=UTC)
    try:
        expected = calc_price(usage, model_id, provider_id=provider, genai_request_timestamp=ts).total_price
    except (LookupError, ValueError):
        return  # a model genai-prices itself cannot price with this usage
    try:
        got = pricer.genai_price_micros(provider, model_id, tokens, ts)
    except NoRate:  # a model priced by what tokens are not (audio seconds, characters): 0 here, never a silent 0
        assert expected == 0
        return
    assert got == usd_to_micros(expected)
