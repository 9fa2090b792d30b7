"""Recording and reading spend: record, status, get-usage, set-limit, sync, limits, report."""
from __future__ import annotations

import argparse
import json
from typing import Any

from app.cli import calls
from app.cli.args import PERIODS, client_options, tokens, usd, usd_or_none
from app.cli.backends import BREAKDOWNS, Backend, CliError
from app.cli.output import table, write_out
from services.core.display import channel_text, format_usd, format_usd_all, plural
from services.core.export import csv_text
from services.core.settings import LIMIT_ACTIONS, SourceSettings
from services.insights import report_model


def register(sub: Any) -> None:
    record = sub.add_parser('record', help='record one LLM call',
                            description='Give its tokens (the cost is priced from them), its cost, or both.')
    client_options(record)
    record.add_argument('--model', required=True)
    record.add_argument('--provider')
    record.add_argument('--agent')
    record.add_argument('--session')
    record.add_argument('--task')
    record.add_argument('--user')
    record.add_argument('--project')
    record.add_argument('--channel', choices=['direct', 'litellm'])
    record.add_argument('--input', type=tokens, default=0, help='input tokens, cached ones included')
    record.add_argument('--output', type=tokens, default=0)
    record.add_argument('--cache-read', type=tokens, default=0)
    record.add_argument('--cache-write', type=tokens, default=0)
    record.add_argument('--cost', type=usd, help='cost in USD as reported by the provider')
    record.add_argument('--event-id')
    record.add_argument('--tag', action='append')
    record.add_argument('--latency-ms', type=int)
    record.add_argument('--ts', help='ISO time of the call (default now)')
    record.add_argument('--json', action='store_true')
    record.set_defaults(run=cmd_record)

    status = sub.add_parser('status', help="today's spend against the limit")
    client_options(status)
    status.add_argument('--period', choices=PERIODS, default='day')
    status.add_argument('--json', action='store_true')
    status.set_defaults(run=cmd_status)

    usage = sub.add_parser('get-usage', help='spend for a period by model, provider, agent or channel; or the calls',
                           description='A breakdown of the period (default day) by --by; with --events or any '
                                       'filter, the calls themselves, as the usage explorer lists them.')
    client_options(usage)
    usage.add_argument('period', nargs='?', choices=PERIODS)
    usage.add_argument('--by', choices=list(BREAKDOWNS), help='the breakdown (default model)')
    usage.add_argument('--format', choices=['table', 'json', 'csv', 'jsonl'], default='table')
    calls.add_options(usage)
    usage.set_defaults(run=cmd_get_usage)

    limit = sub.add_parser('set-limit', help='set the day, week or month budget limit',
                           description='The limit is a global policy of the period: warn at 80 %%, throttle at '
                                       '95 %%, block at 100 %% (--action caps how far it goes). `none` removes it.')
    client_options(limit)
    limit.add_argument('period', choices=PERIODS)
    limit.add_argument('usd', type=usd_or_none, help='USD, or none')
    limit.add_argument('--action', choices=LIMIT_ACTIONS, help='block (default for a new limit), throttle or warn')
    limit.set_defaults(run=cmd_set_limit)

    sync = sub.add_parser('sync', help='pull spend from LiteLLM and the providers now',
                          description='Runs the configured pullers at once (keys from the SPENDGAUGE_* settings).')
    client_options(sync)
    sync.add_argument('source', nargs='?', default='all',
                      help='litellm, openai_direct, anthropic_direct, openrouter_direct or all (default)')
    sync.set_defaults(run=cmd_sync)

    limits = sub.add_parser('limits', help='budget policies (`limits list`)')
    actions = limits.add_subparsers(dest='limits_command', required=True)
    listing = actions.add_parser('list', help='every policy: scope, period, limit, thresholds, action, origin')
    client_options(listing)
    listing.add_argument('--json', action='store_true')
    listing.set_defaults(run=cmd_limits)

    report = sub.add_parser('report', help='summary, trend, comparison, projection or token efficiency as a '
                                           'table, JSON, CSV or Markdown',
                            description='A period (default month) or --from/--to: ISO dates (local days, --to '
                                        'inclusive) or datetimes, as the API takes them.')
    client_options(report)
    report.add_argument('kind', choices=list(report_model.KINDS))
    report.add_argument('--period', choices=PERIODS)
    report.add_argument('--from', dest='start', metavar='FROM', help='ISO date (local day) or datetime')
    report.add_argument('--to', dest='end', metavar='TO', help='ISO date (inclusive local day) or datetime')
    report.add_argument('--group-by', help='summary, comparison: all (default), provider, model, agent; '
                                           'trend: day (default), week; efficiency: agent (default), model; '
                                           'chargeback: project (default), agent, user, tag, provider, model or '
                                           'allocation:<id>')
    report.add_argument('--format', choices=['table', 'json', 'csv', 'md'], default='table')
    report.add_argument('--output', '-o', metavar='FILE', help='write the report to FILE instead of stdout')
    report.set_defaults(run=cmd_report)


def cmd_record(args: argparse.Namespace, backend: Backend) -> int:
    if args.cost is None and not (args.input or args.output or args.cache_read or args.cache_write):
        raise CliError('nothing to record: give the tokens of the call (--input, --output, --cache-read, '
                       '--cache-write) or its cost (--cost USD)', 2)
    event: dict[str, Any] = {
        'model': args.model, 'provider': args.provider, 'agent_id': args.agent, 'session_id': args.session,
        'task_id': args.task, 'user_id': args.user, 'project': args.project, 'channel': args.channel,
        'input_tokens': args.input, 'output_tokens': args.output, 'cache_read_tokens': args.cache_read,
        'cache_write_tokens': args.cache_write, 'event_id': args.event_id, 'tags': args.tag or [],
        'latency_ms': args.latency_ms, 'ts': args.ts, 'source': 'sdk',
    }
    if args.cost is not None:
        event['cost_usd'] = str(args.cost)
    stored = backend.record({k: v for k, v in event.items() if v is not None})
    if args.json:
        print(json.dumps(stored, indent=2))
    else:
        print(f'{stored["status"]}: {stored["event_id"]} {stored["provider"]}/{stored["model"]} '
              f'{stored["input_tokens"]:,} in / {stored["output_tokens"]:,} out = '
              f'{format_usd(stored["cost_micros"], 6)} ({stored["cost_source"]})')
    return 0


