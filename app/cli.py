"""`spendgauge`: run the server, or talk to one (`--url`) or to the database directly (`--db`).

Every failure prints one line to stderr and exits non-zero: 1 for a refused or failed request, 2 for bad usage.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

import httpx
from sqlalchemy.exc import SQLAlchemyError

from services.core.access import Actor, Role
from services.core.money import format_usd, micros_to_usd, usd_to_micros
from services.core.settings import SettingsError, load_settings, use_settings

DEFAULT_URL = 'http://127.0.0.1:8080'
MAX_USD = 1_000_000_000
BREAKDOWNS = {'agent': 'agent_id', 'provider': 'provider', 'model': 'model', 'channel': 'channel'}
CLI_ACTOR = Actor('cli', Role.ADMIN)  # --db: whoever can open the database may change it


class CliError(Exception):
    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class Backend(Protocol):
    def record(self, event: dict[str, Any]) -> dict[str, Any]: ...
    def summary(self, period: str) -> dict[str, Any]: ...
    def breakdown(self, by: str, period: str) -> dict[str, Any]: ...
    def set_limit(self, period: str, usd: Decimal) -> dict[str, Any]: ...
    def sync(self, source: str) -> dict[str, Any]: ...
    def report(self, kind: str, params: dict[str, str], fmt: str) -> str: ...


class HttpBackend:
    """Talks to a running server through the REST API."""

    def __init__(self, url: str, token: str | None) -> None:
        headers = {'Authorization': f'Bearer {token}'} if token else {}
        self.url = url.rstrip('/')
        self.client = httpx.Client(base_url=self.url + '/api/v1', headers=headers, timeout=30)

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise CliError(f'cannot reach SpendGauge at {self.url} ({type(exc).__name__}): start it with '
                           '`spendgauge serve`, or pass --db to use the database directly') from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code >= 400:
            detail = body.get('detail') if isinstance(body, dict) else None
            raise CliError(f'server answered {response.status_code}: '
                           f'{detail or "not a SpendGauge API answer (is --url right?)"}')
        if not isinstance(body, dict):
            raise CliError(f'{self.url} did not answer like a SpendGauge server (is --url right?)')
        return body

    def record(self, event: dict[str, Any]) -> dict[str, Any]:
        return self._call('POST', '/usage', json=event)

    def summary(self, period: str) -> dict[str, Any]:
        return self._call('GET', '/budget/summary', params={'period': period})

    def breakdown(self, by: str, period: str) -> dict[str, Any]:
        return self._call('GET', f'/budget/by-{by}', params={'period': period})

    def set_limit(self, period: str, usd: Decimal) -> dict[str, Any]:
        return self._call('PUT', f'/budget/limits/{period}', json={'limit_usd': str(usd)})

    def sync(self, source: str) -> dict[str, Any]:
        return self._call('POST', f'/sync/{source}', timeout=600)

    def report(self, kind: str, params: dict[str, str], fmt: str) -> str:
        """The server's own CSV or Markdown; the table is drawn here from its JSON. A refused parameter is bad usage."""
        from services.insights import report_formats

        if fmt in ('json', 'table'):
            try:
                body = self._call('GET', f'/reports/{kind}', params={**params, 'format': 'json'})
            except CliError as exc:
                raise CliError(str(exc), 2 if str(exc).startswith('server answered 422: ') else exc.code) from None
            if fmt == 'json':
                return json.dumps(body, indent=2) + '\n'
            return report_formats.render(report_formats.from_json(body), 'table')
        try:
            response = self.client.get(f'/reports/{kind}', params={**params, 'format': fmt})
        except httpx.TransportError as exc:
            raise CliError(f'cannot reach SpendGauge at {self.url} ({type(exc).__name__}): start it with '
                           '`spendgauge serve`, or pass --db to use the database directly') from None
        if response.status_code >= 400:
            try:
                detail = response.json().get('detail')
            except (ValueError, AttributeError):
                detail = None
            raise CliError(f'server answered {response.status_code}: '
                           f'{detail or "not a SpendGauge API answer (is --url right?)"}',
                           2 if response.status_code == 422 and detail else 1)
        if response.headers.get('content-type', '').split(';')[0] != report_formats.MEDIA_TYPES[fmt].split(';')[0]:
            raise CliError(f'{self.url} did not answer like a SpendGauge server (is --url right?)')
        return response.text


