"""The trail is complete: every public command method of every class in services.commands.Commands (found by
introspection, so a command added later without a case here fails) run with valid input, on SQLite and PostgreSQL,
leaves exactly one audit row with its actor, action, target and the state before and after; and no secret of the
input or the settings is in it. A refused or rolled back change leaves none."""
from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, create_engine, func, select

from services.accounts import tokens, users
from services.alerting import alerts
from services.budget import allocations, limits, policies
from services.budget.checker import Checker
from services.commands import CommandContext, Commands
from services.core.access import SYSTEM, Actor, Role
from services.core.errors import NotFound
from services.core.settings import NotifySettings, Settings
from services.core.tables import AUDIT_LOG
from services.live.hub import EventHub
from services.sources.openrouter import OpenRouterPuller
from services.sources.sync import SyncService
from services.spend import tasks
from services.usage import price_overrides
from services.usage.ledger import Ledger
from services.usage.pricing import Pricer
from tests.support.fake_api import FakeAPI
from tests.support.fixtures import FIXTURES
from tests.support.price_data import serve

OPS = Actor('token ops', Role.ADMIN)
READS = {'digest.build'}  # public methods that change nothing: they leave no row
PASSWORD = 'correct horse battery'
SOURCE_KEY = 'sk-or-audit-secret-key'
WEBHOOK = 'hook-secret-in-url'
NOW = datetime.now(UTC).replace(microsecond=0)
SPLIT = {'name': 'split', 'limit_usd': '10', 'shares': [{'scope': 'project', 'scope_value': 'web', 'percent': '70'}]}
Prepared = dict[str, Any]


def discovered() -> list[str]:
    """`group.method` for every public method of every command class Commands holds."""
    commands = Commands(CommandContext(create_engine('sqlite://'), EventHub()))
    return sorted(f'{group}.{name}' for group, holder in vars(commands).items() if group != 'ctx'
                  for name, _ in inspect.getmembers(type(holder), inspect.isfunction) if not name.startswith('_'))


@dataclass(frozen=True)
class Case:
    run: Callable[[Commands, Prepared], Any]
    target: Callable[[Prepared, Any], str]
    check: Callable[[Any, Any, Prepared, Any], bool]  # (before, after, prepared, the command's answer)
    prepare: Callable[[Commands, Engine], Prepared] = lambda c, e: {}
    actor: str = OPS.name
    action: str | None = None  # the case's own name unless given


def agent(c: Commands, e: Engine, paused: bool = False) -> Prepared:
    ledger = c.ctx.ledger
    assert ledger is not None
    ledger.record({'model': 'gpt-4o', 'provider': 'openai', 'input_tokens': 1000, 'agent_id': 'coder',
                   'session_id': 's-1', 'ts': (NOW - timedelta(hours=1)).isoformat()})
    with e.begin() as conn:
        policies.set_agent_paused(conn, 'coder', paused)
    return {}


def old_event(c: Commands, e: Engine) -> Prepared:
    assert c.ctx.ledger is not None
    c.ctx.ledger.record({'model': 'gpt-4o', 'provider': 'openai', 'input_tokens': 10,
                         'ts': (NOW - timedelta(days=10)).isoformat()})
    return {}


def with_(write: Callable[[Any], Any], key: str = 'id') -> Callable[[Commands, Engine], Prepared]:
    """Prepared by the services directly (no command, so no row of its own)."""
    def prepare(c: Commands, e: Engine) -> Prepared:
        with e.begin() as conn:
            made = write(conn)
        return {key: made[key] if isinstance(made, dict) else getattr(made, key, made)}
    return prepare


async def pull(c: Commands) -> Any:
    """Sync now, then close the puller's client on the same event loop."""
    assert c.ctx.sync is not None
    try:
        return await c.sync.now(OPS, 'openrouter_direct')
    finally:
        await c.ctx.sync.aclose()


def token(conn: Any) -> Any:
    return tokens.create(conn, 'grafana', Role.READ, 'test')


def user(conn: Any) -> Any:
    return users.create(conn, 'bob', PASSWORD, Role.READ)


