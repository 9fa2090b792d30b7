"""`spendgauge digest`: the daily digest of a day, previewed as text, HTML or JSON, or sent now (`--send-now`)."""
from __future__ import annotations

import argparse
import sys
from typing import Any

from app.cli.args import client_options
from app.cli.backends import Backend, CliError


def register(sub: Any) -> None:
    digest = sub.add_parser('digest', help='the daily digest of a day (default yesterday): preview, or --send-now',
                            description="Yesterday's (or --day's) spend against the day limit, top agents and models, "
                                        "alerts and anomalies, today's forecast and the biggest saving found, as "
                                        'GET /api/v1/digest answers. --send-now sends it to the log, the alert '
                                        'webhook (Slack blocks for hooks.slack.com) and e-mail, even if that day '
                                        'was sent already.')
    client_options(digest)
    digest.add_argument('--day', metavar='YYYY-MM-DD', help='the local day (default yesterday)')
    digest.add_argument('--format', dest='fmt', choices=('text', 'html', 'json'), default='text',
                        help='how to print the preview (default text)')
    digest.add_argument('--send-now', action='store_true', help='send it now and report each delivery')
    digest.set_defaults(run=cmd_digest)


def cmd_digest(args: argparse.Namespace, backend: Backend) -> int:
    if not args.send_now:
        text = backend.digest(args.day, args.fmt)
        sys.stdout.write(text if text.endswith('\n') else text + '\n')
        return 0
    deliveries = backend.send_digest(args.day)
    for row in deliveries:
        print(delivery_line(row))
    left = [row for row in deliveries if row['status'] != 'delivered']
    if left:
        raise CliError(f'{len(left)} of {len(deliveries)} deliveries not delivered yet; pending ones are retried with '
                       'backoff by the server (see GET /api/v1/alerts/deliveries)')
    return 0


def delivery_line(row: dict[str, Any]) -> str:
    """`webhook http://127.0.0.1:8080/…: delivered (1 attempt)`, `email ops@x: pending, failed: SMTP 451`."""
    target = '' if row['target'] == row['channel'] else f' {row["target"]}'
    attempts = f'{row["attempts"]} attempt{"" if row["attempts"] == 1 else "s"}'
    if row['status'] == 'delivered':
        return f'{row["channel"]}{target}: delivered ({attempts})'
    error = f', failed: {row["last_error"]}' if row['last_error'] else ''
    return f'{row["channel"]}{target}: {row["status"]} ({attempts}{error})'
