"""The REST API under /api/v1, mounted on NiceGUI's FastAPI app."""
from __future__ import annotations

from fastapi import APIRouter, FastAPI, HTTPException

from app.api import errors, limits
from app.api.routes import (
    agents,
    alerts,
    budget,
    check,
    eco,
    health,
    policies,
    prices,
    reports,
    sessions,
    sync,
    tasks,
    thresholds,
    tokens,
    usage,
)

api_router = APIRouter(prefix='/api/v1')
for module in (health, usage, budget, sessions, agents, prices, tasks, eco, sync, alerts, policies, thresholds, check,
               reports, tokens):
    api_router.include_router(module.router)


@api_router.api_route('/{path:path}', methods=['GET', 'POST', 'PUT', 'PATCH', 'DELETE'], include_in_schema=False)
def not_found(path: str) -> None:
    raise HTTPException(404, f'no such endpoint: /api/v1/{path}')


def install(app: FastAPI) -> None:
    errors.install(app)
    limits.install(app)
    app.include_router(api_router)