class DirectBackend:
    """Uses the services on the database itself: no server needed."""

    def __init__(self, database_url: str) -> None:
        from app import runtime

        settings = load_settings().with_overrides(database_url=database_url)
        self.rt = runtime.start(settings)

    def record(self, event: dict[str, Any]) -> dict[str, Any]:
        from services.usage.ledger import EventRejected

        try:
            status, row = self.rt.ledger.record(event)
        except EventRejected as exc:
            raise CliError(f'rejected: {exc}') from None
        return {'status': status, **row}

    def summary(self, period: str) -> dict[str, Any]:
        from services.spend import budget

        with self.rt.engine.connect() as conn:
            return budget.period_summary(conn, period, self.rt.settings.zone, self.rt.settings.daily_limit_micros)

    def breakdown(self, by: str, period: str) -> dict[str, Any]:
        from services.spend import budget

        with self.rt.engine.connect() as conn:
            span = budget.resolve_range(period, None, None, self.rt.settings.zone)
            return budget.spend_breakdown(conn, BREAKDOWNS[by], span)

    def set_limit(self, period: str, usd: Decimal) -> dict[str, Any]:
        return dict(self.rt.commands.limits.set(CLI_ACTOR, period, usd_to_micros(usd)))  # type: ignore[arg-type]

    def sync(self, source: str) -> dict[str, Any]:
        import asyncio

        from services.core.errors import NotFound
        from services.sources.sync import UnknownSource

        async def run() -> list[Any]:
            try:
                return await self.rt.commands.sync.now(CLI_ACTOR, source)
            finally:
                await self.rt.sync.aclose()
        try:
            return {'runs': asyncio.run(run())}
        except NotFound as exc:
            raise CliError(str(exc), 2) from None
        except UnknownSource as exc:
            raise CliError(str(exc)) from None

    def report(self, kind: str, params: dict[str, str], fmt: str) -> str:
        from services.insights import report_formats, reports

        s = self.rt.settings
        with self.rt.engine.connect() as conn:
            try:
                report = reports.build_report(conn, kind, s.zone, s.daily_limit_micros, params.get('period'),
                                              params.get('from'), params.get('to'), params.get('group_by'))
            except reports.ReportError as exc:
                raise CliError(str(exc), 2) from None
        text = report_formats.render(report, fmt)
        return text if text.endswith('\n') else text + '\n'


# --- commands ---------------------------------------------------------------------------------------------------

