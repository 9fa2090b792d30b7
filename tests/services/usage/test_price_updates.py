"""Newer genai-prices data: fetched from a real HTTP server on 127.0.0.1 (a changed copy of the bundled data), checked
with genai-prices' own types, stored, priced with, and loaded again after a restart. Bad data changes nothing."""
from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from genai_prices import data_snapshot
from sqlalchemy import Engine, func, select

from app import runtime
from services.commands import CommandContext, Commands
from services.core.access import SYSTEM, Actor, Role
from services.core.errors import Forbidden, Invalid
from services.core.settings import load_settings
from services.core.tables import PRICE_DATA
from services.live.hub import EventHub
from services.live.topics import LiveEvent, Topic
from services.usage import price_data
from services.usage.ledger import Ledger
from services.usage.price_data import MAX_BYTES
from services.usage.pricing import BUNDLED, InvalidPriceData, Pricer, TokenCounts, parse_price_data
from tests.support.fake_api import FakeAPI, Reply, closed_port_url
from tests.support.price_data import published, serve

NEW_PRICES = {('openai', 'gpt-4o'): {'input_mtok': 5, 'cache_read_mtok': 2.5, 'output_mtok': 20},
              ('anthropic', 'claude-3-haiku'): None}  # gone from the data
TOKENS = TokenCounts(input_tokens=1000, output_tokens=500, cache_read_tokens=200)


@pytest.fixture
def commands(engine: Engine) -> Commands:
    hub, pricer = EventHub(), Pricer()
    return Commands(CommandContext(engine, hub, pricer=pricer, ledger=Ledger(engine, pricer, hub)))


def test_the_published_shape_of_the_bundled_data_reads_back_as_the_bundled_data() -> None:
    """What the tests serve is the bundled data itself, in the shape genai-prices publishes it."""
    data = parse_price_data(json.dumps(published()), 'copy')
    assert data.providers == data_snapshot.get_snapshot().providers
    assert data.model_count > 2000


def test_an_update_prices_new_events_with_the_new_data_and_survives_a_restart(commands: Commands,
                                                                                engine: Engine) -> None:
    ledger = commands.ctx.ledger
    assert ledger is not None and commands.ctx.pricer is not None
    for model, provider in (('gpt-4o', 'openai'), ('gpt-4o-mini', 'openai'), ('claude-3-haiku', 'anthropic')):
        ledger.record({'model': model, 'provider': provider, 'input_tokens': 1000, 'output_tokens': 500})
    heard: list[LiveEvent] = []
    commands.ctx.hub.subscribe(heard.append)
    with FakeAPI() as fake:
        result = commands.prices.update(SYSTEM, serve(fake, NEW_PRICES))
    assert [e.topic for e in heard] == [Topic.PRICES]
    assert result['unchanged'] is False and result['models_in_use'] == 3
    assert result['data']['source'] == 'fetched' and result['data']['fetched_by'] == SYSTEM.name
    assert [(c['provider'], c['model'], c['change']) for c in result['changes']] == [
        ('anthropic', 'claude-3-haiku', 'no longer priced'), ('openai', 'gpt-4o', 'changed')]
    gpt = result['changes'][1]
    assert gpt['old'] == {'input_usd_per_mtok': '2.500000', 'output_usd_per_mtok': '10.000000',
                          'cache_read_usd_per_mtok': '1.250000'}
    assert gpt['new'] == {'input_usd_per_mtok': '5.000000', 'output_usd_per_mtok': '20.000000',
                          'cache_read_usd_per_mtok': '2.500000'}
    new_cost = 800 * 5 + 200 * 2.5 + 500 * 20  # micro-USD: per-MTok USD times tokens
    assert commands.ctx.pricer.quote('openai', 'gpt-4o', TOKENS).cost_micros == new_cost == 14_500
    # after a restart: the runtime loads what is stored, never fetches
    rt = runtime.start(load_settings().with_overrides(database_url=engine.url.render_as_string(False)))
    try:
        assert rt.pricer.data_label == result['data']['label'] != BUNDLED
        assert rt.pricer.quote('openai', 'gpt-4o', TOKENS).cost_micros == new_cost
        assert rt.pricer.quote('anthropic', 'claude-3-haiku', TOKENS).cost_source == 'unpriced'
    finally:
        runtime.stop()


