"""`spendgauge prices update|recalculate|audit`: newer genai-prices data, and re-pricing stored events with it."""
from __future__ import annotations

import argparse
import json
from typing import Any

from app.cli.args import client_options
from app.cli.backends import Backend
from app.cli.output import table

MAX_AUDITS = 500  # services/usage/repricing.py (not imported: the CLI starts without the database layer)
KINDS = (('input', 'input'), ('output', 'output'), ('cache_read', 'cache read'), ('cache_write', 'cache write'))


def register(sub: Any) -> None:
    prices = sub.add_parser('prices', help='update the genai-prices data, re-price stored events, see the audit')
    actions = prices.add_subparsers(dest='prices_command', required=True)
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
    for parser, run in ((update, cmd_update), (recalculate, cmd_recalculate), (audit, cmd_audit)):
        client_options(parser)
        parser.add_argument('--json', action='store_true')
        parser.set_defaults(run=run)


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
