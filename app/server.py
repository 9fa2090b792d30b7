"""Wires the process together: REST API, pages, start-up and shut-down, then `ui.run`."""
from __future__ import annotations

import logging
from functools import partial
from pathlib import Path

from fastapi.middleware.gzip import GZipMiddleware
from nicegui import app, ui
from nicegui.native import find_open_port
from starlette.types import ASGIApp

from app import __version__, runtime
from app.api import install as install_api
from app.feed import start_feed, stop_feed
from app.native import prepare_native
from app.security.exposure import check_exposure
from app.security.guard import RequestGuard
from app.security.session import identity
from components.layout import use_feed, use_identity
from services.alerting.anomaly import run_anomaly_check
from services.alerting.notify import Notifier
from services.core.scrub import ScrubLogs, secrets_of
from services.core.settings import Settings, get_settings
from services.insights.forecast import run_exhaustion_check
from services.sources.jobs import SyncJobs

ASSETS_DIR = Path(__file__).resolve().parent.parent / 'assets'
log = logging.getLogger(__name__)


def build(settings: Settings | None = None, native: bool = False) -> None:
    """Apply the exposure rule, then register routes, pages and lifecycle hooks on NiceGUI's app (before `ui.run`).
    Every way of starting comes through here."""
    if not native:  # a window listens on 127.0.0.1 whatever the host setting
        check_exposure(settings or get_settings())
    from app.pages import access, alerts, dashboard, login, policies, sessions  # noqa: F401  (@ui.page)
    from app.pages import reports as _reports  # noqa: F401

    app.add_middleware(RequestGuard)  # before ui.run: NiceGUI's session middleware, added later, runs first
    install_api(app)
    if ASSETS_DIR.is_dir():
        app.add_static_files('/assets', str(ASSETS_DIR))
    app.on_startup(_startup)
    app.on_shutdown(_shutdown)


_jobs: SyncJobs | None = None
_notifier: Notifier | None = None
ANOMALY_MINUTES = 5
FORECAST_MINUTES = 5


def _startup() -> None:
    rt = runtime.start(get_settings())
    runtime.tune_gc()
    use_feed(start_feed(rt.load_dashboard, rt.hub))
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
    _jobs.start()
    if rt.settings.demo != 'off':
        from services import demo

        demo.start(rt.ledger, only_if_empty=rt.settings.demo == 'auto', commands=rt.commands)


async def _shutdown() -> None:
    if get_settings().demo != 'off':
        from services import demo

        await demo.stop()
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


def run_options(settings: Settings, native: bool = False, window: bool = True) -> dict:
    options = {'host': settings.host, 'port': settings.port, 'title': 'SpendGauge', 'reload': False,
               'show': False, 'storage_secret': settings.storage_secret, 'uvicorn_logging_level': 'warning',
               # zlib's default level: Starlette's level 9 spent 30 ms compressing a 10,000-event batch result
               'gzip_middleware_factory': _gzip,
               'fastapi_docs': {'title': 'SpendGauge API', 'version': __version__,
                                'description': 'Record LLM usage and read spend back. Money is integer micro-USD '
                                               '(`*_micros`) with an exact decimal string beside it (`*_usd`).'}}
    favicon = ASSETS_DIR / 'favicon.svg'
    if favicon.is_file():
        options['favicon'] = str(favicon)
    if native:
        # The window (or, when none can open, a browser) talks to 127.0.0.1; port 0 picks a free one in 8000-8999 as
        # NiceGUI's native mode does (the "NiceGUI ready to go on ..." line names it).
        options.update(host='127.0.0.1', port=settings.port or find_open_port())
        if window:
            options.update(native=True, window_size=(1280, 800))
    return options


def _gzip(asgi_app: ASGIApp) -> GZipMiddleware:
    return GZipMiddleware(asgi_app, minimum_size=1000, compresslevel=6)


def serve(settings: Settings, native: bool = False) -> None:
    logging.basicConfig(level=settings.log_level, format='%(asctime)s %(levelname)s %(name)s: %(message)s')
    for handler in logging.getLogger().handlers:  # no configured secret, token or key reaches the log
        handler.addFilter(ScrubLogs(secrets_of(settings)))
    build(settings, native)
    window = native and prepare_native(settings)  # without a window: serve on 127.0.0.1 and say why
    ui.run(**run_options(settings, native, window))
