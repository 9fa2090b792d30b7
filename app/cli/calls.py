"""`spendgauge get-usage --events`: the recorded calls, with the usage explorer's and `GET /api/v1/usage`'s filters,
as a table or JSON (a page, newest first) or as CSV or JSON lines (the export, streamed)."""
from __future__ import annotations

import argparse
import json
from typing import Any

from app.cli.backends import Backend, CliError
from app.cli.output import table, write_out
from services.core.display import format_usd

# option -> the API's query parameter
FILTERS = {'agent': 'agent_id', 'session': 'session_id', 'task': 'task_id', 'user': 'user_id', 'project': 'project',
           'tag': 'tag', 'provider': 'provider', 'model': 'model', 'channel': 'channel', 'cost_source': 'cost_source',
           'start': 'from', 'end': 'to', 'sort': 'sort'}
PAGE_FORMATS = ('table', 'json')
FILE_FORMATS = ('csv', 'jsonl')
MAX_PAGE = 1000
MAX_EXPORT = 1_000_000
COLUMNS = ['time', 'agent', 'model', 'input', 'output', 'cost', 'source']


def add_options(parser: argparse.ArgumentParser) -> None:
    calls = parser.add_argument_group('calls (--events, or any of these filters, lists the calls themselves)')
    calls.add_argument('--events', action='store_true', help='list the calls, newest first, instead of a breakdown')
    for option in ('agent', 'session', 'task', 'user', 'project', 'tag', 'provider', 'model'):
        calls.add_argument(f'--{option}', help=f'only calls of this {option}')
    calls.add_argument('--channel', choices=['litellm', 'direct'])
    calls.add_argument('--cost-source', choices=['priced', 'reported', 'unpriced'])
    calls.add_argument('--from', dest='start', metavar='FROM', help='ISO time (inclusive), instead of PERIOD')
    calls.add_argument('--to', dest='end', metavar='TO', help='ISO time (exclusive)')
    calls.add_argument('--sort', choices=['time', 'cost'], help='time: newest first (default); cost: dearest first')
    calls.add_argument('--limit', type=int, help=f'calls to give: table/json default 50, at most {MAX_PAGE:,} (a page; '
                                                 f'--cursor goes on); csv/jsonl default 100,000, at most '
                                                 f'{MAX_EXPORT:,}')
    calls.add_argument('--cursor', help='table/json: the next page, from the `next` the last one gave')
    calls.add_argument('--output', '-o', metavar='FILE', help='write to FILE instead of stdout')


def wanted(args: argparse.Namespace) -> bool:
    """Whether the calls are asked for: --events, or a filter only the calls have."""
    return bool(args.events or args.cursor or any(getattr(args, option) for option in FILTERS))


def run(args: argparse.Namespace, backend: Backend) -> int:
    if args.by:
        raise CliError('--by makes a breakdown; the filters and --events list calls: give one or the other', 2)
    if args.period and (args.start or args.end):
        raise CliError('give a PERIOD or --from/--to, not both', 2)
    params = {param: getattr(args, option) for option, param in FILTERS.items() if getattr(args, option)}
    if args.period:
        params['period'] = args.period
    if args.format in FILE_FORMATS:
        if args.cursor:
            raise CliError('--cursor pages a table or JSON; csv and jsonl give every call up to --limit', 2)
        limit = _limit(args.limit, 100_000, MAX_EXPORT)
        write_out(backend.export_usage(params, args.format, limit), args.output, f'calls ({args.format})')
        return 0
    limit = _limit(args.limit, 50, MAX_PAGE)
    page = backend.usage({**params, 'limit': str(limit), **({'cursor': args.cursor} if args.cursor else {})})
    text = json.dumps(page, indent=2) if args.format == 'json' else _table(page, args.sort)
    write_out([text + '\n'], args.output, f'calls ({args.format})')
    return 0


def _table(page: dict[str, Any], sort: str | None) -> str:
    rows = [{'time': item['ts'][:19].replace('T', ' '), 'agent': item['agent_id'] or '-',
             'model': f'{item["provider"]}/{item["model"]}', 'input': item['input_tokens'],
             'output': item['output_tokens'], 'cost': format_usd(item['cost_micros'], 6),
             'source': item['cost_source']} for item in page['items']]
    lines = [table(rows, COLUMNS, empty='(no calls)')]
    if page.get('searched_to') and sort == 'cost':
        lines.append(f'ranks the calls back to {page["searched_to"]} (UTC): --to earlier ranks older ones')
    elif page.get('searched_to'):
        lines.append(f'searched back to {page["searched_to"]} (UTC) without filling the page')
    if page.get('next_cursor'):
        lines.append(f'more: --cursor {page["next_cursor"]}')
    return '\n'.join(lines)


def _limit(given: int | None, default: int, most: int) -> int:
    if given is None:
        return default
    if not 1 <= given <= most:
        raise CliError(f'--limit: must be between 1 and {most:,} for this format', 2)
    return given
