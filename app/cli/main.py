"""The `spendgauge` command: parse, pick where the command runs (a server or the database), report failures.

Every failure prints one line to stderr and exits non-zero: 1 for a refused or failed request, 2 for bad usage.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from app.cli import (
    accounts,
    audit,
    digest,
    doctor,
    mcp_stdio,
    operate,
    optimize,
    pipeline,
    prices,
    retention,
    server,
    spend,
)
from app.cli.args import api_token, server_url
from app.cli.backends import Backend, CliError, HttpBackend, database_error, refused
from services.core.errors import DomainError
from services.core.settings import SettingsError

GLOBAL_OPTIONS = ('url', 'token', 'db')  # given before the command, or after it where it takes them
# commands whose action may be left out: `prices` and `prices MODEL` show prices, `alerts` lists
DEFAULT_ACTIONS = {'prices': ('show', prices.ACTIONS), 'alerts': ('list', operate.ALERT_ACTIONS)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='spendgauge', description='Self-hosted LLM budget tool.',
                                     epilog='--url, --token and --db may also be given before the command.')
    for name in GLOBAL_OPTIONS:
        parser.add_argument(f'--{name}', dest=f'global_{name}', help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest='command', required=True)
    for module in (server, spend, optimize, digest, pipeline, operate, retention, prices, accounts, mcp_stdio, audit,
                   doctor):
        module.register(sub)
    return parser


def command_names() -> frozenset[str]:
    subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return frozenset(subparsers.choices)


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The arguments; a global option given before the command counts as given after it (which wins)."""
    parser = build_parser()
    args = parser.parse_args(with_default_action(list(sys.argv[1:] if argv is None else argv)))
    for name in GLOBAL_OPTIONS:
        value = vars(args).pop(f'global_{name}')
        if value is None:
            continue
        if not hasattr(args, name):
            parser.error(f'--{name} does not apply to `{args.command}`')
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def with_default_action(argv: list[str]) -> list[str]:
    """The arguments with the default action of DEFAULT_ACTIONS put in where none of the command's actions is
    given (`prices gpt-4o --json` -> `prices show gpt-4o --json`, `alerts --all` -> `alerts list --all`)."""
    at = 0
    while at < len(argv) and argv[at].startswith('-'):  # global options before the command
        at += 2 if argv[at].lstrip('-') in GLOBAL_OPTIONS else 1
    if at >= len(argv) or argv[at] not in DEFAULT_ACTIONS:
        return argv
    default, actions = DEFAULT_ACTIONS[argv[at]]
    if any(token in (*actions, '-h', '--help') for token in argv[at + 1:]):
        return argv
    return [*argv[:at + 1], default, *argv[at + 1:]]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    try:
        if hasattr(args, 'run_alone'):  # serve, demo, check: they choose their own backend, or none
            return int(args.run_alone(args))
        backend: Backend
        if args.db:
            from app.cli.direct import DirectBackend  # the database layer: only for --db, so the rest starts fast

            backend = DirectBackend(args.db)
        else:
            backend = HttpBackend(server_url(args.url), api_token(args.token))
        try:
            return int(args.run(args, backend))
        finally:
            backend.close()
    except CliError as exc:
        return _fail(str(exc), exc.code)
    except DomainError as exc:  # --db: a command refused (the server answers these as 4xx)
        error = refused(exc)
        return _fail(str(error), error.code)
    except (KeyError, TypeError) as exc:  # an answer without the fields we need
        return _fail(f'unexpected answer from the server (missing {exc})', 1)
    except OSError as exc:  # the database of --db cannot be opened or reached
        return _fail(f'cannot use the database: {pipeline.first_line(exc)}', 1)
    except SettingsError as exc:
        return _fail(str(exc), 2)
    except ValueError as exc:  # a database URL or a value the services refuse
        return _fail(str(exc), 2)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if database_error(exc):  # the same for SQLAlchemy's errors, of --db only
            return _fail(f'cannot use the database: {pipeline.first_line(exc)}', 1)
        raise


def _fail(message: str, code: int) -> int:
    print(f'spendgauge: {message}', file=sys.stderr)
    return code


def run() -> None:
    sys.exit(main())
