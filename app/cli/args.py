"""Argument types and options shared by the commands."""
from __future__ import annotations

import argparse
from decimal import Decimal

from services.core.money import parse_usd
from services.core.settings import client_setting, load_settings

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
    server_options(parser)
    parser.add_argument('--db', help='use this database directly instead of a server')


def server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--url', help='server to talk to (default: SPENDGAUGE_URL, else where `spendgauge serve` '
                                      'listens with the same settings: SPENDGAUGE_HOST/PORT, .env)')
    parser.add_argument('--token', help='bearer token to send (default: SPENDGAUGE_API_TOKEN, else the first of '
                                        'SPENDGAUGE_API_TOKENS)')


def server_url(given: str | None) -> str:
    """--url, else SPENDGAUGE_URL, else where `serve` listens: the same settings (environment, .env, defaults)."""
    return given or client_setting('SPENDGAUGE_URL') or load_settings().local_url


def api_token(given: str | None) -> str | None:
    """--token, else SPENDGAUGE_API_TOKEN, else the first of SPENDGAUGE_API_TOKENS (environment, then .env)."""
    return given or client_setting('SPENDGAUGE_API_TOKEN') or next(iter(load_settings().api_tokens), None)
