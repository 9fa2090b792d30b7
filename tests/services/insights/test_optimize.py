"""The optimiser against SQLite and, when SPENDGAUGE_TEST_DATABASE_URL is set, PostgreSQL: calls recorded through the
ledger (priced at ingest), re-priced on other models, checked against hand-computed costs from the published
per-million-token prices and against what ingest charged the same calls on the candidate."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from services.core.periods import Period
from services.insights.optimize import ASSUMED_CACHE_READ_PERCENT, NOTE, SAMPLE_CALLS, OptimizeOut, optimize
from services.insights.optimize_table import table_rows
from services.usage.ledger import Ledger
from services.usage.pricing import OverrideRates, Pricer

ZONE = ZoneInfo('Europe/Berlin')
DAY1 = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
SPAN = Period('custom', datetime(2026, 3, 9, 23, 0, tzinfo=UTC), datetime(2026, 3, 11, 23, 0, tzinfo=UTC))  # 2 days
AFTER = SPAN.end + timedelta(days=5)  # "now": the span is over
# Published USD per million tokens (OpenAI's price list, as genai-prices carries it): input, cached input, output
GPT_4O = (Decimal('2.5'), Decimal('1.25'), Decimal('10'))
GPT_4O_MINI = (Decimal('0.15'), Decimal('0.075'), Decimal('0.6'))


def exact_usd(prices: tuple[Decimal, Decimal, Decimal], input_tokens: int, output: int, cache_read: int = 0) -> Decimal:
    per_input, per_cached, per_output = (p / 1_000_000 for p in prices)
    return (input_tokens - cache_read) * per_input + cache_read * per_cached + output * per_output


def micros(usd: Decimal) -> int:
    return int((usd * 1_000_000).to_integral_value(rounding=ROUND_HALF_EVEN))


def record(ledger: Ledger, agent: str, model: str, calls: list[tuple[int, int, int, int]]) -> int:
    """Calls (day offset, input, output, cache read) priced by the ledger; returns what it charged, summed."""
    results = ledger.record_batch([{'event_id': f'{agent}-{model}-{n}', 'agent_id': agent, 'provider': 'openai',
                                    'model': model, 'ts': (DAY1 + timedelta(days=day, minutes=n)).isoformat(),
                                    'input_tokens': tokens_in, 'output_tokens': out, 'cache_read_tokens': cached}
                                   for n, (day, tokens_in, out, cached) in enumerate(calls)])
    assert all(r.status == 'stored' and r.cost_source == 'priced' for r in results), results
    return sum(r.cost_micros or 0 for r in results)


def agent(out: OptimizeOut, name: str) -> Any:
    return next(a for a in out['agents'] if a['agent_id'] == name)


def candidate(row: Any, model: str) -> Any:
    return next(c for c in row['candidates'] if c['model'] == model)


# Whole micro-USD per call on gpt-4o-mini: input tokens in 20s, cached in 40s, output in 5s
WHOLE_CALLS = [(0, 12_000, 800, 4_000), (0, 3_000, 250, 0), (1, 40_000, 1_500, 20_000), (1, 200, 5, 40)]


def test_repriced_cost_equals_what_ingest_charged_the_same_calls_on_the_candidate(ledger: Ledger) -> None:
    actual = record(ledger, 'big', 'gpt-4o', WHOLE_CALLS)
    twin = record(ledger, 'twin', 'gpt-4o-mini', WHOLE_CALLS)  # the same calls, on the candidate, priced by ingest
    assert actual == sum(micros(exact_usd(GPT_4O, i, o, c)) for _, i, o, c in WHOLE_CALLS)
    assert twin == micros(sum((exact_usd(GPT_4O_MINI, i, o, c) for _, i, o, c in WHOLE_CALLS), Decimal(0)))
    with ledger.engine.connect() as conn:
        out = optimize(conn, ledger.pricer, SPAN, ZONE, [('openai', 'gpt-4o-mini')], now=AFTER)
    big = agent(out, 'big')
    [model] = big['models']
    assert (model['model'], model['requests'], model['actual_cost_micros'], model['list_cost_micros']) == \
        ('gpt-4o', 4, actual, actual)
    mini = candidate(model, 'gpt-4o-mini')
    assert mini['cost_micros'] == twin  # to the micro-USD
    assert (mini['saving_micros'], mini['saving_usd']) == (actual - twin, f'{Decimal(actual - twin) / 10**6:.6f}')
    assert mini['saving_percent'] == round(100 * (actual - twin) / actual, 1)
    # two days of the period observed: the saving per day is half of it, a 30-day month fifteen times it
    assert mini['saving_per_day_micros'] == round(Decimal(actual - twin) / 2)
    assert mini['saving_per_month_micros'] == (actual - twin) * 15
    assert out['observed_days'] == 2.0
    assert candidate(big, 'gpt-4o-mini')['cost_micros'] == twin  # the agent, all of its calls on the model
    # the twin already runs on gpt-4o-mini: no substitute of itself, and its list price is what ingest charged
    [twin_model] = agent(out, 'twin')['models']
    assert twin_model['list_cost_micros'] == twin_model['actual_cost_micros'] == twin
    assert all(c['model'] != 'gpt-4o-mini' for c in twin_model['candidates'])
    assert out['note'] == NOTE and 'quality' in out['note']


def test_summed_tokens_are_rounded_once_where_ingest_rounds_each_call(ledger: Ledger) -> None:
    """500.325 micro-USD a call on gpt-4o-mini: ingest charges 500 three times; the optimiser prices the day's summed
    tokens, the exact 1,500.975, rounded once."""
    calls = [(0, 1234, 567, 333)] * 3
    record(ledger, 'odd', 'gpt-4o', calls)
    charged = record(ledger, 'odd-twin', 'gpt-4o-mini', calls)
    per_call = exact_usd(GPT_4O_MINI, 1234, 567, 333)
    assert per_call == Decimal('0.000500325') and charged == 3 * 500
    with ledger.engine.connect() as conn:
        out = optimize(conn, ledger.pricer, SPAN, ZONE, [('openai', 'gpt-4o-mini')], now=AFTER)
    repriced = candidate(agent(out, 'odd')['models'][0], 'gpt-4o-mini')['cost_micros']
    assert repriced == micros(3 * per_call) == 1501
    assert abs(repriced - charged) <= len(calls) / 2  # the documented bound: under half a micro-USD a call


def test_cheaper_tiers_context_fit_and_the_sample(ledger: Ledger) -> None:
    calls = [(0, 150_000, 1_000, 0), (0, 2_000, 1_000, 0), (1, 4_000, 2_000, 0), (1, 100, 100, 0)]
    actual = record(ledger, 'long', 'gpt-4.1', calls)  # a 1M-token window
    with ledger.engine.connect() as conn:
        out = optimize(conn, ledger.pricer, SPAN, ZONE, [('openai', 'gpt-4o-mini')], now=AFTER)
    [model] = agent(out, 'long')['models']
    tiers = [c for c in model['candidates'] if c['kind'] == 'cheaper_tier']
    assert 1 <= len(tiers) <= 3 and all(c['provider'] == 'openai' and c['cost_micros'] < actual for c in tiers)
    assert [c['saving_micros'] for c in model['candidates']] == \
        sorted((c['saving_micros'] for c in model['candidates']), reverse=True)
    mini = candidate(model, 'gpt-4o-mini')
    assert (mini['context_window'], mini['fit_sample'], mini['fit_percent']) == (128_000, 4, 75.0)  # 151k does not
    assert out['sample'] == {'calls': 4, 'limit': SAMPLE_CALLS, 'complete': True,
                             'oldest': DAY1.isoformat(), 'newest': (DAY1 + timedelta(days=1, minutes=3)).isoformat()}
    with ledger.engine.connect() as conn:
        only = optimize(conn, ledger.pricer, SPAN, ZONE, agent_id='nobody', now=AFTER)
    assert only['agents'] == [] and only['sample']['calls'] == 0 and only['agent_id'] == 'nobody'


def test_caching_what_if_is_priced_with_the_stated_assumption(ledger: Ledger) -> None:
    calls = [(0, 10_000, 500, 0), (1, 30_000, 1_000, 2_000)]
    record(ledger, 'nocache', 'gpt-4o', calls)
    with ledger.engine.connect() as conn:
        out = optimize(conn, ledger.pricer, SPAN, ZONE, now=AFTER)
    caching = agent(out, 'nocache')['models'][0]['caching']
    assert caching['assumed_cache_read_percent'] == ASSUMED_CACHE_READ_PERCENT == 50
    assert caching['cache_read_percent'] == 5.0 and '50 %' in caching['assumption']
    # each day's input half read from the cache (the second day's 2,000 cached already counted in it)
    expected = micros(exact_usd(GPT_4O, 10_000, 500, 5_000)) + micros(exact_usd(GPT_4O, 30_000, 1_000, 15_000))
    assert caching['cost_micros'] == expected
    assert caching['saving_micros'] == caching['list_cost_micros'] - expected > 0


def test_overrides_count_and_per_call_prices_are_not_offered(ledger: Ledger) -> None:
    record(ledger, 'ov', 'gpt-4o', [(0, 1_000_000, 0, 0)])
    pricer = Pricer({('openai', 'gpt-4o-mini'): OverrideRates(input=100_000, output=400_000)})  # $0.10 / $0.40
    with ledger.engine.connect() as conn:
        out = optimize(conn, pricer, SPAN, ZONE, [('openai', 'gpt-4o-mini'), ('anthropic', 'claude-sonnet-4-5'),
                                                 ('deepseek', 'deepseek-chat')], now=AFTER)
    [model] = agent(out, 'ov')['models']
    assert candidate(model, 'gpt-4o-mini')['cost_micros'] == 100_000  # the override, not the list price
    offered = {c['model'] for c in model['candidates']}
    assert not offered & {'claude-sonnet-4-5', 'deepseek-chat'}
    excluded = {(e['provider'], e['model']): e['reason'] for e in out['excluded']}
    assert excluded[('anthropic', 'claude-sonnet-4-5')] == 'priced in tiers by the size of each call'
    assert excluded[('deepseek', 'deepseek-chat')] == 'priced by the time of day of each call'


def test_the_table_rows_carry_every_agent_model_and_candidate(ledger: Ledger) -> None:
    record(ledger, 'big', 'gpt-4o', WHOLE_CALLS)
    with ledger.engine.connect() as conn:
        out = optimize(conn, ledger.pricer, SPAN, ZONE, [('openai', 'gpt-4o-mini')], now=AFTER)
    rows = table_rows(out)
    what = [row['agent / model / candidate'] for row in rows]
    assert what[0] == 'big: all models' and '  openai/gpt-4o' in what
    assert '    → openai/gpt-4o-mini (substitute)' in what or '    → openai/gpt-4o-mini' in what
    mini = candidate(out['agents'][0]['models'][0], 'gpt-4o-mini')
    row = next(r for r in rows if r['agent / model / candidate'].strip().startswith('→ openai/gpt-4o-mini')
               and r['cost'] == f'${Decimal(mini["cost_micros"]) / 10**6:.6f}')
    assert row['fits window'] == '100.0% of 4'


def test_a_price_change_inside_the_period_prices_each_side_at_its_own_rates(ledger: Ledger) -> None:
    """o3 cost $10 / $40 per million input / output tokens until 9 June 2025 and $2 / $8 from 10 June: a period
    across the change is priced day by day, each side at its own prices, as ingest priced each call."""
    def on(model: str, agent: str) -> int:
        results = ledger.record_batch([{'event_id': f'{agent}-{day}', 'agent_id': agent, 'provider': 'openai',
                                        'model': model, 'ts': f'2025-06-{day:02d}T12:00:00+00:00',
                                        'input_tokens': 1_000, 'output_tokens': 100} for day in (9, 10)])
        assert all(r.status == 'stored' for r in results), results
        return sum(r.cost_micros or 0 for r in results)

    on('gpt-4o', 'before-and-after')
    charged = on('o3', 'o3-twin')
    assert charged == 14_000 + 2_800  # $0.0100 + $0.0040, then $0.0020 + $0.0008
    span = Period('custom', datetime(2025, 6, 9, tzinfo=UTC), datetime(2025, 6, 11, tzinfo=UTC))
    with ledger.engine.connect() as conn:
        out = optimize(conn, ledger.pricer, span, ZoneInfo('UTC'), [('openai', 'o3')], now=AFTER)
    [model] = agent(out, 'before-and-after')['models']
    assert candidate(model, 'o3')['cost_micros'] == charged
    [twin] = agent(out, 'o3-twin')['models']
    assert twin['list_cost_micros'] == twin['actual_cost_micros'] == charged


def test_an_override_priced_per_image_minute_or_call_is_not_re_priced_from_tokens(ledger: Ledger) -> None:
    """An image model priced by its override per image: its calls cannot be priced from summed tokens (the images are
    not in the rollups), so it is excluded, with the reason, and the optimiser still answers for everyone else."""
    per_image = OverrideRates(0, 0, images={('1024x1024', 'standard'): 40_000})
    per_call = OverrideRates(input=100_000, output=400_000, request=1_000)
    pricer = Pricer({('openai', 'dall-e-3'): per_image, ('openai', 'gpt-4o-mini'): per_call})
    ledger.pricer = pricer
    ledger.record_batch([{'event_id': 'img', 'agent_id': 'artist', 'provider': 'openai', 'model': 'dall-e-3',
                          'ts': DAY1.isoformat(), 'kind': 'image',
                          'images': {'count': 1, 'size': '1024x1024', 'quality': 'standard'}}])
    record(ledger, 'writer', 'gpt-4o', [(0, 100_000, 1_000, 0)])
    with ledger.engine.connect() as conn:
        out = optimize(conn, pricer, SPAN, ZONE, [('openai', 'gpt-4o-mini')], now=AFTER)
    [artist_model] = agent(out, 'artist')['models']
    assert artist_model['actual_cost_micros'] == 40_000 and artist_model['list_cost_micros'] is None
    assert not any(c['model'] == 'gpt-4o-mini' for c in agent(out, 'writer')['candidates'])
    excluded = {(e['provider'], e['model']): e['reason'] for e in out['excluded']}
    assert excluded[('openai', 'dall-e-3')] == 'priced by its override per image, minute of audio or call'
    assert excluded[('openai', 'gpt-4o-mini')] == 'priced by its override per image, minute of audio or call'
