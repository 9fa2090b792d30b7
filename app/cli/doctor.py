"""`spendgauge doctor`: is this installation healthy, and what to do where it is not; `spendgauge migrate`: bring
the database's schema to the newest revision (what `serve` does on start), the doctor's fix for an old schema.
Both run here, on the configured settings, without a server; the database layer is loaded only when they run."""
from __future__ import annotations

import argparse
import json
import time
from typing import Any

LABELS = {'ok': 'OK', 'warn': 'WARN', 'fail': 'FAIL', 'skip': 'SKIP'}


def register(sub: Any) -> None:
    doctor = sub.add_parser(
        'doctor', help='check the database, disk, sources, webhooks, SMTP, clock and price data; say how to fix',
        description='Checks, all at once and each within --timeout: the database (reachable, schema at the newest '
                    'revision, SQLite in WAL mode), free disk space where it lives, each configured spend source '
                    "(one authenticated request), the clock against a source's Date header, the webhooks (a "
                    'connection, nothing sent), SMTP (EHLO, STARTTLS, login; nothing sent) and the age of the '
                    'price data. Reads the settings the server reads (.env, environment); changes nothing. '
                    'Exit code 0 when no check failed (warnings included, unless --strict), 1 when one did, 2 for '
                    'bad usage.')
    doctor.add_argument('--db', help='check this database instead of the configured one')
    doctor.add_argument('--timeout', type=_seconds, default=5.0, metavar='S',
                        help='seconds each check may take (default 5, at most 60)')
    doctor.add_argument('--strict', action='store_true', help='exit 1 on a warning too')
    doctor.add_argument('--json', action='store_true')
    doctor.set_defaults(run_alone=cmd_doctor)

    migrate = sub.add_parser('migrate', help="bring the database's schema to the newest revision",
                             description='What `spendgauge serve` does on start, without starting: creates a '
                                         'missing SQLite file, applies the Alembic migrations not applied yet and '
                                         'switches SQLite to WAL mode.')
    migrate.add_argument('--db', help='this database instead of the configured one')
    migrate.set_defaults(run_alone=cmd_migrate)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0
    if not 0 < value <= 60:
        raise argparse.ArgumentTypeError(f'seconds, more than 0 and at most 60 (got {text!r})')
    return value


def cmd_doctor(args: argparse.Namespace) -> int:
    import asyncio

    from services.core.settings import SettingsError, load_settings
    from services.ops.doctor import diagnose, report
    from services.ops.findings import fail

    started = time.monotonic()
    try:
        settings = load_settings().with_overrides(database_url=args.db)
    except SettingsError as exc:  # nothing else can be checked without them
        findings = [fail('settings', str(exc), 'correct it in .env (or SPENDGAUGE_ENV_FILE) or the environment')]
    else:
        findings = asyncio.run(diagnose(settings, args.timeout))
    result = report(findings, args.strict)
    if args.json:
        print(json.dumps(result, indent=2))
        return result['exit_code']
    width = max(len(f.check) for f in findings)
    for f in findings:
        print(f'{LABELS[f.status]:<4}  {f.check:<{width}}  {f.detail}')
        if f.fix:
            print(f'{"":<4}  {"":<{width}}  fix: {f.fix}')
    counts = {status: sum(f.status == status for f in findings) for status in LABELS}
    print(f'{counts["ok"]} ok, {counts["warn"]} warning{"s" * (counts["warn"] != 1)}, {counts["fail"]} '
          f'failed, {counts["skip"]} not configured ({time.monotonic() - started:.1f} s)')
    return result['exit_code']


def cmd_migrate(args: argparse.Namespace) -> int:
    from services.core.db import create_db_engine, current_revision, describe, head_revision, upgrade
    from services.core.settings import load_settings

    url = load_settings().with_overrides(database_url=args.db).database_url
    engine = create_db_engine(url)
    try:
        with engine.connect() as conn:
            before = current_revision(conn)
        upgrade(engine)
    finally:
        engine.dispose()
    head = head_revision()
    if before == head:
        print(f'{describe(url)}: schema already at the newest revision ({head})')
    else:
        print(f'{describe(url)}: schema migrated from {before or "nothing"} to {head}')
    return 0
