"""Every kind of call priced to the micro-dollar: embeddings, images, audio by tokens, seconds and characters, and
per-request fees, through genai-prices where it has the price and through overrides where it does not.

Each expected cost is worked out here from the published price (the source is named beside it), independently of
the pricer; stored events run against SQLite and, when SPENDGAUGE_TEST_DATABASE_URL is set, PostgreSQL."""
from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, select

from services.budget import policies
from services.budget.checker import Checker, CheckRequest
from services.core.tables import AGENTS, DAILY, EVENTS, HOURLY, ROLLUPS, SESSIONS
from services.usage.ledger import EventRejected, Ledger
from services.usage.pricing import OverrideRates, Pricer, TokenCounts
from services.usage.units import ANY, CallUnits, Images
from tests.support.api import uid

T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
pricer = Pricer()


def micros(usd: Fraction | Decimal | str) -> int:
    """Exact USD to micro-USD, half-even: the rounding the ledger does once per call."""
    return int((Decimal(Fraction(usd).numerator) / Decimal(Fraction(usd).denominator) * 10**6)
               .quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def per_million(tokens: int, usd: str) -> Fraction:
    return tokens * Fraction(usd) / 10**6


# OpenAI's published prices (platform.openai.com/docs/pricing, also genai-prices' data), USD per million tokens
EMBEDDING_3_SMALL = '0.02'
GPT_IMAGE_1 = {'text_input': '5', 'image_input': '10', 'output': '40'}
GPT_IMAGE_1_5 = {'text_input': '5', 'image_input': '8', 'text_output': '10', 'image_output': '32'}
GPT_AUDIO = {'text_input': '2.5', 'audio_input': '32', 'text_output': '10', 'audio_output': '64'}
WHISPER_1_PER_MINUTE = '0.006'
TTS_1_PER_MILLION_CHARACTERS = '15'
# genai-prices' data for perplexity/sonar: $1 input and output per million tokens and $12 per thousand requests
# (Perplexity's request fee at high search context size)
SONAR = {'input': '1', 'output': '1', 'per_thousand_requests': '12'}
# DALL-E 3, OpenAI's published per-image prices (genai-prices has no per-image price: an override holds them)
DALL_E_3 = {('1024x1024', 'standard'): '0.040', ('1024x1792', 'standard'): '0.080',
            ('1792x1024', 'standard'): '0.080', ('1024x1024', 'hd'): '0.080', ('1024x1792', 'hd'): '0.120',
            ('1792x1024', 'hd'): '0.120'}


def dall_e_3_override() -> OverrideRates:
    return OverrideRates(input=0, output=0, images={key: micros(usd) for key, usd in DALL_E_3.items()})


# --- the pricer -------------------------------------------------------------------------------------------------

def test_embedding_input_tokens_only() -> None:
    quote = pricer.quote('openai', 'text-embedding-3-small', TokenCounts(input_tokens=1_234_567))
    expected = micros(per_million(1_234_567, EMBEDDING_3_SMALL))  # $0.02469134
    assert (quote.cost_source, quote.cost_micros) == ('priced', expected) and expected == 24_691


def test_image_model_by_text_and_image_tokens() -> None:
    # an edit: 1,000 input tokens of which 800 are the image given; a 1024x1024 high-quality image is 4,160 tokens
    units = CallUnits(image_input_tokens=800, images=Images(1, '1024x1024', 'high'))
    quote = pricer.quote('openai', 'gpt-image-1', TokenCounts(input_tokens=1000, output_tokens=4160), units=units)
    expected = micros(per_million(200, GPT_IMAGE_1['text_input']) + per_million(800, GPT_IMAGE_1['image_input'])
                      + per_million(4160, GPT_IMAGE_1['output']))
    assert (quote.cost_source, quote.cost_micros) == ('priced', expected) and expected == 175_400


def test_image_output_tokens_have_their_own_rate() -> None:
    units = CallUnits(image_output_tokens=4160)
    quote = pricer.quote('openai', 'gpt-image-1.5', TokenCounts(input_tokens=50, output_tokens=4200), units=units)
    expected = micros(per_million(50, GPT_IMAGE_1_5['text_input']) + per_million(40, GPT_IMAGE_1_5['text_output'])
                      + per_million(4160, GPT_IMAGE_1_5['image_output']))
    assert quote.cost_micros == expected == 133_770


def test_audio_model_by_audio_tokens() -> None:
    tokens = TokenCounts(input_tokens=12_345, output_tokens=6_789)
    units = CallUnits(audio_input_tokens=10_000, audio_output_tokens=6_000)
    quote = pricer.quote('openai', 'gpt-audio', tokens, units=units)
    expected = micros(per_million(2_345, GPT_AUDIO['text_input']) + per_million(10_000, GPT_AUDIO['audio_input'])
                      + per_million(789, GPT_AUDIO['text_output']) + per_million(6_000, GPT_AUDIO['audio_output']))
    assert (quote.cost_source, quote.cost_micros) == ('priced', expected)
    assert expected == 717_752  # 717,752.5 micro-USD, rounded half-even once for the call


def test_transcription_by_audio_seconds() -> None:
    for seconds, expected in ((Decimal('12.5'), Fraction('12.5') / 60 * Fraction(WHISPER_1_PER_MINUTE)),
                              (Decimal('61.234'), Fraction('61.234') / 60 * Fraction(WHISPER_1_PER_MINUTE))):
        quote = pricer.quote('openai', 'whisper-1', TokenCounts(), units=CallUnits(audio_seconds=seconds))
        assert (quote.cost_source, quote.cost_micros) == ('priced', micros(expected))
    assert micros(Fraction('61.234') / 60 * Fraction(WHISPER_1_PER_MINUTE)) == 6_123  # 6,123.4 micro-USD


def test_speech_by_characters() -> None:
    quote = pricer.quote('openai', 'tts-1', TokenCounts(), units=CallUnits(characters=1_234))
    assert quote.cost_micros == micros(per_million(1_234, TTS_1_PER_MILLION_CHARACTERS)) == 18_510


def test_per_request_fee_is_added_once_per_call() -> None:
    quote = pricer.quote('perplexity', 'sonar', TokenCounts(input_tokens=1_500, output_tokens=700))
    expected = micros(per_million(1_500, SONAR['input']) + per_million(700, SONAR['output'])
                      + Fraction(SONAR['per_thousand_requests']) / 1000)
    assert quote.cost_micros == expected == 14_200


def test_a_transcription_without_its_seconds_is_unpriced_not_free() -> None:
    quote = pricer.quote('openai', 'whisper-1', TokenCounts())
    assert (quote.cost_source, quote.cost_micros) == ('unpriced', 0)
    assert 'audio_seconds' in quote.reason


def test_images_genai_prices_cannot_price_are_unpriced_not_free() -> None:
    # gpt-image-1 is priced by tokens: images alone, without their tokens, have no price there
    units = CallUnits(images=Images(2, '1024x1024', 'low'))
    quote = pricer.quote('openai', 'gpt-image-1', TokenCounts(), units=units)
    assert (quote.cost_source, quote.cost_micros) == ('unpriced', 0) and 'images' in quote.reason
    # seconds of audio for a model priced by audio tokens
    quote = pricer.quote('openai', 'gpt-4o-transcribe', TokenCounts(), units=CallUnits(audio_seconds=Decimal(30)))
    assert (quote.cost_source, quote.cost_micros) == ('unpriced', 0) and 'audio_seconds' in quote.reason


def test_override_per_image_by_size_and_quality() -> None:
    p = Pricer({('openai', 'dall-e-3'): dall_e_3_override()})
    for (size, quality), usd in DALL_E_3.items():
        quote = p.quote('openai', 'dall-e-3', TokenCounts(), units=CallUnits(images=Images(3, size, quality)))
        assert (quote.cost_source, quote.cost_micros) == ('priced', micros(3 * Fraction(usd))), (size, quality)
    assert p.quote('openai', 'dall-e-3', TokenCounts(),
                   units=CallUnits(images=Images(3, '1792x1024', 'hd'))).cost_micros == 360_000
    missing = p.quote('openai', 'dall-e-3', TokenCounts(), units=CallUnits(images=Images(1, '512x512', 'hd')))
    assert (missing.cost_source, missing.cost_micros) == ('unpriced', 0)
    assert '512x512' in missing.reason and '1024x1024/hd' in missing.reason


def test_override_image_price_for_any_quality_or_size() -> None:
    p = Pricer({('acme', 'painter'): OverrideRates(input=0, output=0, images={
        ('1024x1024', ANY): 30_000, (ANY, 'hd'): 90_000, (ANY, ANY): 50_000, ('1024x1024', 'hd'): 70_000})})

    def cost(size: str | None, quality: str | None) -> int:
        return p.quote('acme', 'painter', TokenCounts(), units=CallUnits(images=Images(1, size, quality))).cost_micros

    assert (cost('1024x1024', 'hd'), cost('1024x1024', 'low'), cost('512x512', 'hd'), cost('512x512', 'low'),
            cost(None, None)) == (70_000, 30_000, 90_000, 50_000, 50_000)


def test_override_audio_seconds_and_request_fee_round_once() -> None:
    # a house transcription model at $0.0043 per minute plus $0.0001 per call
    p = Pricer({('acme', 'listener'): OverrideRates(input=0, output=0, request=100, audio_minute=4_300)})
    quote = p.quote('acme', 'listener', TokenCounts(), units=CallUnits(audio_seconds=Decimal('95.5')))
    expected = micros(Fraction('95.5') / 60 * Fraction('0.0043') + Fraction('0.0001'))  # 6,844.17 + 100
    assert (quote.cost_source, quote.cost_micros) == ('priced', expected) and expected == 6_944
    # with tokens too: $1 per million input tokens, 1,500 of them, one rounding for the whole call
    p = Pricer({('acme', 'listener'): OverrideRates(input=1_000_000, output=0, audio_minute=4_300)})
    quote = p.quote('acme', 'listener', TokenCounts(input_tokens=1_500), units=CallUnits(audio_seconds=Decimal('0.1')))
    assert quote.cost_micros == micros(Fraction('0.0015') + Fraction('0.1') / 60 * Fraction('0.0043')) == 1_507


def test_override_without_a_rate_for_what_the_call_reports_is_unpriced() -> None:
    p = Pricer({('acme', 'chatty'): OverrideRates(input=1_000_000, output=1_000_000)})
    quote = p.quote('acme', 'chatty', TokenCounts(), units=CallUnits(audio_seconds=Decimal(10)))
    assert (quote.cost_source, 'audio_seconds' in quote.reason) == ('unpriced', True)
    quote = p.quote('acme', 'chatty', TokenCounts(), units=CallUnits(images=Images(1)))
    assert (quote.cost_source, 'images' in quote.reason) == ('unpriced', True)


def test_units_round_trip_through_their_stored_form() -> None:
    units = CallUnits(audio_input_tokens=5, image_output_tokens=7, audio_seconds=Decimal('8.47'), characters=3,
                      images=Images(2, '1024x1024', 'hd'))
    assert CallUnits.from_json(units.as_json()) == units
    assert CallUnits().as_json() is None and CallUnits.from_json(None) is None


# --- stored events, both databases --------------------------------------------------------------------------------

KINDS = [
    ({'model': 'text-embedding-3-small', 'kind': 'embedding', 'input_tokens': 1_234_567}, 24_691),
    ({'model': 'gpt-image-1', 'kind': 'image', 'input_tokens': 1000, 'image_input_tokens': 800, 'output_tokens': 4160,
      'images': {'count': 1, 'size': '1024x1024', 'quality': 'HIGH'}}, 175_400),
    ({'model': 'gpt-audio', 'kind': 'chat', 'input_tokens': 12_345, 'audio_input_tokens': 10_000,
      'output_tokens': 6_789, 'audio_output_tokens': 6_000}, 717_752),
    ({'model': 'whisper-1', 'kind': 'audio_transcription', 'audio_seconds': 61.234}, 6_123),
    ({'model': 'whisper-1', 'kind': 'audio_transcription', 'audio_seconds': 8.470000267028809}, 847),
    ({'model': 'tts-1', 'kind': 'audio_speech', 'characters': 1_234}, 18_510),
    ({'provider': 'perplexity', 'model': 'sonar', 'input_tokens': 1_500, 'output_tokens': 700}, 14_200),
]


def test_every_kind_is_stored_with_its_units_and_exact_cost(ledger: Ledger) -> None:
    agent = uid('agent')
    events = [{'provider': 'openai', 'ts': T0, 'agent_id': agent, 'session_id': 's-kinds', 'event_id': f'k{i}',
               **fields} for i, (fields, _) in enumerate(KINDS)]
    results = ledger.record_batch(events)
    assert [r.status for r in results] == ['stored'] * len(KINDS)
    assert [(r.cost_source, r.cost_micros) for r in results] == [('priced', cost) for _, cost in KINDS]
    with ledger.engine.connect() as conn:
        rows = {r.event_id: r for r in conn.execute(select(EVENTS.c.event_id, EVENTS.c.kind, EVENTS.c.units))}
        total = sum(cost for _, cost in KINDS)
        for table in (ROLLUPS, HOURLY, DAILY, SESSIONS, AGENTS):
            assert sum(conn.execute(select(table.c.cost_micros)).scalars()) == total, table.name
    assert (rows['k0'].kind, rows['k0'].units) == ('embedding', None)
    assert rows['k1'].units == {'image_input_tokens': 800, 'images': {'count': 1, 'size': '1024x1024',
                                                                       'quality': 'high'}}
    assert rows['k2'].units == {'audio_input_tokens': 10_000, 'audio_output_tokens': 6_000}
    assert rows['k4'].units == {'audio_seconds': 8.47}  # to the millisecond
    assert (rows['k6'].kind, rows['k6'].units) == (None, None)
    stored = ledger.get_event(results[5].id or 0)
    assert stored is not None and (stored['kind'], stored['units'], stored['cost_usd']) == \
        ('audio_speech', {'characters': 1234}, '0.018510')


BAD = {
    'negative seconds': ({'audio_seconds': -1}, 'audio_seconds'),
    'seconds beyond bounds': ({'audio_seconds': 10**7}, 'audio_seconds'),
    'seconds not a number': ({'audio_seconds': 'long'}, 'audio_seconds'),
    'audio tokens above input': ({'input_tokens': 10, 'audio_input_tokens': 11}, 'audio_input_tokens'),
    'image tokens above output': ({'output_tokens': 10, 'image_output_tokens': 6, 'audio_output_tokens': 5},
                                  'image_output_tokens'),
    'no image count': ({'images': {'size': '1024x1024'}}, 'images.count'),
    'zero images': ({'images': {'count': 0}}, 'images.count'),
    'too many images': ({'images': {'count': 10_001}}, 'images.count'),
    'odd size': ({'images': {'count': 1, 'size': '1024 x 1024'}}, 'images.size'),
    'unknown image field': ({'images': {'count': 1, 'style': 'vivid'}}, 'images.style'),
    'unknown kind': ({'kind': 'video'}, 'kind'),
    'negative characters': ({'characters': -5}, 'characters'),
}


@pytest.mark.parametrize(('fields', 'field'), BAD.values(), ids=BAD.keys())
def test_a_bad_unit_rejects_its_event_alone(ledger: Ledger, fields: dict[str, Any], field: str) -> None:
    good = {'provider': 'openai', 'model': 'whisper-1', 'audio_seconds': 60, 'ts': T0}
    results = ledger.record_batch([{**good, 'event_id': 'before'}, {**good, 'event_id': 'bad', **fields},
                                   {**good, 'event_id': 'after'}])
    assert [r.status for r in results] == ['stored', 'rejected', 'stored']
    assert results[1].event_id == 'bad' and field in (results[1].reason or ''), results[1].reason
    assert [r.cost_micros for r in results if r.status == 'stored'] == [6_000, 6_000]  # a minute at $0.006
    with pytest.raises(EventRejected, match=field.split('.')[0]):
        ledger.record({**good, **fields})


def test_an_image_override_prices_the_stored_unpriced_images_from_their_units(ledger: Ledger) -> None:
    made = [('1024x1024', 'standard', 2), ('1792x1024', 'hd', 1), ('1024x1792', 'hd', 3)]
    results = ledger.record_batch([
        {'provider': 'openai', 'model': 'dall-e-3', 'kind': 'image', 'ts': T0, 'agent_id': 'painter',
         'images': {'count': count, 'size': size, 'quality': quality}} for size, quality, count in made])
    assert [(r.cost_source, r.cost_micros) for r in results] == [('unpriced', 0)] * 3  # genai-prices has no DALL-E 3
    ledger.pricer.set_overrides({('openai', 'dall-e-3'): dall_e_3_override()})
    assert ledger.reprice_unpriced('openai', 'dall-e-3') == 3
    expected = sum(micros(count * Fraction(DALL_E_3[(size, quality)])) for size, quality, count in made)
    assert expected == 80_000 + 120_000 + 360_000
    with ledger.engine.connect() as conn:
        assert sorted(conn.execute(select(EVENTS.c.cost_micros)).scalars()) == [80_000, 120_000, 360_000]
        for table in (ROLLUPS, DAILY, AGENTS):
            assert sum(conn.execute(select(table.c.cost_micros)).scalars()) == expected, table.name
        assert sum(conn.execute(select(ROLLUPS.c.unpriced_requests)).scalars()) == 0


def test_the_budget_check_counts_the_stored_cost_of_every_kind(ledger: Ledger, engine: Engine) -> None:
    with engine.begin() as conn:
        policies.create_policy(conn, policies.validate({'name': uid('policy'), 'limit_usd': '1', 'action': 'block'}))
    checker = Checker(engine, ledger.hub, ZoneInfo('UTC'))
    checker.start()
    now = datetime.now(UTC)
    results = ledger.record_batch([{'provider': 'openai', 'ts': now, **fields} for fields, _ in KINDS])
    stored = sum(r.cost_micros or 0 for r in results)
    assert stored == sum(cost for _, cost in KINDS) == 24_691 + 175_400 + 717_752 + 6_123 + 847 + 18_510 + 14_200
    answer = checker.check(CheckRequest())
    assert answer['policies'][0]['spent_micros'] == stored
    assert answer['decision'] == 'throttle'  # $0.957523 of $1: past the 95 % critical threshold
    rebuilt = Checker(engine, ledger.hub, ZoneInfo('UTC'))  # counters rebuilt from the rollups agree
    rebuilt.start()
    assert rebuilt.check(CheckRequest())['policies'][0]['spent_micros'] == stored


def test_a_call_without_the_units_its_override_prices_by_is_unpriced_not_free() -> None:
    p = Pricer({('openai', 'dall-e-3'): dall_e_3_override(),
                ('acme', 'listener'): OverrideRates(input=0, output=0, audio_minute=4_300)})
    for model, units in (('dall-e-3', None), ('dall-e-3', CallUnits(characters=5)), ('listener', None)):
        provider = 'acme' if model == 'listener' else 'openai'
        quote = p.quote(provider, model, TokenCounts(input_tokens=100), units=units)
        assert (quote.cost_source, quote.cost_micros) == ('unpriced', 0), (model, units)
    assert 'images' in p.quote('openai', 'dall-e-3', TokenCounts()).reason
    # a zero price given for what the call reports is a price: $0, priced
    free = Pricer({('acme', 'free'): OverrideRates(input=0, output=0, images={(ANY, ANY): 0})})
    assert free.quote('acme', 'free', TokenCounts(), units=CallUnits(images=Images(1))).cost_source == 'priced'
