"""The price card (`prices MODEL`) is the price ingest gives: read off the ledger's own pricer, for every bundled model,
after an update of the price data, and under an override; the models in use come from the ledger."""
from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from genai_prices import data_snapshot
from sqlalchemy import Engine

from services.core.errors import Invalid, NotFound
from services.usage import price_card, price_data
from services.usage.ledger import Ledger
from services.usage.pricing import OverrideRates, Pricer, TokenCounts, parse_price_data
from tests.support.price_data import published

MTOK = 1_000_000
AT = datetime(2026, 12, 4, 12, tzinfo=UTC)
_MODELS = [(p.id, m.id) for p in data_snapshot.get_snapshot().providers for m in p.models]


def test_every_bundled_models_token_prices_are_what_ingest_charges(engine: Engine) -> None:
    """For each model priced per token in one tier: a million input (or output) tokens cost what its card says."""
    pricer = Pricer()
    checked = 0
    with engine.connect() as conn:
        for provider, model in _MODELS:
            if pricer.resolve(provider, model) is None:  # an id genai-prices' matching does not find: no call has it
                continue
            card = price_card.model_card(conn, pricer, model, provider, at=AT)
            prices = {p['kind']: p for p in card['prices']}
            if card['time_of_day'] or not {'input_mtok', 'output_mtok'} <= set(prices) \
                    or any(p['tiers'] for p in card['prices']) or 'requests_kcount' in prices:
                continue
            for kind, tokens in (('input_mtok', TokenCounts(input_tokens=MTOK)),
                                 ('output_mtok', TokenCounts(output_tokens=MTOK))):
                quote = pricer.quote(card['provider'], card['model'], tokens, AT)
                assert (quote.cost_source, quote.cost_micros) == ('priced', prices[kind]['micros']), \
                    (provider, model, kind)
            checked += 1
    assert checked > 1000  # most of genai-prices' models


def test_updated_data_and_an_override_show_where_the_price_comes_from(engine: Engine) -> None:
    pricer = Pricer()
    raw = json.dumps(published({('openai', 'gpt-4o'): {'input_mtok': 5, 'output_mtok': 20}})).encode()
    sha256 = price_data.sha256_of(raw)
    data = parse_price_data(raw, price_data.label_of(sha256))
    with engine.begin() as conn:
        price_data.store(conn, raw, 'http://127.0.0.1:9/data.json', sha256, data, 'test')
    pricer.use_data(data)
    with engine.connect() as conn:
        card = price_card.model_card(conn, pricer, 'gpt-4o')
    assert (card['source'], card['data']['source'], card['data']['label']) == ('genai-prices', 'fetched', data.label)
    assert card['data_as_of'] == datetime.now(UTC).date().isoformat()
    assert {p['kind']: p['usd'] for p in card['prices']} == {'input_mtok': '5.000000', 'output_mtok': '20.000000'}

    pricer.set_overrides({('openai', 'gpt-4o'): OverrideRates(1_000_000, 2_000_000, request=500)})
    with engine.connect() as conn:
        card = price_card.model_card(conn, pricer, 'GPT-4o '.strip().lower())
    assert card['source'] == 'override'
    assert [(p['what'], p['micros'], p['per']) for p in card['prices']] == [
        ('input', 1_000_000, 'million tokens'), ('output', 2_000_000, 'million tokens'),
        ('cache read', 1_000_000, 'million tokens'), ('cache write', 1_000_000, 'million tokens'),
        ('requests', 500, 'call')]
    assert pricer.quote('openai', 'gpt-4o', TokenCounts(input_tokens=MTOK)).cost_micros == 1_000_000 + 500


def test_the_models_in_use_and_refusals(engine: Engine, ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    pricer = ledger.pricer
    for call in ({'model': 'gpt-4o', 'provider': 'openai'}, {'model': 'claude-sonnet-4-5'},
                 {'model': 'house-model', 'provider': 'acme'}):
        ledger.record({'input_tokens': 10, 'output_tokens': 1, **call})
    with engine.connect() as conn:
        found = price_card.models_in_use(conn, pricer)
        assert [(c['provider'], c['model']) for c in found['items']] == [('anthropic', 'claude-sonnet-4-5'),
                                                                          ('openai', 'gpt-4o')]
        assert found['unpriced'] == [{'provider': 'acme', 'model': 'house-model'}]
        assert (found['count'], found['truncated']) == (2, False)
        monkeypatch.setattr(price_card, 'MAX_MODELS', 2)  # the listing is bounded: the first ones, and says so
        first = price_card.models_in_use(conn, pricer)
        assert (len(first['items']) + len(first['unpriced']), first['truncated']) == (2, True)
        assert first['unpriced'] == [{'provider': 'acme', 'model': 'house-model'}]
        with pytest.raises(NotFound, match=r'no price known for acme/house-model \(neither a price override nor '):
            price_card.model_card(conn, pricer, 'house-model', 'acme')
        with pytest.raises(NotFound, match=r'closest \(provider/model\): anthropic/claude-sonnet-4-5'):
            price_card.model_card(conn, pricer, 'claude-sonet-4-5')  # a typo
        with pytest.raises(Invalid, match='model: a name of 1 to 200 characters'):
            price_card.model_card(conn, pricer, ' ')
