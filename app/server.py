"""Wires the process together: REST API, pages, start-up and shut-down, then `ui.run`."""
from __future__ import annotations

import asyncio
import errno
import logging
import multiprocessing
import socket
from functools import partial
from pathlib import Path

from fastapi.middleware.gzip import GZipMiddleware
from nicegui import app, ui
from starlette.types import ASGIApp

from app import __version__, runtime
from app.api import install as install_api
from app.api.routes.ws import start_stream, stop_stream
from app.feed import start_feed, stop_feed
from app.mcp_server.http import install as install_mcp
from app.native import prepare_native
from app.pages.downloads import install as install_downloads
from app.security.exposure import check_exposure
from app.security.guard import RequestGuard
from app.security.session import identity
from components.layout import use_feed, use_identity
from services.alerting.anomaly import run_anomaly_check
from services.alerting.notify import Notifier
from services.core.access import SYSTEM
from services.core.db import describe
from services.core.scrub import ScrubLogs, secrets_of
from services.core.settings import Settings, get_settings, local_url
from services.insights.forecast import run_exhaustion_check
from services.sources.jobs import SyncJobs

ASSETS_DIR = Path(__file__).resolve().parent.parent / 'assets'
log = logging.getLogger(__name__)


def build(settings: Settings | None = None, native: bool = False) -> None:
    """Apply the exposure rule, then register routes, pages and lifecycle hooks on NiceGUI's app (before `ui.run`).
    Every way of starting comes through here."""
    if not native:  # a window listens on 127.0.0.1 whatever the host setting
        check_exposure(settings or get_settings())
    from app.pages import access, alerts, dashboard, login, policies, sessions, usage  # noqa: F401  (@ui.page)
    from app.pages import allocations as _allocations  # noqa: F401
    from app.pages import optimize as _optimize  # noqa: F401
    from app.pages import reports as _reports  # noqa: F401

    app.add_middleware(RequestGuard)  # before ui.run: NiceGUI's session middleware, added later, runs first
    install_api(app)
    install_downloads(app)
    app.on_shutdown(install_mcp(app).stop)  # POST /mcp: the MCP tools for agents
    if ASSETS_DIR.is_dir():
        app.add_static_files('/assets', str(ASSETS_DIR))
    app.on_startup(_startup)
    app.on_shutdown(_shutdown)


_jobs: SyncJobs | None = None
_notifier: Notifier | None = None
ANOMALY_MINUTES = 5
FORECAST_MINUTES = 5
RETENTION_MINUTES = 24 * 60  # SPENDGAUGE_RETENTION_DAYS: prune once a day (and soon after start)


def _startup() -> None:
    rt = runtime.start(get_settings())
    if _serving is not None:  # started by serve(), not by a test fixture
        _serving.append(asyncio.get_running_loop().create_task(_say_serving(rt.settings)))
    runtime.tune_gc()
    use_feed(start_feed(rt.metrics.timed_load(rt.load_dashboard), rt.hub))  # reloads timed for /metrics
    start_stream(rt)  # the live API's fan-out (GET /api/v1/ws)
    use_identity(identity)
    global _jobs, _notifier
    if _notifier is None:  # NiceGUI's test users may start the app twice; one notifier per process
        _notifier = Notifier(rt.engine, rt.settings.notify, rt.hub, rt.settings.budget,
                             secrets=secrets_of(rt.settings))
        _notifier.start()
    sources = rt.settings.sources
    _jobs = SyncJobs(rt.sync, sources.litellm_interval_min, sources.providers_interval_min,
                     rt.leadership.is_leader if rt.leadership is not None else lambda: True)
    _jobs.add_periodic('anomaly', partial(run_anomaly_check, rt.engine, rt.hub), ANOMALY_MINUTES)
    _jobs.add_periodic('forecast', partial(run_exhaustion_check, rt.engine, rt.hub, rt.settings.budget),
                       FORECAST_MINUTES)
    if (at := rt.settings.digest_time) is not None:
        _jobs.add_daily('digest', partial(rt.commands.digest.send_scheduled, SYSTEM), *at, rt.settings.zone)
    if rt.settings.retention_days is not None:
        _jobs.add_periodic('retention', partial(rt.commands.usage.prune, SYSTEM, rt.settings.retention_days),
                           RETENTION_MINUTES)
    _jobs.start()
    if rt.settings.demo != 'off':
        from services import demo

        demo.start(rt.ledger, only_if_empty=rt.settings.demo == 'auto', commands=rt.commands)


