"""The REST API under /api/v1, mounted on NiceGUI's FastAPI app."""
from __future__ import annotations

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.routing import APIRoute
from starlette.convertors import Convertor, register_url_convertor

from app.api import errors, lane, limits, metrics, openapi
from app.api.deps import API_PREFIX
from app.api.routes import (
    agents,
    alerts,
    allocations,
    audit,
    budget,
    check,
    digest,
    doctor,
    eco,
    health,
    optimize,
    otel,
    policies,
    prices,
    reports,
    retention,
    sessions,
    sync,
    tasks,
    thresholds,
    tokens,
    usage,
    ws,
)

# The hot routes first: FastAPI walks the included routers in this order to find a request's route.
MODULES = (check, usage, health, retention, budget, sessions, agents, prices, tasks, eco, sync, alerts, policies,
           allocations, thresholds, reports, tokens, optimize, digest, ws, audit, doctor)
api_router = APIRouter(prefix=API_PREFIX)
for module in MODULES:
    api_router.include_router(module.router)
# Every operation, its path without the prefix (the modules' routers, as declared)
ROUTES = tuple(route for module in MODULES for route in module.router.routes if isinstance(route, APIRoute))


class AnyPath(Convertor[str]):
    """Starlette's `path` is `.*`, which stops at a newline (`%0A`): such a path would miss the catch-all below
    and get the page's HTML 404."""

    regex = r'[\s\S]*'

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor('anypath', AnyPath())


@api_router.api_route('/{path:anypath}', methods=['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS'],
                      include_in_schema=False)
def not_found(path: str, request: Request) -> None:
    """Unknown paths answer 404 in JSON; a known path asked with a method it does not take answers 405 with the
    methods it does take in `Allow` (this route matches every method, so the router's own 405 never comes)."""
    matching = [route for route in ROUTES if route.path_regex.match(f'/{path}')]
    # the most specific path documents the resource: /sync/status is GET only, though POST /sync/{source} matches it
    fewest = min((route.path_format.count('{') for route in matching), default=0)
    allowed = sorted({method for route in matching if route.path_format.count('{') == fewest
                      for method in route.methods or ()})
    if allowed:
        raise HTTPException(405, f'{request.method} is not allowed on /api/v1/{path}; allowed: {", ".join(allowed)}',
                            headers={'Allow': ', '.join(allowed)})
    raise HTTPException(404, f'no such endpoint: /api/v1/{path}')


def install(app: FastAPI) -> None:
    errors.install(app)
    lane.install(app)
    limits.install(app)
    metrics.install(app)  # GET /metrics, and the HTTP timings
    app.include_router(api_router)
    app.include_router(otel.router)  # POST /v1/traces: where OTLP exporters send spans
    openapi.install(app, API_PREFIX, ROUTES)