def cmd_status(args: argparse.Namespace, backend: Backend) -> int:
    s = backend.summary(args.period)
    if args.json:
        print(json.dumps(s, indent=2))
        return 0
    spent, limit = s['spent_micros'], s['limit_micros']
    if limit is not None:
        width = 30
        filled = min(width, round(width * spent / limit)) if limit else (width if spent else 0)
        spent_text, limit_text = format_usd_all([spent, limit])
        print(f'[{"#" * filled}{"." * (width - filled)}] {spent_text} / {limit_text} '
              f'({s["percent"]}%)  resets in {s["resets_in"]}')
    else:
        print(f'{format_usd(spent)} spent this {args.period}, no limit set')
    channels = s['by_channel']
    print(channel_text(channels['litellm']['spent_micros'], channels['direct']['spent_micros'], limit))
    return 0


def cmd_get_usage(args: argparse.Namespace, backend: Backend) -> int:
    if calls.wanted(args):
        return calls.run(args, backend)
    if args.format == 'jsonl' or args.limit is not None or args.output:
        raise CliError('--limit, --output and jsonl apply to the calls: add --events', 2)
    by, period = args.by or 'model', args.period or 'day'
    data = backend.breakdown(by, period)
    key = BREAKDOWNS[by]
    columns = [by, 'requests', 'input_tokens', 'output_tokens', 'cost_usd']
    rows = [{by: item[key] or '(none)', 'requests': item['requests'], 'input_tokens': item['input_tokens'],
             'output_tokens': item['output_tokens'], 'cost_usd': item['cost_usd']} for item in data['items']]
    if args.format == 'json':
        print(json.dumps({'period': period, 'start': data['start'], 'end': data['end'],
                          'total_usd': data['total_usd'], 'items': rows}, indent=2))
    elif args.format == 'csv':
        print(csv_text(columns, ([row[c] for c in columns] for row in rows)), end='')
    else:
        print(table(rows, columns))
        print(f'total this {period}: ${data["total_usd"]}')
    return 0


def cmd_set_limit(args: argparse.Namespace, backend: Backend) -> int:
    if args.usd is None and args.action:
        raise CliError('--action: a removed limit has no action', 2)
    result = backend.set_limit(args.period, args.usd, args.action)
    if result['limit_micros'] is None:
        print(f'{args.period} limit removed')
    else:
        print(f'{args.period} limit set to {format_usd(result["limit_micros"])} ({ladder(result)})')
    return 0


def ladder(limit: dict[str, Any]) -> str:
    """`warn at 80%, throttle at 95%, block at 100%`, as far as the action goes."""
    steps = [f'warn at {limit["soft_percent"]}%']
    if limit['action'] in ('throttle', 'block'):
        steps.append(f'throttle at {limit["critical_percent"]}%')
    if limit['action'] == 'block':
        steps.append('block at 100%')
    return ', '.join(steps)


def cmd_sync(args: argparse.Namespace, backend: Backend) -> int:
    runs = backend.sync(args.source)['runs']
    if not runs:
        print(f'no source is configured: {SourceSettings.how_to_enable()}')
        return 0
    for run in runs:
        outcome = f'ok, {plural(run["rows"], "row")}' if run['status'] == 'ok' else f'failed: {run["error"]}'
        print(f'{run["source"]}: {outcome}')
    return 0 if all(run['status'] == 'ok' for run in runs) else 1


def cmd_limits(args: argparse.Namespace, backend: Backend) -> int:
    items = backend.policies()
    if args.json:
        print(json.dumps(items, indent=2))
        return 0
    if not items:
        print('no policies: add one with POST /api/v1/policies, on the Policies page, in SPENDGAUGE_POLICIES_FILE '
              'or with DAILY_BUDGET_LIMIT')
        return 0
    limits = format_usd_all([p['limit_micros'] for p in items])
    rows = [{'id': p['id'], 'name': p['name'],
             'scope': p['scope'] + (f'={p["scope_value"]}' if p['scope_value'] else ''),
             'period': p['period'] if p['period'] != 'custom' else f'{p["period_start"]}..{p["period_end"]}',
             'limit': limit, 'soft/critical': f'{p["soft_percent"]}/{p["critical_percent"]}%',
             'action': p['action'], 'origin': p['origin'], 'enabled': 'yes' if p['enabled'] else 'no'}
            for p, limit in zip(items, limits, strict=True)]
    print(table(rows, list(rows[0])))
    return 0


def cmd_report(args: argparse.Namespace, backend: Backend) -> int:
    try:
        report_model.group_by_for(args.kind, args.group_by)
    except report_model.ReportError as exc:
        raise CliError(str(exc), 2) from None
    if bool(args.start) != bool(args.end):
        raise CliError('give both --from and --to, or neither', 2)
    params = {name: value for name, value in (('period', args.period), ('from', args.start), ('to', args.end),
                                              ('group_by', args.group_by)) if value}
    write_out([backend.report(args.kind, params, args.format)], args.output, f'{args.kind} report ({args.format})')
    return 0
