"""The commands themselves: only an admin may change state (the check sits in the command, not in a widget or a
route), a refused command writes and announces nothing, and no-op changes announce nothing either."""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from app.api import errors
from services.budget.checker import Checker
from services.commands import CommandContext, Commands
from services.core.access import SYSTEM, Actor, Role
from services.core.errors import Conflict, DomainError, Forbidden, Invalid, NotFound, Unavailable
from services.core.tables import ALERTS, POLICIES, SETTINGS, TASKS
from services.live.hub import EventHub
from services.live.topics import LiveEvent, Topic
from services.usage.ledger import Ledger
from services.usage.pricing import Pricer

VIEWER = Actor('viewer', Role.READ)
AGENT = Actor('agent token', Role.INGEST)


@pytest.fixture
def commands(engine: Engine) -> Commands:
    hub, pricer = EventHub(), Pricer()
    context = CommandContext(engine, hub, pricer=pricer, ledger=Ledger(engine, pricer, hub))
    checker = Checker(engine, hub, ZoneInfo('UTC'), Commands(context))
    context.counters = checker
    checker.start()
    return checker.commands


def heard(commands: Commands) -> list[LiveEvent]:
    events: list[LiveEvent] = []
    commands.ctx.hub.subscribe(events.append)
    return events


def rows(engine: Engine) -> tuple[int, ...]:
    with engine.connect() as conn:
        return tuple(conn.execute(select(func.count()).select_from(table)).scalar_one()
                     for table in (SETTINGS, POLICIES, ALERTS, TASKS))


WRITES: dict[str, Callable[[Commands, Actor], Any]] = {
    'limit': lambda c, a: c.limits.set(a, 'day', 1_000_000),
    'thresholds': lambda c, a: c.policies.set_thresholds(a, Decimal(2), None, False),
    'policy': lambda c, a: c.policies.create(a, {'name': 'cap', 'limit_usd': '1'}),
    'policy update': lambda c, a: c.policies.update(a, 1, {'limit_usd': '2'}),
    'policy delete': lambda c, a: c.policies.delete(a, 1),
    'eco': lambda c, a: c.eco.switch(a, True),
    'pause': lambda c, a: c.agents.pause(a, 'coder'),
    'resume': lambda c, a: c.agents.resume(a, 'coder'),
    'acknowledge': lambda c, a: c.alerts.acknowledge(a, 1),
    'resolve': lambda c, a: c.alerts.resolve(a, 1),
    'raise': lambda c, a: c.alerts.raise_(a, 'anomaly', 'warning', 'x', 'k', {}),
    'end session': lambda c, a: c.sessions.end(a, 's-1'),
    'price': lambda c, a: c.prices.put(a, 'acme', 'm', {'input': Decimal(1), 'output': Decimal(1)}),
    'price removal': lambda c, a: c.prices.remove(a, 'acme', 'm'),
    'price update': lambda c, a: c.prices.update(a, 'http://127.0.0.1:9/data.json'),
    'price recalculation': lambda c, a: c.prices.recalculate(a, '2026-01-01'),
    'task': lambda c, a: c.tasks.create(a, 'Nightly'),
    'task update': lambda c, a: c.tasks.update(a, 'task-1', {'status': 'done'}),
    'sync': lambda c, a: asyncio.run(c.sync.now(a)),
}


@pytest.mark.parametrize('actor', [VIEWER, AGENT], ids=['read', 'ingest'])
@pytest.mark.parametrize('name', list(WRITES))
def test_only_an_admin_changes_state(commands: Commands, engine: Engine, name: str, actor: Actor) -> None:
    events = heard(commands)
    before = rows(engine)
    with pytest.raises(Forbidden, match='needs the admin role'):
        WRITES[name](commands, actor)
    assert rows(engine) == before and events == []


def test_an_admin_may(commands: Commands) -> None:
    events = heard(commands)
    assert commands.eco.switch(Actor('ops', Role.ADMIN), True)['eco_mode'] is True
    assert [e.topic for e in events] == [Topic.ECO]


def test_the_same_value_again_announces_nothing(commands: Commands) -> None:
    commands.limits.set(SYSTEM, 'day', 2_000_000)
    commands.eco.switch(SYSTEM, True)
    commands.policies.set_thresholds(SYSTEM, Decimal(2), None, False)
    task = commands.tasks.create(SYSTEM, 'Nightly', 'nightly')
    events = heard(commands)
    assert isinstance(commands.ctx.counters, Checker)
    recounts = commands.ctx.counters.recounts
    commands.limits.set(SYSTEM, 'day', 2_000_000)
    commands.eco.switch(SYSTEM, True)
    commands.policies.set_thresholds(SYSTEM, Decimal(2), None, False)
    commands.tasks.update(SYSTEM, task['id'], {'status': 'pending'})
    assert events == []
    assert commands.ctx.counters.recounts == recounts


@pytest.mark.parametrize(('write', 'error'), [
    (lambda c: c.agents.pause(SYSTEM, 'nobody'), NotFound),
    (lambda c: c.alerts.resolve(SYSTEM, 42), NotFound),
    (lambda c: c.sessions.end(SYSTEM, 'nowhere'), NotFound),
    (lambda c: c.policies.delete(SYSTEM, 42), NotFound),
    (lambda c: c.prices.remove(SYSTEM, 'acme', 'none'), NotFound),
    (lambda c: c.limits.set(SYSTEM, 'day', -1), Invalid),
    (lambda c: c.policies.create(SYSTEM, {'name': 'cap', 'limit_usd': 'lots'}), Invalid),
    (lambda c: c.eco.switch(SYSTEM, True, '\x00'), Invalid),
    (lambda c: asyncio.run(c.sync.now(SYSTEM, 'carrier-pigeon')), Unavailable),  # no pullers in this context
], ids=['agent', 'alert', 'session', 'policy', 'price', 'limit', 'policy body', 'eco reason', 'sync'])
def test_refusals_write_and_announce_nothing(commands: Commands, engine: Engine, write: Any,
                                             error: type[DomainError]) -> None:
    events = heard(commands)
    before = rows(engine)
    with pytest.raises(error):
        write(commands)
    assert rows(engine) == before and events == []


def test_a_taken_task_id_is_a_conflict(commands: Commands) -> None:
    commands.tasks.create(SYSTEM, 'Nightly', 'nightly')
    with pytest.raises(Conflict, match='already exists'):
        commands.tasks.create(SYSTEM, 'Again', 'nightly')


def test_domain_errors_map_to_http_in_one_place() -> None:
    app = FastAPI()
    errors.install(app)
    refusals: dict[str, DomainError] = {'invalid': Invalid('limit_usd: must be a number'), 'missing': NotFound('no x'),
                                        'taken': Conflict('taken'), 'forbidden': Forbidden('needs admin'),
                                        'down': Unavailable('not running')}

    @app.get('/{name}')
    def refuse(name: str) -> None:
        raise refusals[name]

    with TestClient(app) as client:
        answers = {name: client.get(f'/{name}') for name in refusals}
    assert {name: r.status_code for name, r in answers.items()} == \
        {'invalid': 422, 'missing': 404, 'taken': 409, 'forbidden': 403, 'down': 503}
    assert answers['invalid'].json() == {'detail': 'limit_usd: must be a number'}
