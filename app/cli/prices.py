"""`spendgauge prices [show] [MODEL]`: what a model costs and where its price comes from (the models in use without
MODEL); `prices update|recalculate|audit`: newer genai-prices data, and re-pricing stored events with it."""
from __future__ import annotations

import argparse
import json
from typing import Any

from app.cli.args import client_options
from app.cli.backends import Backend, CliError
from app.cli.output import table

MAX_AUDITS = 500  # services/usage/repricing.py (not imported: the CLI starts without the database layer)
KINDS = (('input', 'input'), ('output', 'output'), ('cache_read', 'cache read'), ('cache_write', 'cache write'))
ACTIONS = ('show', 'update', 'recalculate', 'audit')


def register(sub: Any) -> None:
    prices = sub.add_parser('prices', help='what a model costs; update the genai-prices data, re-price stored events',
                            description='`spendgauge prices MODEL` (or `prices show MODEL`): what MODEL costs and '
                                        'where the price comes from; `spendgauge prices`: the models in use.')
    actions = prices.add_subparsers(dest='prices_command', required=True)
    show = actions.add_parser(
        'show', help='what a model costs per million tokens (and per request, image, ...); no MODEL: the models in use',
        description='The price ingest gives a call of MODEL now: its price override, else genai-prices (bundled or '
                    'updated data), per million tokens of each kind and per any other unit it has. Without MODEL, '
                    'the models calls were recorded for. An unknown name lists the closest ones.')
    show.add_argument('model', nargs='?', help='model name, e.g. gpt-4o or claude-sonnet-4-5')
    show.add_argument('--provider', help='the provider (default: the one genai-prices knows the model by)')
    update = actions.add_parser(
        'update', help='fetch the newest genai-prices data and price with it from now on',
        description='Fetches genai-prices data (a JSON list of providers; default: the file genai-prices publishes), '
                    'checks it, stores it in the database and prices new events with it (a running server too). '
                    'Shows what changed for the models in use, in USD per million tokens. Events already stored '
                    'keep their cost: `prices recalculate` re-prices them.')
    update.add_argument('--data-url', metavar='URL', help="where to fetch the data (default: genai-prices' own; "
                                                          '--url names the SpendGauge server)')
    recalculate = actions.add_parser(
        'recalculate', help='re-price the stored events of a range with the current prices',
        description='Re-prices the events from --from to --to with the current prices (overrides first): priced '
                    'events take the new price, unpriced ones whose model has a price now are priced, reported '
                    'ones (a cost the caller gave) are never touched. Every total, report and budget counter '
                    'follows, and an audit row says what changed (`prices audit`).')
    recalculate.add_argument('--from', dest='start', required=True, metavar='DATE',
                             help='ISO date (a local day) or datetime: the first event re-priced')
    recalculate.add_argument('--to', dest='end', metavar='DATE',
                             help='ISO date (inclusive) or datetime (exclusive); default: now')
    recalculate.add_argument('--dry-run', action='store_true', help='only say what would change')
    audit = actions.add_parser('audit', help='the latest re-pricings: who, which range, what changed')
    audit.add_argument('--limit', type=_limit, default=20, help=f'how many (default 20, at most {MAX_AUDITS})')
    for parser, run in ((show, cmd_show), (update, cmd_update), (recalculate, cmd_recalculate), (audit, cmd_audit)):
        client_options(parser)
        parser.add_argument('--json', action='store_true')
        parser.set_defaults(run=run)


def cmd_show(args: argparse.Namespace, backend: Backend) -> int:
    if args.model is None:
        if args.provider:
            raise CliError('--provider needs a MODEL', 2)
        return _show_in_use(backend.models_in_use_prices(), args.json)
    card = backend.model_price(args.model, args.provider)
    if args.json:
        print(json.dumps(card, indent=2))
        return 0
    name = f' ({card["name"]})' if card['name'] and card['name'] != card['model'] else ''
    print(f'{card["provider"]}/{card["model"]}{name}: {_origin(card)}')
    facts = [f'context window {card["context_window"]:,} tokens' if card['context_window'] else '',
             'deprecated' if card['deprecated'] else '',
             'priced by the time of day: the price now' if card['time_of_day'] else '']
    if any(facts):
        print('; '.join(f for f in facts if f))
    rows = [{'price': p['what'], 'USD': p['usd'], 'per': p['per'],
             'larger calls': '; '.join(f'{t["usd"]} above {t["above_input_tokens"]:,} input tokens'
                                       for t in p['tiers'])} for p in card['prices']]
    columns = ['price', 'USD', 'per'] + (['larger calls'] if any(r['larger calls'] for r in rows) else [])
    print(table(rows, columns, empty='(no prices)'))
    return 0


def _origin(card: dict[str, Any]) -> str:
    data = f'genai-prices data {card["data"]["label"]} (as of {card["data_as_of"]})'
    if card['source'] == 'override':
        return f'price override (wins over the {data})'
    return data


