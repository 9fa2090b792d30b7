"""`spendgauge prices [show] [MODEL]` as real subprocesses, through a real server and on its database (--db): what
a model costs as ingest prices it (genai-prices' bundled data, or a price override), the models in use, and the
closest names for one nobody prices. `prices update|recalculate|audit` parse as before (tests/cli/test_prices.py)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.support.cli import assert_one_line_error, assert_usage_error, cli, ok
from tests.support.servers import start_server


def shown(*args: str, cwd: Path) -> Any:
    return json.loads(ok(cli('prices', *args, '--json', cwd=cwd)).stdout)


def by_kind(card: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {p['kind']: (p['usd'], p['per']) for p in card['prices']}


def test_a_model_its_units_and_where_the_price_comes_from(tmp_path: Path, database_url: str) -> None:
    server = start_server(tmp_path, database_url)
    try:
        with server.client() as api:
            for call in ({'model': 'gpt-4o', 'input_tokens': 1_000_000}, {'model': 'house-x', 'provider': 'acme'},
                         {'model': 'sonar', 'provider': 'perplexity', 'input_tokens': 10}):
                assert api.post('/usage', json={'output_tokens': 1, **call}).status_code == 201
            where = ('--url', server.url)

            gpt = shown('gpt-4o', *where, cwd=tmp_path)
            assert (gpt['provider'], gpt['model'], gpt['source']) == ('openai', 'gpt-4o', 'genai-prices')
            assert gpt['data']['source'] == 'bundled' and gpt['data']['label'].startswith('bundled with genai-prices')
            assert by_kind(gpt)['input_mtok'] == ('2.500000', 'million tokens')
            assert by_kind(gpt)['output_mtok'] == ('10.000000', 'million tokens')
            assert by_kind(gpt)['cache_read_mtok'] == ('1.250000', 'million tokens')
            # the ledger priced the million input tokens (and one output token) at that very price
            stored = api.get('/usage', params={'model': 'gpt-4o'}).json()['items'][0]
            assert stored['cost_micros'] == 2_500_000 + 10

            assert by_kind(shown('sonar', '--provider', 'perplexity', *where, cwd=tmp_path))['requests_kcount'] == \
                ('12.000000', 'thousand')
            sonnet = shown('show', 'claude-sonnet-4-5', *where, cwd=tmp_path)
            tiered = next(p for p in sonnet['prices'] if p['kind'] == 'input_mtok')
            assert (tiered['usd'], tiered['tiers']) == ('3.000000', [
                {'above_input_tokens': 200_000, 'micros': 6_000_000, 'usd': '6.000000'}])
            table = ok(cli('prices', 'claude-sonnet-4-5', *where, cwd=tmp_path)).stdout
            assert table.startswith('anthropic/claude-sonnet-4-5 (Claude Sonnet 4.5): genai-prices data bundled')
            assert '6.000000 above 200,000 input tokens' in table

            listing = ok(cli('prices', *where, cwd=tmp_path)).stdout
            assert 'gpt-4o' in listing and '2.500000' in listing and 'requests 12.000000/thousand' in listing
            assert 'no price: acme/house-x' in listing

            override = {'provider': 'acme', 'model': 'house-x', 'input_usd_per_mtok': '0.5',
                        'output_usd_per_mtok': '1.5', 'request_usd': '0.001'}
            assert api.put('/prices', json=override).status_code == 200
            house = shown('house-x', *where, cwd=tmp_path)  # the provider of the one override of that name
            assert (house['provider'], house['source']) == ('acme', 'override')
            assert by_kind(house) == {'input_mtok': ('0.500000', 'million tokens'),
                                      'output_mtok': ('1.500000', 'million tokens'),
                                      'cache_read_mtok': ('0.500000', 'million tokens'),
                                      'cache_write_mtok': ('0.500000', 'million tokens'),
                                      'request': ('0.001000', 'call')}
            in_use = shown(*where, cwd=tmp_path)
            assert [(c['provider'], c['model'], c['source']) for c in in_use['items']] == [
                ('acme', 'house-x', 'override'), ('openai', 'gpt-4o', 'genai-prices'),
                ('perplexity', 'sonar', 'genai-prices')]
            assert in_use['unpriced'] == []

            # --db reads the same database with the same pricer: the same answers
            direct = ('--db', database_url)
            assert shown('gpt-4o', *direct, cwd=tmp_path) == gpt
            assert shown('house-x', *direct, cwd=tmp_path) == house
            before = json.loads(ok(cli('--db', database_url, 'prices', 'gpt-4o', '--json', cwd=tmp_path)).stdout)
            assert before == gpt  # --db before the command: still `prices show gpt-4o`

            for options in (where, direct):
                line = assert_one_line_error(cli('prices', 'gpt4o', *options, cwd=tmp_path), 1)
                assert 'no price known for gpt4o' in line and 'closest (provider/model): openai/gpt-4o' in line
                line = assert_one_line_error(cli('prices', 'zzqqxxvv-model', *options, cwd=tmp_path), 1)
                assert 'no similar name either' in line
            too_long = assert_one_line_error(cli('prices', 'm' * 201, *where, cwd=tmp_path), 2)
            assert '422' in too_long
            assert 'needs a MODEL' in assert_one_line_error(cli('prices', '--provider', 'openai', cwd=tmp_path), 2)
            assert_usage_error(cli('prices', 'show', 'a', 'b', *where, cwd=tmp_path), 'unrecognized')
            assert 'no re-pricing yet' in ok(cli('prices', 'audit', *where, cwd=tmp_path)).stdout
    finally:
        server.stop()