def test_the_same_file_again_is_unchanged_and_kept_once(commands: Commands, engine: Engine) -> None:
    with FakeAPI() as fake:
        url = serve(fake, NEW_PRICES)
        first = commands.prices.update(SYSTEM, url)
        again = commands.prices.update(SYSTEM, url)
    assert again['unchanged'] is True and again['changes'] == []
    assert again['data'] == first['data']
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(PRICE_DATA)) == 1


def test_another_instance_loads_the_stored_data_when_it_hears_of_it(commands: Commands, engine: Engine) -> None:
    """A second process on the same database (a server while `prices update --db` runs): the cluster bridge turns
    the other's notice into a remote correction, and the runtime loads what is stored."""
    from services.live.topics import UsageChanged

    rt = runtime.start(load_settings().with_overrides(database_url=engine.url.render_as_string(False)))
    try:
        assert rt.pricer.data_label == BUNDLED
        with FakeAPI() as fake:
            commands.prices.update(SYSTEM, serve(fake, NEW_PRICES))  # the other instance
        rt.hub.publish(UsageChanged(rows=None, remote=True))
        assert rt.pricer.quote('openai', 'gpt-4o', TOKENS).cost_micros == 14_500
    finally:
        runtime.stop()


BAD = {
    'not JSON': (Reply(raw=b'<html>rate limited</html>'), Invalid, 'not JSON'),
    'an object': (Reply({'providers': []}), Invalid, 'not a list of providers'),
    'an empty list': (Reply([]), Invalid, 'not a list of providers'),
    'not providers': (Reply([{'id': 'x'}]), Invalid, 'not genai-prices data'),
    'too large': (Reply(raw=b'[' + b' ' * MAX_BYTES + b']'), Invalid, 'more than'),
    'missing': (Reply({'error': 'no'}, status=404), Invalid, 'answered 404'),
    'failing': (Reply({'error': 'no'}, status=502), Invalid, 'answered 502'),
}


@pytest.mark.parametrize('case', list(BAD))
def test_bad_data_is_refused_and_changes_nothing(commands: Commands, engine: Engine, case: str) -> None:
    reply, error, message = BAD[case]
    pricer = commands.ctx.pricer
    assert pricer is not None
    with FakeAPI() as fake:
        fake.route('/data.json', reply)
        with pytest.raises(error, match=message):
            commands.prices.update(SYSTEM, fake.url + '/data.json')
    assert pricer.data_label == BUNDLED
    with engine.connect() as conn:
        assert price_data.describe(conn)['source'] == 'bundled'


def test_unreachable_or_odd_urls_are_refused(commands: Commands) -> None:
    with pytest.raises(Invalid, match='cannot fetch'):
        commands.prices.update(SYSTEM, closed_port_url() + '/data.json')
    for url in ('file:///etc/passwd', 'ftp://example.com/x', 'http://', 'x' * 3000):
        with pytest.raises(Invalid, match='an http or https URL'):
            commands.prices.update(SYSTEM, url)


def test_only_an_admin_updates_prices(commands: Commands) -> None:
    with FakeAPI() as fake:
        url = serve(fake, NEW_PRICES)
        for role in (Role.READ, Role.INGEST):
            with pytest.raises(Forbidden, match='needs the admin role'):
                commands.prices.update(Actor('someone', role), url)
        assert fake.hits() == []  # refused before anything was fetched


def test_parse_refuses_what_genai_prices_cannot_read() -> None:
    with pytest.raises(InvalidPriceData, match='no models'):
        parse_price_data(json.dumps([{'id': 'acme', 'name': 'Acme', 'api_pattern': 'x', 'models': []}]), 'x')
    providers = published()
    providers[0]['models'][0]['prices'] = {'input_mtok': 'lots'}
    with pytest.raises(InvalidPriceData, match='not genai-prices data'):
        parse_price_data(json.dumps(providers), 'x')


def test_the_price_in_use_is_time_dependent_as_before() -> None:
    """The pricer on fetched data prices by each call's time, as on the bundled data."""
    data = parse_price_data(json.dumps(published()), 'copy')
    bundled, fetched = Pricer(), Pricer(data=data)
    for ts in (datetime(2025, 1, 1, tzinfo=UTC), datetime(2026, 6, 1, 3, tzinfo=UTC)):
        for provider, model in (('anthropic', 'claude-opus-4-6'), ('openai', 'gpt-4o'), ('google', 'gemini-2.5-pro')):
            assert fetched.quote(provider, model, TOKENS, ts) == bundled.quote(provider, model, TOKENS, ts)
