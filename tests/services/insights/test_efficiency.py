"""Token efficiency per agent and model, from the rollups: exact ratios, shares and costs per 1,000 output tokens,
day by day. Against SQLite and, when SPENDGAUGE_TEST_DATABASE_URL is set, PostgreSQL."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from services.core.periods import Period
from services.insights.efficiency import token_efficiency
from services.usage.ledger import Ledger

ZONE = ZoneInfo('Europe/Berlin')
DAY1 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def test_ratios_shares_and_cost_per_1k_output(ledger: Ledger) -> None:
    calls = [  # (day offset, agent, model, input, output, cache read, cost)
        (0, 'coder', 'gpt-4o', 1000, 250, 400, '0.010000'),
        (0, 'coder', 'gpt-4o-mini', 3000, 250, 0, '0.002000'),
        (1, 'coder', 'gpt-4o', 2000, 500, 1000, '0.030000'),
        (1, 'writer', 'gpt-4o', 500, 1500, 0, '0.020000'),
        (1, None, 'gpt-4o', 100, 0, 0, '0.000100'),
    ]
    ledger.record_batch([{'event_id': f'e{n}', 'ts': (DAY1 + timedelta(days=day)).isoformat(), 'agent_id': agent,
                          'model': model, 'provider': 'openai', 'input_tokens': tokens_in, 'output_tokens': out,
                          'cache_read_tokens': cached, 'cost_usd': cost}
                         for n, (day, agent, model, tokens_in, out, cached, cost) in enumerate(calls)])
    span = Period('custom', DAY1 - timedelta(hours=20), DAY1 + timedelta(days=2))
    with ledger.engine.connect() as conn:
        by_agent = token_efficiency(conn, span, ZONE, 'agent')
        by_model = token_efficiency(conn, span, ZONE, 'model')
        coder_models = token_efficiency(conn, span, ZONE, 'model', agent_id='coder')
        writer_alone = token_efficiency(conn, span, ZONE, 'agent', agent_id='writer')
    coder, writer, unnamed = by_agent['items']
    assert (coder['name'], writer['name'], unnamed['name']) == ('coder', 'writer', None)  # most spent first
    assert coder['requests'] == 3 and coder['cost_micros'] == 42_000 and coder['cost_usd'] == '0.042000'
    assert coder['output_per_input'] == round(1000 / 6000, 3)
    assert coder['cache_read_percent'] == round(100 * 1400 / 6000, 1)
    assert coder['cost_per_1k_output_micros'] == 42_000  # $0.042 for 1,000 output tokens
    assert [(d['day'], d['requests'], d['cost_per_1k_output_micros']) for d in coder['trend']] == \
        [('2026-03-10', 2, 24_000), ('2026-03-11', 1, 60_000)]
    assert writer['output_per_input'] == 3.0 and writer['cost_per_1k_output_micros'] == 13_333
    assert unnamed['output_per_input'] == 0.0 and unnamed['cost_per_1k_output_micros'] is None
    assert [(m['name'], m['requests']) for m in by_model['items']] == [('gpt-4o', 4), ('gpt-4o-mini', 1)]
    assert by_model['items'][1]['cost_per_1k_output_micros'] == 8_000
    # one agent's models: its own calls only
    assert coder_models['agent_id'] == 'coder'
    assert [(m['name'], m['requests'], m['cost_micros'], m['output_tokens']) for m in coder_models['items']] == \
        [('gpt-4o', 2, 40_000, 750), ('gpt-4o-mini', 1, 2_000, 250)]
    assert [(d['day'], d['cost_per_1k_output_micros']) for d in coder_models['items'][0]['trend']] == \
        [('2026-03-10', 40_000), ('2026-03-11', 60_000)]
    assert writer_alone['items'] == [writer]


def test_an_empty_period_has_no_items(ledger: Ledger) -> None:
    with ledger.engine.connect() as conn:
        out = token_efficiency(conn, Period('day', DAY1, DAY1 + timedelta(days=1)), ZONE, 'model')
    assert out['items'] == [] and out['by'] == 'model' and out['period'] == 'day'