def cmd_serve(args: argparse.Namespace) -> int:
    from app.native import NativeUnavailable
    from app.server import UnsafeExposure, serve

    settings = load_settings().with_overrides(host=args.host, port=args.port, database_url=args.db, demo=args.demo)
    use_settings(settings)
    try:
        serve(settings, native=args.native)
    except UnsafeExposure as exc:
        raise CliError(str(exc), 2) from None
    except NativeUnavailable as exc:
        raise CliError(str(exc)) from None
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Always on the database itself (--db, or the configured one): the server has no demo endpoint."""
    from app import runtime
    from services import demo

    rt = runtime.start(load_settings().with_overrides(database_url=args.db))
    if args.clear:
        print(f'removed {demo.clear(rt.ledger):,} demo events')
    else:
        print(f'{demo.count(rt.engine):,} demo events; `spendgauge demo --clear` removes them, '
              '`spendgauge serve --demo` runs the simulator')
    return 0


def cmd_record(args: argparse.Namespace, backend: Backend) -> int:
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
        print(f'[{"#" * filled}{"." * (width - filled)}] {format_usd(spent)} / {format_usd(limit)} '
              f'({s["percent"]}%)  resets in {s["resets_in"]}')
    else:
        print(f'{format_usd(spent)} spent this {args.period}, no limit set')
    channels = s['by_channel']
    print(f'Via LiteLLM: {format_usd(channels["litellm"]["spent_micros"])} | '
          f'Direct: {format_usd(channels["direct"]["spent_micros"])} | Total: {format_usd(spent)}')
    return 0


def cmd_get_usage(args: argparse.Namespace, backend: Backend) -> int:
    data = backend.breakdown(args.by, args.period)
    key = BREAKDOWNS[args.by]
    rows = [{args.by: item[key] or '(none)', 'requests': item['requests'], 'input_tokens': item['input_tokens'],
             'output_tokens': item['output_tokens'], 'cost_usd': item['cost_usd']} for item in data['items']]
    if args.format == 'json':
        print(json.dumps({'period': args.period, 'start': data['start'], 'end': data['end'],
                          'total_usd': data['total_usd'], 'items': rows}, indent=2))
    elif args.format == 'csv':
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=[args.by, 'requests', 'input_tokens', 'output_tokens', 'cost_usd'],
                                lineterminator='\n')
        writer.writeheader()
        writer.writerows(rows)
        print(out.getvalue(), end='')
    else:
        print(_table(rows, [args.by, 'requests', 'input_tokens', 'output_tokens', 'cost_usd']))
        print(f'total this {args.period}: ${data["total_usd"]}')
    return 0


def cmd_set_limit(args: argparse.Namespace, backend: Backend) -> int:
    result = backend.set_limit(args.period, args.usd)
    print(f'{args.period} limit set to {format_usd(result["limit_micros"])}')
    return 0


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    if not rows:
        return '(no usage)'
    cells = [[str(r[c]) if not isinstance(r[c], int) else f'{r[c]:,}' for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ['  '.join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ['  '.join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(row, widths, strict=True)))
              for row in cells]
    return '\n'.join(lines)


# --- argument parsing -------------------------------------------------------------------------------------------

def _usd(text: str) -> Decimal:
    try:
        value = Decimal(text.lstrip('$'))
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f'not a dollar amount: {text!r}') from None
    if not value.is_finite() or not 0 <= value <= MAX_USD:
        raise argparse.ArgumentTypeError(f'must be a dollar amount between 0 and {MAX_USD:,}: {text!r}')
    return value


def _tokens(text: str) -> int:
    try:
        value = int(text.replace(',', '').replace('_', ''))
    except ValueError:
        raise argparse.ArgumentTypeError(f'not a whole number of tokens: {text!r}') from None
    if value < 0:
        raise argparse.ArgumentTypeError(f'token counts cannot be negative: {text!r}')
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='spendgauge', description='Self-hosted LLM budget tool.')
    sub = parser.add_subparsers(dest='command', required=True)

    serve = sub.add_parser('serve', help='run the dashboard, REST API and schedulers')
    serve.add_argument('--host', help='address to listen on (default 127.0.0.1)')
    serve.add_argument('--port', type=int, help='port (default 8080)')
    serve.add_argument('--db', help='database URL (default sqlite:///./data/spendgauge.db)')
    serve.add_argument('--native', action='store_true',
                       help="open the dashboard in a desktop window (needs the native extra: pip install -e "
                            "'.[native]'); listens on 127.0.0.1 only, --port 0 picks a free port in 8000-8999")
    serve.add_argument('--demo', nargs='?', const='on', choices=['on', 'auto'],
                       help="run the simulated demo swarm; 'auto' only when the database has no usage yet "
                            '(env SPENDGAUGE_DEMO)')

    def client_options(p: argparse.ArgumentParser) -> None:
        p.add_argument('--url', default=os.environ.get('SPENDGAUGE_URL', DEFAULT_URL),
                       help='server to talk to (env SPENDGAUGE_URL)')
        p.add_argument('--db', help='use this database directly instead of a server')

    record = sub.add_parser('record', help='record one LLM call')
    client_options(record)
    record.add_argument('--model', required=True)
    record.add_argument('--provider')
    record.add_argument('--agent')
    record.add_argument('--session')
    record.add_argument('--task')
    record.add_argument('--user')
    record.add_argument('--project')
    record.add_argument('--channel', choices=['direct', 'litellm'])
    record.add_argument('--input', type=_tokens, default=0, help='input tokens, cached ones included')
    record.add_argument('--output', type=_tokens, default=0)
    record.add_argument('--cache-read', type=_tokens, default=0)
    record.add_argument('--cache-write', type=_tokens, default=0)
    record.add_argument('--cost', type=_usd, help='cost in USD as reported by the provider')
    record.add_argument('--event-id')
    record.add_argument('--tag', action='append')
    record.add_argument('--latency-ms', type=int)
    record.add_argument('--ts', help='ISO time of the call (default now)')
    record.add_argument('--json', action='store_true')

    status = sub.add_parser('status', help="today's spend against the limit")
    client_options(status)
    status.add_argument('--period', choices=['day', 'week', 'month'], default='day')
    status.add_argument('--json', action='store_true')

    usage = sub.add_parser('get-usage', help='spend for a period, by model, provider, agent or channel')
    client_options(usage)
    usage.add_argument('period', choices=['day', 'week', 'month'])
    usage.add_argument('--by', choices=list(BREAKDOWNS), default='model')
    usage.add_argument('--format', choices=['table', 'json', 'csv'], default='table')

    limit = sub.add_parser('set-limit', help='set the day, week or month budget limit')
    client_options(limit)
    limit.add_argument('period', choices=['day', 'week', 'month'])
    limit.add_argument('usd', type=_usd)

    sync = sub.add_parser('sync', help='pull spend from LiteLLM and the providers now',
                          description='Runs the configured pullers at once (keys from the SPENDGAUGE_* settings).')
    client_options(sync)
    sync.add_argument('source', nargs='?', default='all',
                      help='litellm, openai_direct, anthropic_direct, openrouter_direct or all (default)')

    demo = sub.add_parser('demo', help='count or remove the demo rows (on the database directly)',
                          description='Without --clear, count the demo events. Works on the database directly: '
                                      '--db, or SPENDGAUGE_DATABASE_URL / the default database.')
    demo.add_argument('--clear', action='store_true',
                      help='remove every demo event with its share of the totals, and the demo tasks')
    demo.add_argument('--db', help='database URL (default: the configured one)')

    check = sub.add_parser(
        'check', help='exit 0 within budget, 1 over it, 2 on error (for pipelines)',
        description='With --url (or SPENDGAUGE_URL) or --db, reads the spend of the scope from SpendGauge and '
                    "compares it with --max or the server's limit for the period. Otherwise reads SWARM_CURRENT_SPEND "
                    f'or {SPEND_FILE} and compares it with --max or SWARM_BUDGET_MAX.')
    check.add_argument('--max', type=_usd, help='budget in USD (default: the limit, or SWARM_BUDGET_MAX)')
    check.add_argument('--scope', default='global', help='global (default) or agent:X, provider:X, model:X, '
                                                         'channel:X')
    check.add_argument('--period', choices=['day', 'week', 'month'], default='day')
    check.add_argument('--on-exceeded', metavar='CMD', help='shell command to run when over budget (it gets '
                                                            'SPENDGAUGE_SPENT_USD, _MAX_USD, _SCOPE, _PERIOD)')
    check.add_argument('--on-exceeded-timeout', type=float, default=60, help=argparse.SUPPRESS)
    check.add_argument('--url', help='server to ask (env SPENDGAUGE_URL); without it, the local convention')
    check.add_argument('--db', help='use this database directly')

    export = sub.add_parser('export-spend', help=f"write today's spend (USD) to a file, e.g. {SPEND_FILE}")
    client_options(export)
    export.add_argument('--file', default=SPEND_FILE)
    export.add_argument('--period', choices=['day', 'week', 'month'], default='day')
    _limits_parser(sub, client_options)
    _report_parser(sub, client_options)
    return parser


def _report_parser(sub: Any, client_options: Any) -> None:
    report = sub.add_parser('report', help='summary, trend, comparison or projection as a table, JSON, CSV or '
                                           'Markdown', description='A period (default month) or --from/--to: ISO '
                                           'dates (local days, --to inclusive) or datetimes, as the API takes them.')
    client_options(report)
    report.add_argument('kind', choices=['summary', 'trend', 'comparison', 'projection'])
    report.add_argument('--period', choices=['day', 'week', 'month'])
    report.add_argument('--from', dest='start', metavar='FROM', help='ISO date (local day) or datetime')
    report.add_argument('--to', dest='end', metavar='TO', help='ISO date (inclusive local day) or datetime')
    report.add_argument('--group-by', help='summary, comparison: all (default), provider, model, agent; '
                                           'trend: day (default), week')
    report.add_argument('--format', choices=['table', 'json', 'csv', 'md'], default='table')
    report.add_argument('--output', '-o', metavar='FILE', help='write the report to FILE instead of stdout')


def cmd_sync(args: argparse.Namespace, backend: Backend) -> int:
    runs = backend.sync(args.source)['runs']
    if not runs:
        print('no source is configured: set SPENDGAUGE_LITELLM_URL and SPENDGAUGE_LITELLM_MASTER_KEY, or a '
              'provider admin key (see .env.example)')
        return 0
    for run in runs:
        outcome = f'ok, {run["rows"]} rows' if run['status'] == 'ok' else f'failed: {run["error"]}'
        print(f'{run["source"]}: {outcome}')
    return 0 if all(run['status'] == 'ok' for run in runs) else 1


# --- pipelines: check and export-spend ---------------------------------------------------------------------------

SPEND_FILE = '.swarm/costs/current_spend'
SCOPES = {'agent': 'agent', 'provider': 'provider', 'model': 'model', 'channel': 'channel'}


def _amount(text: str, where: str) -> Decimal:
    try:
        value = Decimal(text.strip().lstrip('$').replace(',', ''))
    except InvalidOperation:
        raise CliError(f'{where} is not a dollar amount: {text.strip()[:40]!r}', 2) from None
    if not value.is_finite() or value < 0:
        raise CliError(f'{where} must be a non-negative dollar amount', 2)
    return value


def _scope(text: str) -> tuple[str, str | None]:
    if text == 'global':
        return 'global', None
    kind, _, value = text.partition(':')
    if kind not in SCOPES or not value:
        raise CliError(f'--scope must be global or one of {", ".join(k + ":NAME" for k in SCOPES)}', 2)
    return kind, value


def _local_spend() -> tuple[Decimal, str]:
    """The swarm-budget.sh convention: SWARM_CURRENT_SPEND, else the .swarm/costs/current_spend file."""
    env = os.environ.get('SWARM_CURRENT_SPEND', '').strip()
    if env:
        return _amount(env, 'SWARM_CURRENT_SPEND'), 'SWARM_CURRENT_SPEND'
    try:
        with open(SPEND_FILE) as f:
            text = f.read()
    except FileNotFoundError:
        raise CliError(f'no spend to check: set SWARM_CURRENT_SPEND, write {SPEND_FILE} '
                       '(`spendgauge export-spend`), or pass --url', 2) from None
    except OSError as exc:
        raise CliError(f'cannot read {SPEND_FILE}: {exc.strerror}', 2) from None
    return _amount(text, SPEND_FILE), SPEND_FILE


def _server_spend(backend: Backend, kind: str, value: str | None, period: str) -> tuple[Decimal, Decimal | None]:
    if kind == 'global':
        summary = backend.summary(period)
        limit = summary['limit_micros']
        return Decimal(summary['spent_micros']) / 1_000_000, None if limit is None else Decimal(limit) / 1_000_000
    items = backend.breakdown(kind, period)['items']
    key = BREAKDOWNS[kind]
    micros = sum(int(item['cost_micros']) for item in items if item[key] == value)
    return Decimal(micros) / 1_000_000, None


def cmd_check(args: argparse.Namespace) -> int:
    """Exit 0 within budget, 1 over it (at the limit counts as over), 2 on error; one line on stdout."""
    try:
        kind, value = _scope(args.scope)
        url = args.url or os.environ.get('SPENDGAUGE_URL', '').strip()
        if args.db or url:
            backend: Backend = DirectBackend(args.db) if args.db else HttpBackend(url, _token())
            spent, server_limit = _server_spend(backend, kind, value, args.period)
            source = 'server' if not args.db else 'database'
            limit = args.max if args.max is not None else server_limit
            if limit is None:
                raise CliError(f'no {args.period} limit for {args.scope}: pass --max', 2)
        else:
            spent, source = _local_spend()
            limit = args.max
            if limit is None:
                budget_env = os.environ.get('SWARM_BUDGET_MAX', '').strip()
                if not budget_env:
                    raise CliError('no budget to check against: pass --max or set SWARM_BUDGET_MAX', 2)
                limit = _amount(budget_env, 'SWARM_BUDGET_MAX')
    except CliError as exc:
        raise CliError(str(exc), 2) from None
    except (KeyError, TypeError, ValueError) as exc:
        raise CliError(f'unexpected answer from the server ({type(exc).__name__}: {exc})', 2) from None
    except (OSError, SQLAlchemyError) as exc:
        raise CliError(f'cannot use the database: {_first_line(exc)}', 2) from None
    over = spent >= limit
    percent = f'{100 * spent / limit:.1f}%' if limit else ('100%' if spent else '0%')
    scope = args.scope if kind == 'global' else f'{kind} {value}'
    print(f'{"OVER BUDGET" if over else "within budget"}: ${spent:.2f} of ${limit:.2f} ({percent}) '
          f'this {args.period}, {scope} [{source}]')
    if over and args.on_exceeded:
        sys.stdout.flush()
        env = {**os.environ, 'SPENDGAUGE_SPENT_USD': str(spent), 'SPENDGAUGE_MAX_USD': str(limit),
               'SPENDGAUGE_SCOPE': args.scope, 'SPENDGAUGE_PERIOD': args.period}
        import subprocess

        try:
            subprocess.run(args.on_exceeded, shell=True, env=env, timeout=args.on_exceeded_timeout, check=False)
        except subprocess.TimeoutExpired:
            print(f'spendgauge: --on-exceeded command timed out after {args.on_exceeded_timeout} s',
                  file=sys.stderr)
    return 1 if over else 0


def cmd_export_spend(args: argparse.Namespace, backend: Backend) -> int:
    spent = backend.summary(args.period)['spent_micros']
    text = micros_to_usd(int(spent))
    directory = os.path.dirname(args.file)
    try:
        if directory:
            os.makedirs(directory, exist_ok=True)
        temp = f'{args.file}.tmp'
        with open(temp, 'w') as f:
            f.write(text + '\n')
        os.replace(temp, args.file)  # readers never see a half-written file
    except OSError as exc:
        raise CliError(f'cannot write {args.file}: {exc.strerror}') from None
    print(f'{text} USD spent this {args.period} written to {args.file}')
    return 0


def cmd_report(args: argparse.Namespace, backend: Backend) -> int:
    from services.insights import report_model

    try:
        report_model.group_by_for(args.kind, args.group_by)
    except report_model.ReportError as exc:
        raise CliError(str(exc), 2) from None
    if bool(args.start) != bool(args.end):
        raise CliError('give both --from and --to, or neither', 2)
    params = {name: value for name, value in (('period', args.period), ('from', args.start), ('to', args.end),
                                              ('group_by', args.group_by)) if value}
    text = backend.report(args.kind, params, args.format)
    if not args.output:
        print(text, end='')
        return 0
    try:
        with open(args.output, 'w', newline='') as f:
            f.write(text)
    except OSError as exc:
        raise CliError(f'cannot write {args.output}: {exc.strerror}') from None
    print(f'{args.kind} report ({args.format}) written to {args.output}')
    return 0


COMMANDS = {'record': cmd_record, 'status': cmd_status, 'get-usage': cmd_get_usage, 'set-limit': cmd_set_limit,
            'sync': cmd_sync, 'export-spend': cmd_export_spend}


def _token() -> str | None:
    token = os.environ.get('SPENDGAUGE_API_TOKEN', '').strip()
    if token:
        return token
    configured = os.environ.get('SPENDGAUGE_API_TOKENS', '').split(',')
    return configured[0].strip() or None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == 'serve':
            return cmd_serve(args)
        if args.command == 'demo':
            return cmd_demo(args)
        if args.command == 'check':
            return cmd_check(args)
        backend: Backend = DirectBackend(args.db) if args.db else HttpBackend(args.url, _token())
        return COMMANDS[args.command](args, backend)
    except CliError as exc:
        print(f'spendgauge: {exc}', file=sys.stderr)
        return exc.code
    except (KeyError, TypeError) as exc:  # an answer without the fields we need
        print(f'spendgauge: unexpected answer from the server (missing {exc})', file=sys.stderr)
        return 1
    except (OSError, SQLAlchemyError) as exc:  # the database of --db cannot be opened or reached
        print(f'spendgauge: cannot use the database: {_first_line(exc)}', file=sys.stderr)
        return 1
    except SettingsError as exc:
        print(f'spendgauge: {exc}', file=sys.stderr)
        return 2
    except ValueError as exc:  # a database URL or a value the services refuse
        print(f'spendgauge: {exc}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, 'orig', None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# --- limits: the budget policies ---------------------------------------------------------------------------------

def _limits_parser(sub: Any, client_options: Any) -> None:
    limits = sub.add_parser('limits', help='budget policies (`limits list`)')
    actions = limits.add_subparsers(dest='limits_command', required=True)
    listing = actions.add_parser('list', help='every policy: scope, period, limit, thresholds, action, origin')
    client_options(listing)
    listing.add_argument('--json', action='store_true')


def cmd_limits(args: argparse.Namespace, backend: Backend) -> int:
    if isinstance(backend, DirectBackend):
        from services.budget import policies

        with backend.rt.engine.connect() as conn:
            items = [p.as_dict() for p in policies.list_policies(conn)]
    else:
        items = backend._call('GET', '/policies')['items']  # type: ignore[attr-defined]
    if args.json:
        print(json.dumps(items, indent=2))
        return 0
    if not items:
        print('no policies: add one with POST /api/v1/policies, on the Policies page, in SPENDGAUGE_POLICIES_FILE '
              'or with DAILY_BUDGET_LIMIT')
        return 0
    rows = [{'id': p['id'], 'name': p['name'],
             'scope': p['scope'] + (f'={p["scope_value"]}' if p['scope_value'] else ''),
             'period': p['period'] if p['period'] != 'custom' else f'{p["period_start"]}..{p["period_end"]}',
             'limit': format_usd(p['limit_micros']), 'soft/critical': f'{p["soft_percent"]}/{p["critical_percent"]}%',
             'action': p['action'], 'origin': p['origin'], 'enabled': 'yes' if p['enabled'] else 'no'} for p in items]
    print(_table(rows, list(rows[0])))
    return 0


COMMANDS['limits'] = cmd_limits
COMMANDS['report'] = cmd_report


def run() -> None:
    sys.exit(main())
