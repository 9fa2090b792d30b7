"""The `spendgauge` command: parse, pick where the command runs (a server or the database), report failures.

Every failure prints one line to stderr and exits non-zero: 1 for a refused or failed request, 2 for bad usage.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sqlalchemy.exc import SQLAlchemyError

from app.cli import accounts, operate, pipeline, server, spend
from app.cli.args import token
from app.cli.backends import Backend, CliError, DirectBackend, HttpBackend, refused
from services.core.errors import DomainError
from services.core.settings import SettingsError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='spendgauge', description='Self-hosted LLM budget tool.')
    sub = parser.add_subparsers(dest='command', required=True)
    for module in (server, spend, pipeline, operate, accounts):
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if hasattr(args, 'run_alone'):  # serve, demo, check: they choose their own backend, or none
            return int(args.run_alone(args))
        backend: Backend = DirectBackend(args.db) if args.db else HttpBackend(args.url, token())
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
    except (OSError, SQLAlchemyError) as exc:  # the database of --db cannot be opened or reached
        return _fail(f'cannot use the database: {pipeline.first_line(exc)}', 1)
    except SettingsError as exc:
        return _fail(str(exc), 2)
    except ValueError as exc:  # a database URL or a value the services refuse
        return _fail(str(exc), 2)
    except KeyboardInterrupt:
        return 130


def _fail(message: str, code: int) -> int:
    print(f'spendgauge: {message}', file=sys.stderr)
    return code


def run() -> None:
    sys.exit(main())
