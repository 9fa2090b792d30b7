"""Running the server (`serve`, also a desktop window) and the demo rows."""
from __future__ import annotations

import argparse
from typing import Any

from app.cli.backends import CliError
from services.core.settings import load_settings, use_settings


def register(sub: Any) -> None:
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
    serve.set_defaults(run_alone=cmd_serve)

    demo = sub.add_parser('demo', help='count or remove the demo rows (on the database directly)',
                          description='Without --clear, count the demo events. Works on the database directly: '
                                      '--db, or SPENDGAUGE_DATABASE_URL / the default database.')
    demo.add_argument('--clear', action='store_true',
                      help='remove every demo event with its share of the totals, and the demo tasks')
    demo.add_argument('--db', help='database URL (default: the configured one)')
    demo.set_defaults(run_alone=cmd_demo)


def cmd_serve(args: argparse.Namespace) -> int:
    from app.security.exposure import UnsafeExposure
    from app.server import serve

    settings = load_settings().with_overrides(host=args.host, port=args.port, database_url=args.db, demo=args.demo)
    use_settings(settings)
    try:
        serve(settings, native=args.native)
    except UnsafeExposure as exc:
        raise CliError(str(exc), 2) from None
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Always on the database itself (--db, or the configured one): the server has no demo endpoint."""
    from app import runtime
    from services import demo

    rt = runtime.start(load_settings().with_overrides(database_url=args.db))
    try:
        if args.clear:
            print(f'removed {demo.clear(rt.ledger):,} demo events')
        else:
            print(f'{demo.count(rt.engine):,} demo events; `spendgauge demo --clear` removes them, '
                  '`spendgauge serve --demo` runs the simulator')
    finally:
        runtime.stop()
    return 0