def alert(conn: Any) -> Any:
    return alerts.raise_alert(conn, 'anomaly', 'warning', 'spend jumped', 'audit:1', {})[0]


def override(conn: Any) -> Any:
    return price_overrides.put(conn, 'acme', 'm1', {'input': Decimal(1), 'output': Decimal(2)})


CASES: dict[str, Case] = {
    'accounts.create_token': Case(
        lambda c, p: c.accounts.create_token(OPS, Role.READ, 'grafana'), lambda p, r: 'token:grafana',
        lambda b, a, p, r: b is None and a['name'] == 'grafana' and a['role'] == 'read' and a['token'] == '***'
        and r['token'] not in json.dumps(a)),
    'accounts.revoke_token': Case(
        lambda c, p: c.accounts.revoke_token(OPS, p['id']), lambda p, r: f'token:{p["id"]}',
        lambda b, a, p, r: b['revoked'] is False and a['revoked'] is True, with_(token)),
    'accounts.create_user': Case(
        lambda c, p: c.accounts.create_user(OPS, 'alice', PASSWORD, Role.READ), lambda p, r: 'user:alice',
        lambda b, a, p, r: b is None and a['name'] == 'alice' and a['role'] == 'read'),
    'accounts.delete_user': Case(
        lambda c, p: c.accounts.delete_user(OPS, 'bob'), lambda p, r: 'user:bob',
        lambda b, a, p, r: b['name'] == 'bob' and a is None, with_(user, 'name')),
    'accounts.set_password': Case(
        lambda c, p: c.accounts.set_password(OPS, 'bob', 'another long password'), lambda p, r: 'user:bob',
        lambda b, a, p, r: b['name'] == a['name'] == 'bob' and a['password_changed_at'] > b['password_changed_at'],
        with_(user, 'name')),
    'accounts.ensure_admin': Case(
        lambda c, p: c.accounts.ensure_admin('root', PASSWORD), lambda p, r: 'user:root',
        lambda b, a, p, r: b is None and a['role'] == 'admin', actor=SYSTEM.name),
    'agents.pause': Case(
        lambda c, p: c.agents.pause(OPS, 'coder'), lambda p, r: 'agent:coder',
        lambda b, a, p, r: b == {'paused': False} and a == {'paused': True, 'reason': 'manual'}, agent),
    'agents.resume': Case(
        lambda c, p: c.agents.resume(OPS, 'coder', 'over'), lambda p, r: 'agent:coder',
        lambda b, a, p, r: b == {'paused': True} and a == {'paused': False, 'reason': 'over'},
        lambda c, e: agent(c, e, paused=True)),
    'alerts.acknowledge': Case(
        lambda c, p: c.alerts.acknowledge(OPS, p['id'], 'alice'), lambda p, r: f'alert:{p["id"]}',
        lambda b, a, p, r: b['acknowledged_by'] is None and a['acknowledged_by'] == 'alice', with_(alert)),
    'alerts.resolve': Case(
        lambda c, p: c.alerts.resolve(OPS, p['id']), lambda p, r: f'alert:{p["id"]}',
        lambda b, a, p, r: b['open'] is True and a['open'] is False, with_(alert)),
    'alerts.raise_': Case(
        lambda c, p: c.alerts.raise_(OPS, 'anomaly', 'warning', 'spend jumped', 'audit:2', {'agent_id': 'x'}),
        lambda p, r: 'alert:audit:2', lambda b, a, p, r: b is None and a['id'] == r['id'] and a['open'] is True,
        action='alerts.raise'),
    'allocations.create': Case(
        lambda c, p: c.allocations.create(OPS, SPLIT), lambda p, r: 'allocation:split',
        lambda b, a, p, r: b is None and a['id'] == r.id and a['name'] == 'split'),
    'allocations.update': Case(
        lambda c, p: c.allocations.update(OPS, p['id'], {**SPLIT, 'limit_usd': '20'}),
        lambda p, r: f'allocation:{p["id"]}',
        lambda b, a, p, r: b['limit_micros'] == 10_000_000 and a['limit_micros'] == 20_000_000,
        with_(lambda conn: allocations.create_allocation(conn, allocations.validate(SPLIT)))),
    'allocations.delete': Case(
        lambda c, p: c.allocations.delete(OPS, p['id']), lambda p, r: f'allocation:{p["id"]}',
        lambda b, a, p, r: b['name'] == 'split' and a == {'policies_removed': r},
        with_(lambda conn: allocations.create_allocation(conn, allocations.validate(SPLIT)))),
    'digest.send_now': Case(
        lambda c, p: c.digest.send_now(OPS, NOW.date() - timedelta(days=1), NOW),
        lambda p, r: f'digest:{NOW.date() - timedelta(days=1)}',
        lambda b, a, p, r: b is None and a['deliveries'] == [{'id': d['id'], 'channel': d['channel']} for d in r]
        and len(r) == 2),
    'digest.send_scheduled': Case(
        lambda c, p: c.digest.send_scheduled(OPS, NOW), lambda p, r: f'digest:{NOW.date() - timedelta(days=1)}',
        lambda b, a, p, r: b is None and len(a['deliveries']) == len(r) == 2),
    'eco.switch': Case(
        lambda c, p: c.eco.switch(OPS, True, 'cheap week'), lambda p, r: 'eco_mode',
        lambda b, a, p, r: b['eco_mode'] is False and a['eco_mode'] is True and a['reason'] == 'cheap week'),
    'limits.set': Case(
        lambda c, p: c.limits.set(OPS, 'day', 7_000_000, 'block'), lambda p, r: 'limit:day',
        lambda b, a, p, r: b is None and a['limit_micros'] == 7_000_000 and a['action'] == 'block'),
    'limits.remove': Case(
        lambda c, p: c.limits.remove(OPS, 'week'), lambda p, r: 'limit:week',
        lambda b, a, p, r: b['limit_micros'] == 3_000_000 and a is None,
        with_(lambda conn: limits.set_limit(conn, 'week', 3_000_000), 'x')),
    'policies.create': Case(
        lambda c, p: c.policies.create(OPS, {'name': 'cap', 'limit_usd': '1.5'}), lambda p, r: 'policy:cap',
        lambda b, a, p, r: b is None and a['id'] == r.id and a['limit_micros'] == 1_500_000),
    'policies.update': Case(
        lambda c, p: c.policies.update(OPS, p['id'], {'limit_usd': '2'}), lambda p, r: f'policy:{p["id"]}',
        lambda b, a, p, r: b['limit_micros'] == 1_500_000 and a['limit_micros'] == 2_000_000,
        with_(lambda conn: policies.create_policy(conn, policies.validate({'name': 'cap', 'limit_usd': '1.5'})))),
    'policies.delete': Case(
        lambda c, p: c.policies.delete(OPS, p['id']), lambda p, r: f'policy:{p["id"]}',
        lambda b, a, p, r: b['name'] == 'cap' and a is None,
        with_(lambda conn: policies.create_policy(conn, policies.validate({'name': 'cap', 'limit_usd': '1.5'})))),
    'policies.set_thresholds': Case(
        lambda c, p: c.policies.set_thresholds(OPS, Decimal(2), None, True), lambda p, r: 'thresholds',
        lambda b, a, p, r: b == {'session_micros': None, 'day_micros': None, 'pause': False}
        and a == {'session_micros': 2_000_000, 'day_micros': None, 'pause': True}),
    'prices.put': Case(
        lambda c, p: c.prices.put(OPS, 'Acme', 'm1', {'input': Decimal(1), 'output': Decimal(2)}),
        lambda p, r: 'price:acme/m1',
        lambda b, a, p, r: b is None and a['input_micros_per_mtok'] == 1_000_000 and a['output_usd_per_mtok'] ==
        '2.000000'),
    'prices.remove': Case(
        lambda c, p: c.prices.remove(OPS, 'acme', 'm1'), lambda p, r: 'price:acme/m1',
        lambda b, a, p, r: b['input_micros_per_mtok'] == 1_000_000 and a is None, with_(override, 'model')),
    'prices.update': Case(
        lambda c, p: c.prices.update(OPS, p['url']), lambda p, r: 'price_data',
        lambda b, a, p, r: b['source'] == 'bundled' and a['data']['source'] == 'fetched'
        and a['data']['fetched_by'] == OPS.name and a['data']['sha256'] == r['data']['sha256'],
        lambda c, e: {'url': c.ctx.settings.price_data_url if c.ctx.settings else ''}),
    'prices.recalculate': Case(
        lambda c, p: c.prices.recalculate(OPS, (NOW - timedelta(days=2)).date().isoformat()),
        lambda p, r: f'price_audit:{r["audit_id"]}',
        lambda b, a, p, r: b == {'cost_micros': r['before_micros']} and a['audit_id'] == r['audit_id']
        and a['events_examined'] == r['events_examined'] == 1, agent),
    'sessions.end': Case(
        lambda c, p: c.sessions.end(OPS, 's-1'), lambda p, r: 'session:s-1',
        lambda b, a, p, r: b == {'ended_at': None} and a == {'ended_at': r['ended_at']} and a['ended_at'], agent),
    'sessions.end_many': Case(
        lambda c, p: c.sessions.end_many(OPS, {'s-1': NOW, 'never': NOW}), lambda p, r: 'sessions:2',
        lambda b, a, p, r: b is None and a == {'ended': ['s-1']} and r == 1, agent),
    'sync.now': Case(
        lambda c, p: asyncio.run(pull(c)), lambda p, r: 'source:openrouter_direct',
        lambda b, a, p, r: b is None and a == {'runs': [{'id': r[0]['id'], 'source': 'openrouter_direct',
                                                         'status': 'ok'}]}),
    'tasks.create': Case(
        lambda c, p: c.tasks.create(OPS, 'Nightly', 'nightly', estimated_cost_micros=2_000_000),
        lambda p, r: 'task:nightly',
        lambda b, a, p, r: b is None and a['id'] == 'nightly' and a['estimated_cost_micros'] == 2_000_000),
    'tasks.update': Case(
        lambda c, p: c.tasks.update(OPS, 'nightly', {'status': 'done'}), lambda p, r: 'task:nightly',
        lambda b, a, p, r: b['status'] == 'pending' and a['status'] == 'done',
        with_(lambda conn: tasks.create_task(conn, 'Nightly', 'nightly'))),
    'usage.prune': Case(
        lambda c, p: c.usage.prune(OPS, 3, now=NOW), lambda p, r: f'events before {r["cutoff"]}',
        lambda b, a, p, r: b == {'events': 1} and a == {'events': 0, 'cutoff': r['cutoff']} and r['events'] == 1,
        old_event),
}


