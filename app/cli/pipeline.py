"""For pipelines: `check` exits 0 within budget, 1 over it, 2 on error; `export-spend` writes the spend where
swarm-budget.sh scripts read it."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from decimal import Decimal
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from app.cli.args import PERIODS, client_options, token, usd
from app.cli.backends import BREAKDOWNS, Backend, CliError, DirectBackend, HttpBackend
from services.core.money import micros_to_usd, parse_usd

SPEND_FILE = '.swarm/costs/current_spend'
SCOPES = ('agent', 'provider', 'model', 'channel')


def register(sub: Any) -> None:
    check = sub.add_parser(
        'check', help='exit 0 within budget, 1 over it, 2 on error (for pipelines)',
        description='With --url (or SPENDGAUGE_URL) or --db, reads the spend of the scope from SpendGauge and '
                    "compares it with --max or the server's limit for the period. Otherwise reads SWARM_CURRENT_SPEND "
                    f'or {SPEND_FILE} and compares it with --max or SWARM_BUDGET_MAX.')
    check.add_argument('--max', type=usd, help='budget in USD (default: the limit, or SWARM_BUDGET_MAX)')
    check.add_argument('--scope', default='global', help='global (default) or agent:X, provider:X, model:X, '
                                                         'channel:X')
    check.add_argument('--period', choices=PERIODS, default='day')
    check.add_argument('--on-exceeded', metavar='CMD', help='shell command to run when over budget (it gets '
                                                            'SPENDGAUGE_SPENT_USD, _MAX_USD, _SCOPE, _PERIOD)')
    check.add_argument('--on-exceeded-timeout', type=float, default=60, help=argparse.SUPPRESS)
    check.add_argument('--url', help='server to ask (env SPENDGAUGE_URL); without it, the local convention')
    check.add_argument('--db', help='use this database directly')
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
        url = args.url or os.environ.get('SPENDGAUGE_URL', '').strip()
        if args.db or url:
            backend: Backend = DirectBackend(args.db) if args.db else HttpBackend(url, token())
            try:
                spent, server_limit = _server_spend(backend, kind, value, args.period)
            finally:
                backend.close()
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
        raise CliError(f'cannot use the database: {first_line(exc)}', 2) from None
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


def first_line(exc: BaseException) -> str:
    text = str(getattr(exc, 'orig', None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
