"""`spendgauge audit`: the state changes of the audit trail, newest first (admins only), through a server or --db."""
from __future__ import annotations

import argparse
import json
from typing import Any

from app.cli.args import client_options
from app.cli.backends import Backend
from app.cli.output import table

MAX_LIMIT = 1000


def limit(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        raise argparse.ArgumentTypeError(f'between 1 and {MAX_LIMIT} (got {text!r})')
    return int(text)


def register(sub: Any) -> None:
    audit = sub.add_parser('audit', help='who changed what: the audit trail, newest first',
                           description='State changes (policies, limits, prices, tokens, pauses, ...) with who made '
                                       'them and the state before and after, newest first. Needs an admin token '
                                       '(or --db). Default range: the 30 days up to --to (default now).')
    client_options(audit)
    audit.add_argument('--from', dest='start', metavar='TIME', help='ISO date or time, inclusive')
    audit.add_argument('--to', dest='end', metavar='TIME', help='ISO date or time, exclusive')
    audit.add_argument('--actor', help='who: a token or user name, cli, spendgauge (automatic actions)')
    audit.add_argument('--action', help='a command, e.g. policies.create, or a group: policies.*')
    audit.add_argument('--target', help='what changed, e.g. policy:3 or agent:coder')
    audit.add_argument('--limit', type=limit, default=50, help=f'at most this many (1-{MAX_LIMIT}, default 50)')
    audit.add_argument('--cursor', help='the next page: the cursor the previous page printed')
    audit.add_argument('--json', action='store_true', help='the page as the API answers it, before/after included')
    audit.set_defaults(run=cmd_audit)


def params_of(args: argparse.Namespace) -> dict[str, str]:
    given = {'from': args.start, 'to': args.end, 'actor': args.actor, 'action': args.action, 'target': args.target,
             'cursor': args.cursor}
    return {k: v for k, v in given.items() if v is not None} | {'limit': str(args.limit)}


def cmd_audit(args: argparse.Namespace, backend: Backend) -> int:
    page = backend.audit(params_of(args))
    if args.json:
        print(json.dumps(page, indent=2))
        return 0
    rows = [{'id': r['id'], 'at': r['at'][:19], 'actor': r['actor'], 'action': r['action'], 'target': r['target']}
            for r in page['items']]
    print(table(rows, ['id', 'at', 'actor', 'action', 'target'], empty='(no changes in this range)'))
    if page['next_cursor']:
        print(f'more: --cursor {page["next_cursor"]}')
    return 0