@pytest.fixture(scope='module')
def fake() -> Iterator[FakeAPI]:
    with FakeAPI() as api:
        api.route('/api/v1/key', json.loads((FIXTURES / 'providers' / 'openrouter_key.json').read_text()))
        api.route('/hook', {'ok': True}, method='POST')
        yield api


@pytest.fixture
def commands(engine: Engine, fake: FakeAPI) -> Iterator[Commands]:
    hub, pricer = EventHub(), Pricer()
    settings = Settings.load(tz='UTC', price_data_url=serve(fake),
                             notify=NotifySettings.load(webhook_url=f'{fake.url}/hook?key={WEBHOOK}'))
    sync = SyncService(engine, {'openrouter_direct': OpenRouterPuller(SOURCE_KEY, fake.url, retries=0)}, hub)
    context = CommandContext(engine, hub, pricer=pricer, ledger=Ledger(engine, pricer, hub), sync=sync,
                             settings=settings)
    checker = Checker(engine, hub, ZoneInfo('UTC'), Commands(context))
    context.counters = checker
    checker.start()
    yield checker.commands
    checker.stop()


def audit_rows(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(AUDIT_LOG).order_by(AUDIT_LOG.c.id)).all())


def test_every_command_has_a_case() -> None:
    """The introspection finds the commands (not vacuous), and each has a case or is a known read."""
    found = set(discovered())
    assert len(found) > 30 and {'policies.create', 'prices.recalculate', 'sync.now'} <= found
    assert found == set(CASES) | READS, f'without a case: {found - set(CASES) - READS}; stale: {set(CASES) - found}'