def _show_in_use(found: dict[str, Any], as_json: bool) -> int:
    if as_json:
        print(json.dumps(found, indent=2))
        return 0
    print(f'USD per million tokens; prices from genai-prices data {found["data"]["label"]} (as of '
          f'{found["data_as_of"]}), or a price override where marked')
    rows = []
    for card in found['items']:
        per_mtok = {p['what']: p['usd'] for p in card['prices'] if p['per'] == 'million tokens'}
        other = [f'{p["what"]} {p["usd"]}/{p["per"]}' for p in card['prices'] if p['per'] != 'million tokens']
        rows.append({'provider': card['provider'], 'model': card['model'],
                     'source': card['source'],
                     **{label: per_mtok.get(label, '-') for _, label in KINDS}, 'other': '; '.join(other)})
    print(table(rows, ['provider', 'model', 'source', *(label for _, label in KINDS), 'other'],
                empty='(no models in use yet: `spendgauge prices MODEL` shows any model)'))
    if found['unpriced']:
        names = ', '.join(f'{m["provider"]}/{m["model"]}' for m in found['unpriced'])
        print(f'no price: {names} (their calls are stored as unpriced: `PUT /api/v1/prices` sets one)')
    if found['truncated']:
        print(f'(the first {len(found["items"]) + len(found["unpriced"]):,} models in use)')
    return 0


def _limit(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= MAX_AUDITS:
        raise argparse.ArgumentTypeError(f'a whole number from 1 to {MAX_AUDITS} (got {text!r})')
    return int(text)


def cmd_update(args: argparse.Namespace, backend: Backend) -> int:
    result = backend.update_prices(args.data_url)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    data = result['data']
    if result['unchanged']:
        print(f'the data at {data["url"]} is the data in use already ({data["label"]})')
    else:
        print(f'prices now from {data["url"]} ({data["label"]}, {data["models"]:,} models)')
    changes = result['changes']
    if not changes:
        print(f'no price of the {result["models_in_use"]:,} models in use changed')
        return 0
    print(f'{len(changes):,} of the {result["models_in_use"]:,} models in use changed (USD per million tokens):')
    rows = [{'provider': c['provider'], 'model': c['model'] + (' (override applies)' if c['override'] else ''),
             'change': c['change'], **{label: _rate(c, kind) for kind, label in KINDS}} for c in changes]
    print(table(rows, ['provider', 'model', 'change', *(label for _, label in KINDS)]))
    print('stored events keep their cost: `spendgauge prices recalculate --from DATE` re-prices them')
    return 0


def _rate(change: dict[str, Any], kind: str) -> str:
    old, new = ((change[side] or {}).get(f'{kind}_usd_per_mtok') for side in ('old', 'new'))
    if old == new:
        return old or '-'
    return f'{old or "-"} -> {new or "-"}'


def cmd_recalculate(args: argparse.Namespace, backend: Backend) -> int:
    result = backend.recalculate_prices(args.start, args.end, args.dry_run)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    verb = 'would re-price' if result['dry_run'] else 're-priced'
    print(f'{verb} {result["events_changed"]:,} of {result["events_examined"]:,} events from {result["start"]} to '
          f'{result["end"]}: ${result["before_usd"]} -> ${result["after_usd"]} ({_signed(result["delta_usd"])})')
    if result['events_newly_priced']:
        print(f'{result["events_newly_priced"]:,} of them were unpriced and have a price now')
    if result['events_kept']:
        print(f'{result["events_kept"]:,} priced events keep their cost: no price is known for their model now')
    if result['by_model']:
        rows = [{'provider': m['provider'], 'model': m['model'], 'events': m['events'], 'before $': m['before_usd'],
                 'after $': m['after_usd'], 'change $': _signed(m['delta_usd'])} for m in result['by_model']]
        print(table(rows, ['provider', 'model', 'events', 'before $', 'after $', 'change $']))
    if result['dry_run']:
        print('dry run: nothing changed')
    else:
        print(f'audit #{result["audit_id"]} (`spendgauge prices audit`); priced with {result["price_data"]}')
    return 0


def cmd_audit(args: argparse.Namespace, backend: Backend) -> int:
    items = backend.price_audits(args.limit)
    if args.json:
        print(json.dumps(items, indent=2))
        return 0
    rows = [{'id': a['audit_id'], 'started': a['started_at'][:19], 'by': a['actor'], 'from': a['start'][:19],
             'to': a['end'][:19], 'status': a['status'], 'events': a['events_changed'],
             'change $': _signed(a['delta_usd'])} for a in items]
    print(table(rows, ['id', 'started', 'by', 'from', 'to', 'status', 'events', 'change $'],
                empty='(no re-pricing yet)'))
    return 0


def _signed(usd: str) -> str:
    return usd if usd.startswith('-') else f'+{usd}'
