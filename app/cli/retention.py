"""`spendgauge prune`: delete the usage events older than some days; every total stays (it comes from the rollups)."""
from __future__ import annotations

import argparse
import json
import re
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from app.cli.args import client_options
from app.cli.backends import Backend
from services.core.display import plural
from services.core.settings import RETENTION_MAX_DAYS, RETENTION_MIN_DAYS

DAYS = re.compile(r'\s*(\d+)\s*d\s*', re.IGNORECASE)


def days(text: str) -> int:
    """An age as `Nd` (180d), within the bounds the server takes."""
    match = DAYS.fullmatch(text)
    if match is None:
        raise argparse.ArgumentTypeError(f'give an age in days as Nd, e.g. 180d (got {text!r})')
    value = int(match.group(1))
    if value < RETENTION_MIN_DAYS:
        raise argparse.ArgumentTypeError(f'at least {RETENTION_MIN_DAYS}d: events younger than a day are never '
                                         f'pruned (got {text!r})')
    if value > RETENTION_MAX_DAYS:
        raise argparse.ArgumentTypeError(f'at most {RETENTION_MAX_DAYS}d (got {text!r})')
    return value


def register(sub: Any) -> None:
    prune = sub.add_parser('prune', help='delete the usage events older than some days (every total stays)',
                           description='Deletes the raw usage events older than --older-than, rounded down to a '
                                       'local midnight (whole days go). Every total, chart, report and budget '
                                       'counter stays the same: they come from the rollups. What is lost: the '
                                       'per-event listing (GET /api/v1/usage) before that midnight.')
    client_options(prune)
    prune.add_argument('--older-than', required=True, type=days, metavar='Nd', dest='older_than',
                       help='age in days, e.g. 180d')
    prune.add_argument('--dry-run', action='store_true', help='only say how many events would go')
    prune.add_argument('--json', action='store_true')
    prune.set_defaults(run=cmd_prune)


def cmd_prune(args: argparse.Namespace, backend: Backend) -> int:
    result = backend.prune(args.older_than, args.dry_run)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    zone = result['day_zone']
    cutoff = datetime.fromisoformat(result['cutoff']).astimezone(ZoneInfo(zone))
    before = f'before {cutoff:%Y-%m-%d %H:%M} {zone}'
    events = plural(result['events'], 'usage event')
    if result['dry_run']:
        print(f'would prune {events} {before} (dry run: nothing deleted)')
    else:
        print(f'pruned {events} {before}; every total, chart and report is unchanged')
    return 0