@pytest.mark.parametrize('name', discovered())
def test_each_command_leaves_exactly_one_row(commands: Commands, engine: Engine, name: str) -> None:
    if name in READS:
        commands.digest.build()
        assert audit_rows(engine) == []
        return
    case = CASES.get(name)
    assert case is not None, f'{name}: a command without an audit case: add one to CASES'
    prepared = case.prepare(commands, engine)
    assert audit_rows(engine) == []
    answer = case.run(commands, prepared)
    rows = audit_rows(engine)
    assert len(rows) == 1, f'{name}: {rows}'
    row = rows[0]
    assert (row.actor, row.action, row.target) == (case.actor, case.action or name, case.target(prepared, answer))
    assert case.check(row.before, row.after, prepared, answer), f'{name}: before {row.before}, after {row.after}'
    assert abs(row.at.replace(tzinfo=UTC) - datetime.now(UTC)) < timedelta(minutes=5)
    stored = json.dumps([row.target, row.before, row.after])
    for secret in (PASSWORD, 'another long password', SOURCE_KEY, WEBHOOK):
        assert secret not in stored


@pytest.mark.parametrize('refused', [
    lambda c: c.policies.delete(OPS, 42),
    lambda c: c.agents.pause(OPS, 'nobody'),  # the before-state is read, then the change fails: rolled back
    lambda c: c.accounts.delete_user(OPS, 'nobody'),
    lambda c: c.prices.remove(OPS, 'acme', 'none'),
], ids=['policy', 'agent', 'user', 'price'])
def test_a_refused_change_leaves_no_row(commands: Commands, engine: Engine, refused: Any) -> None:
    with pytest.raises(NotFound):
        refused(commands)
    assert audit_rows(engine) == []


