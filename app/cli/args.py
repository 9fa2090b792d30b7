"""Argument types and options shared by the commands."""
from __future__ import annotations

import argparse
import os
from decimal import Decimal

from services.core.money import parse_usd

DEFAULT_URL = 'http://127.0.0.1:8080'
PERIODS = ('day', 'week', 'month')


def usd(text: str) -> Decimal:
    """A dollar amount argument (`12.50`, `$12.50`, `1,250`), exact."""
    try:
        return parse_usd(text, name='the amount')
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def usd_or_none(text: str) -> Decimal | None:
    """A dollar amount, or `none`."""
    return None if text.strip().lower() == 'none' else usd(text)


def tokens(text: str) -> int:
    try:
        value = int(text.replace(',', '').replace('_', ''))
    except ValueError:
        raise argparse.ArgumentTypeError(f'not a whole number of tokens: {text!r}') from None
    if value < 0:
        raise argparse.ArgumentTypeError(f'token counts cannot be negative: {text!r}')
    return value


def client_options(parser: argparse.ArgumentParser) -> None:
    """Where the command is carried out: a server (`--url`, the default) or the database itself (`--db`)."""
    parser.add_argument('--url', default=os.environ.get('SPENDGAUGE_URL', DEFAULT_URL),
                        help='server to talk to (env SPENDGAUGE_URL)')
    parser.add_argument('--db', help='use this database directly instead of a server')


def token() -> str | None:
    """The bearer token the CLI sends: SPENDGAUGE_API_TOKEN, else the first of SPENDGAUGE_API_TOKENS."""
    value = os.environ.get('SPENDGAUGE_API_TOKEN', '').strip()
    if value:
        return value
    configured = os.environ.get('SPENDGAUGE_API_TOKENS', '').split(',')
    return configured[0].strip() or None
