"""For pipelines: `check` exits 0 within budget, 1 over it, 2 on error; `export-spend` writes the spend where
swarm-budget.sh scripts read it."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from decimal import Decimal
from typing import Any

from app.cli.args import PERIODS, api_token, client_options, server_url, usd
from app.cli.backends import BREAKDOWNS, Backend, CliError, HttpBackend, Unreachable, database_error
from app.cli.output import note
from services.core.money import micros_to_usd, parse_usd

SPEND_FILE = '.swarm/costs/current_spend'
LOCAL_SOURCES = ('SWARM_CURRENT_SPEND', SPEND_FILE)
SCOPES = ('agent', 'provider', 'model', 'channel')


def register(sub: Any) -> None:
    check = sub.add_parser(
        'check', help='exit 0 within budget, 1 over it, 2 on error (for pipelines)',
        description='Reads the spend of the scope from SpendGauge: --db, --url, or the configured server '
                    '(SPENDGAUGE_URL, else SPENDGAUGE_HOST/PORT and .env, as `serve` reads them). When no configured '
                    f'server answers, reads SWARM_CURRENT_SPEND or {SPEND_FILE} (global scope only), and says so on '
                    'stderr. The budget is --max, else SWARM_BUDGET_MAX, else the limit of the period on the server.')
    check.add_argument('--max', type=usd, help='budget in USD (default: SWARM_BUDGET_MAX, else the limit)')
    check.add_argument('--scope', default='global', help='global (default) or agent:X, provider:X, model:X, '
                                                         'channel:X')
    check.add_argument('--period', choices=PERIODS, default='day')
    check.add_argument('--on-exceeded', metavar='CMD', help='shell command to run when over budget (it gets '
                                                            'SPENDGAUGE_SPENT_USD, _MAX_USD, _SCOPE, _PERIOD)')
    check.add_argument('--on-exceeded-timeout', type=float, default=60, help=argparse.SUPPRESS)
    client_options(check)
    check.set_defaults(run_alone=cmd_check)

    export = sub.add_parser('export-spend', help=f"write today's spend (USD) to a file, e.g. {SPEND_FILE}")
    client_options(export)
    export.add_argument('--file', default=SPEND_FILE)
    export.add_argument('--period', choices=PERIODS, default='day')
    export.set_defaults(run=cmd_export_spend)


def cmd_check(args: argparse.Namespace) -> int:
    """Exit 0 within budget, 1 over it (at the limit counts as over), 2 on error; one line on stdout."""
    try:
        kind, value = _scope(args.scope)
        spent, limit, source, asked = _spend_and_limit(args, kind, value)
        budget = args.max if args.max is not None else _budget_from_env()
        limit = budget if budget is not None else limit
        if limit is None:
            missing = 'no budget to check against' if source in LOCAL_SOURCES else f'no {args.period} limit for ' \
                f'{args.scope}'
            raise CliError(f'{missing}: pass --max or set SWARM_BUDGET_MAX', 2)
    except CliError as exc:
        raise CliError(str(exc), 2) from None
    except (KeyError, TypeError, ValueError) as exc:
        raise CliError(f'unexpected answer from the server ({type(exc).__name__}: {exc})', 2) from None
    except Exception as exc:
        if isinstance(exc, OSError) or database_error(exc):
            raise CliError(f'cannot use the database: {first_line(exc)}', 2) from None
        raise
    if asked:
        note(asked)
    over = spent >= limit
    percent = f'{100 * spent / limit:.1f}%' if limit else ('100%' if spent else '0%')
    scope = args.scope if kind == 'global' else f'{kind} {value}'
    print(f'{"OVER BUDGET" if over else "within budget"}: ${spent:.2f} of ${limit:.2f} ({percent}) '
          f'this {args.period}, {scope} [{source}]')
    if over and args.on_exceeded:
        sys.stdout.flush()
        env = {**os.environ, 'SPENDGAUGE_SPENT_USD': str(spent), 'SPENDGAUGE_MAX_USD': str(limit),
               'SPENDGAUGE_SCOPE': args.scope, 'SPENDGAUGE_PERIOD': args.period}
        try:
            subprocess.run(args.on_exceeded, shell=True, env=env, timeout=args.on_exceeded_timeout, check=False)
        except subprocess.TimeoutExpired:
            print(f'spendgauge: --on-exceeded command timed out after {args.on_exceeded_timeout} s',
                  file=sys.stderr)
    return 1 if over else 0


def _spend_and_limit(args: argparse.Namespace, kind: str, value: str | None
                     ) -> tuple[Decimal, Decimal | None, str, str | None]:
    """(spent, the server's limit, where the spend came from, which server was asked when none was named): --db,
    --url, the configured server, or, when no configured server answers, the swarm convention (it has no limit)."""
    if args.db:
        from app.cli.direct import DirectBackend

        return *_ask(DirectBackend(args.db), kind, value, args.period), 'database', None
    url = server_url(args.url)
    try:
        spent, limit = _ask(HttpBackend(url, api_token(args.token)), kind, value, args.period)
    except Unreachable:
        if args.url:
            raise
        if kind != 'global':
            raise CliError(f'no server answers at {url}, and the swarm convention has no {kind} spend: start the '
                           'server, or pass --url or --db', 2) from None
        spent, source = _local_spend(url)
        return spent, None, source, f'no server at {url}; using {source}'
    return spent, limit, 'server', None if args.url else f'asked {url}'


def _ask(backend: Backend, kind: str, value: str | None, period: str) -> tuple[Decimal, Decimal | None]:
    try:
        return _server_spend(backend, kind, value, period)
    finally:
        backend.close()


def _budget_from_env() -> Decimal | None:
    text = os.environ.get('SWARM_BUDGET_MAX', '').strip()
    return _amount(text, 'SWARM_BUDGET_MAX') if text else None


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


def _amount(text: str, where: str) -> Decimal:
    try:
        value = parse_usd(text, name=where, minimum=Decimal('-Infinity'), maximum=Decimal('Infinity'))
    except ValueError:
        raise CliError(f'{where} is not a dollar amount: {text.strip()[:40]!r}', 2) from None
    if value < 0:
        raise CliError(f'{where} must be a non-negative dollar amount', 2)
    return value


def _scope(text: str) -> tuple[str, str | None]:
    if text == 'global':
        return 'global', None
    kind, _, value = text.partition(':')
    if kind not in SCOPES or not value:
        raise CliError(f'--scope must be global or one of {", ".join(k + ":NAME" for k in SCOPES)}', 2)
    return kind, value


def _local_spend(url: str) -> tuple[Decimal, str]:
    """The swarm-budget.sh convention: SWARM_CURRENT_SPEND, else the .swarm/costs/current_spend file."""
    env = os.environ.get('SWARM_CURRENT_SPEND', '').strip()
    if env:
        return _amount(env, 'SWARM_CURRENT_SPEND'), 'SWARM_CURRENT_SPEND'
    try:
        with open(SPEND_FILE) as f:
            text = f.read()
    except FileNotFoundError:
        raise CliError(f'no server answers at {url}, and no spend to check: start the server, pass --url, set '
                       f'SWARM_CURRENT_SPEND or write {SPEND_FILE} (`spendgauge export-spend`)', 2) from None
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


def first_line(exc: BaseException) -> str:
    text = str(getattr(exc, 'orig', None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