def test_a_change_rolled_back_after_its_row_was_added_leaves_no_row(commands: Commands, engine: Engine) -> None:
    """The row is written in the change's transaction: a failure after it in that transaction takes both back."""
    with pytest.raises(RuntimeError), commands.ctx.audited(OPS, 'policies.create', 'policy:x') as (conn, entry):
        entry.after = policies.create_policy(conn, policies.validate({'name': 'x', 'limit_usd': '1'}))
        raise RuntimeError('the disk is gone')
    assert audit_rows(engine) == []
    with engine.connect() as conn:
        assert policies.list_policies(conn) == []


def test_no_op_changes_leave_no_row(commands: Commands, engine: Engine) -> None:
    commands.eco.switch(OPS, False)
    commands.limits.remove(OPS, 'month')
    commands.policies.set_thresholds(OPS, None, None, False)
    assert commands.digest.send_scheduled(OPS, NOW)  # the first send of the day writes its row ...
    assert commands.digest.send_scheduled(OPS, NOW) == []  # ... a second one is skipped and writes none
    assert [r.action for r in audit_rows(engine)] == ['digest.send_scheduled']
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(AUDIT_LOG)).scalar_one() == 1


def test_the_actor_is_the_callers(commands: Commands, engine: Engine) -> None:
    commands.eco.switch(SYSTEM, True, 'over budget')
    commands.eco.switch(Actor('alice', Role.ADMIN), False)
    assert [(r.actor, r.after['eco_mode']) for r in audit_rows(engine)] == [('spendgauge', True), ('alice', False)]


def test_a_date_is_kept_as_utc(commands: Commands, engine: Engine) -> None:
    commands.tasks.create(OPS, 'Due', 'due', deadline=datetime(2026, 5, 1, 12, tzinfo=ZoneInfo('Europe/Berlin')))
    assert audit_rows(engine)[0].after['deadline'].startswith('2026-05-01T10:00')
