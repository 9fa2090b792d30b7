"""Running the server (`serve`, also a desktop window) and the demo rows."""
from __future__ import annotations

import argparse
from typing import Any

from app.cli.backends import CliError
from app.cli.output import note
from services.core.settings import load_settings, use_settings


def register(sub: Any) -> None:
    serve = sub.add_parser('serve', help='run the dashboard, REST API and schedulers')
    serve.add_argument('--host', help='address to listen on (default 127.0.0.1)')
    serve.add_argument('--port', type=int, help='port (default 8080, or SPENDGAUGE_PORT; 0: any free one)')
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
                                      '--db, or SPENDGAUGE_DATABASE_URL / the default database (never created '
                                      'here). Stop a server running the demo before clearing.')
    demo.add_argument('--clear', action='store_true',
                      help="remove every demo event with its share of the totals and the demo tasks, and resolve "
                           "the demo's alerts")
    demo.add_argument('--db', help='database URL (default: the configured one)')
    demo.set_defaults(run_alone=cmd_demo)


def cmd_serve(args: argparse.Namespace) -> int:
    from app.security.exposure import UnsafeExposure
    from app.server import CannotListen, serve

    settings = load_settings().with_overrides(host=args.host, port=args.port, database_url=args.db, demo=args.demo)
    use_settings(settings)
    try:
        serve(settings, native=args.native)
    except UnsafeExposure as exc:
        raise CliError(str(exc), 2) from None
    except CannotListen as exc:
        raise CliError(str(exc)) from None
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Always on the database itself (--db, or the configured one), which it never creates. Clearing while a
    server's simulator still posts there is refused: the rows would come back at once."""
    from app.cli.direct import DirectBackend
    from services import demo
    from services.core.db import describe

    backend = DirectBackend(args.db, creates=False)
    try:
        rt, where = backend.rt, describe(backend.rt.settings.database_url)
        seen = demo.simulator_seen(rt.engine)
        if args.clear and seen is not None:
            ago = max(0, int(seen.total_seconds()))
            raise CliError(f'the demo simulator of a running server is posting to {where} (last {ago} s ago): '
                           'stop that server, then clear (`spendgauge serve` without --demo, or with '
                           'SPENDGAUGE_DEMO=off, serves without it)')
        if args.clear:
            cleared = demo.clear(rt.ledger)
            print(f'removed {cleared.events:,} demo events from {where}; resolved {cleared.alerts:,} demo alerts')
            if cleared.events and not demo.has_events(rt.engine):
                note('the database holds no usage now: `make run` (serve --demo auto) would start the demo again; '
                     '`spendgauge serve` does not')
        else:
            running = '; a running server is adding more' if seen is not None else ''
            print(f'{demo.count(rt.engine):,} demo events in {where}{running}; `spendgauge demo --clear` removes '
                  'them, `spendgauge serve --demo` runs the simulator')
    finally:
        backend.close()
    return 0