async def _shutdown() -> None:
    if get_settings().demo != 'off':
        from services import demo

        await demo.stop()
    await stop_stream()
    await stop_feed()
    use_feed(None)
    if _jobs is not None:
        _jobs.stop()
    global _notifier
    if _notifier is not None:
        await _notifier.stop()
        _notifier = None
    await runtime.current().sync.aclose()
    runtime.stop()


async def _say_serving(settings: Settings) -> None:
    """One line once the server listens (after the migrations): the address to open, and the database."""
    from nicegui.server import Server

    server = getattr(Server, 'instance', None)
    if server is None:  # NiceGUI's test user runs the app without a uvicorn server
        return
    while not server.started:
        await asyncio.sleep(0.05)
    print(f'SpendGauge serving on {local_url(server.config.host, server.config.port)} '  # noqa: T201 (for people)
          f'(database {describe(settings.database_url)})', flush=True)


def run_options(settings: Settings, native: bool = False, window: bool = True) -> dict:
    options = {'host': settings.host, 'port': settings.port, 'title': 'SpendGauge', 'reload': False,
               'show': False, 'storage_secret': settings.storage_secret, 'uvicorn_logging_level': 'warning',
               'show_welcome_message': False,  # our own line says where, once it listens (_say_serving)
               # zlib's default level: Starlette's level 9 spent 30 ms compressing a 10,000-event batch result
               'gzip_middleware_factory': _gzip,
               # no per-message deflate on websockets: it compresses each message once per connection on the event
               # loop, and the live API's fan-out (GET /api/v1/ws) to 100 clients slowed ingest 11x with it, 2x without
               # (bench/ws_fanout.py); pages' socket messages are small
               'ws_per_message_deflate': False,
               'fastapi_docs': {'title': 'SpendGauge API', 'version': __version__,
                                'description': 'Record LLM usage and read spend back. Money is integer micro-USD '
                                               '(`*_micros`) with an exact decimal string beside it (`*_usd`).'}}
    favicon = ASSETS_DIR / 'favicon.svg'
    if favicon.is_file():
        options['favicon'] = str(favicon)
    if native:
        # The window (or, when none can open, a browser) talks to 127.0.0.1; port 0: run() claims a free one (the
        # "SpendGauge serving on ..." line names it).
        options.update(host='127.0.0.1')
        if window:
            options.update(native=True, window_size=(1280, 800))
    return options


def _gzip(asgi_app: ASGIApp) -> GZipMiddleware:
    return GZipMiddleware(asgi_app, minimum_size=1000, compresslevel=6)


class CannotListen(RuntimeError):
    """The port is taken, or the address is not this machine's; the message says which."""


def claim_port(host: str, port: int) -> int:
    """Check that host:port is free before anything starts (uvicorn binds only after the start-up hooks: the
    migrations and the scheduler); port 0: a free one, returned."""
    family = socket.AF_INET6 if ':' in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise CannotListen(f'port {port} on {host} is in use; set SPENDGAUGE_PORT or pass --port') \
                    from None
            raise CannotListen(f'cannot listen on {host} port {port}: {exc.strerror}') from None
        return int(probe.getsockname()[1])


_serving: list[asyncio.Task[None]] | None = None  # run() sets it: holds the task that prints the serving line


def serve(settings: Settings, native: bool = False) -> None:
    runtime.check_substitutes(settings)  # before listening: a bad setting stops the start with its message
    logging.basicConfig(level=settings.log_level, format='%(asctime)s %(levelname)s %(name)s: %(message)s')
    for handler in logging.getLogger().handlers:  # no configured secret, token or key reaches the log
        handler.addFilter(ScrubLogs(secrets_of(settings)))
    build(settings, native)
    window = native and prepare_native(settings)  # without a window: serve on 127.0.0.1 and say why
    run(settings, native, window)


def run(settings: Settings, native: bool = False, window: bool = True) -> None:
    """`ui.run` on a port checked first (CannotListen); once it listens, one line says where."""
    global _serving
    options = run_options(settings, native, window)
    if multiprocessing.current_process().name == 'MainProcess':  # not a native window's process re-importing us
        options['port'] = claim_port(options['host'], options['port'])
        _serving = []
    ui.run(**options)
