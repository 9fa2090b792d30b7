"""Allocations: validation (every refusal names the field and the share), the allocation and its policies kept in
step by the commands on both databases, a share enforced through the checker and alerting like any policy, and the
policies refusing edits that do not go through the allocation."""
from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

import pytest
from nicegui.testing import User
from sqlalchemy import Engine

from app import runtime
from services.alerting import alerts
from services.budget import allocations, policies
from services.budget.checker import Checker, CheckRequest
from services.commands import CommandContext, Commands
from services.core.access import SYSTEM, Actor, Role
from services.core.errors import Forbidden
from services.live.topics import LiveEvent, PoliciesChanged
from services.usage.ledger import Ledger
from tests.support.ledger import spend
from tests.support.pages import PATIENT

ZONE = ZoneInfo('UTC')


def body(**fields: Any) -> dict[str, Any]:
    return {'name': 'Eng split', 'period': 'month', 'limit_usd': '1000',
            'shares': [{'scope': 'project', 'scope_value': 'a', 'percent': '60'},
                       {'scope': 'project', 'scope_value': 'b', 'percent': 40}], **fields}


# --- validation ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(('changes', 'message'), [
    ({'shares': [{'scope': 'project', 'scope_value': 'a', 'percent': '60'},
                 {'scope': 'tag', 'scope_value': 'x', 'percent': '30'},
                 {'scope': 'agent', 'scope_value': 'c', 'amount_usd': '100.01'}]},
     r'shares\.2 \(agent=c\): takes the shares to 100\.00 % of the limit'),  # 100.001 % shown as 100.00, refused
    ({'shares': [{'scope': 'project', 'scope_value': 'a', 'percent': '60'},
                 {'scope': 'project', 'scope_value': 'a', 'amount_usd': '1'}]},
     r'shares\.1 \(project=a\): given twice \(also shares\.0\)'),
    ({'shares': [{'scope': 'user', 'scope_value': 'u', 'amount_usd': '1000.01'}]},
     r'shares\.0 \(user=u\): amount_usd \$1000\.010000 is more than the limit'),
    ({'shares': [{'scope': 'user', 'scope_value': 'u'}]}, r'shares\.0: give either percent or amount_usd'),
    ({'shares': [{'scope': 'user', 'scope_value': 'u', 'percent': 1, 'amount_usd': 1}]}, 'give either'),
    ({'shares': [{'scope': 'user', 'scope_value': 'u', 'percent': '10.555'}]}, r'shares\.0\.percent'),
    ({'shares': [{'scope': 'user', 'scope_value': 'u', 'percent': '0'}]}, r'shares\.0\.percent'),
    ({'shares': [{'scope': 'session', 'scope_value': 's', 'percent': '5'}]}, r'shares\.0\.scope'),
    ({'shares': [{'scope': 'team', 'scope_value': 's', 'percent': '5'}]}, r'shares\.0\.scope'),
    ({'shares': [{'scope': 'user', 'scope_value': '', 'percent': '5'}]}, r'shares\.0\.scope_value'),
    ({'shares': []}, 'shares'),
    ({'shares': [{'scope': 'tag', 'scope_value': f't{i}', 'amount_usd': '1'} for i in range(201)]}, 'shares'),
    ({'limit_usd': '0'}, 'limit_usd: must be more than'),
    ({'limit_usd': 'lots'}, 'limit_usd'),
    ({'name': 'x' * 101}, 'name'),
    ({'period': 'session'}, 'period'),
    ({'soft_percent': 99}, 'soft_percent'),
    ({'limit_usd': '0.00001', 'shares': [{'scope': 'tag', 'scope_value': 't', 'percent': '1'}]},
     r'shares\.0 \(tag=t\): 1 % of \$0\.000010 is less than \$0\.000001'),
    ({'colour': 'red'}, 'colour'),
])
def test_validation_names_the_field_and_the_share(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(allocations.AllocationInvalid, match=message):
        allocations.validate(body(**changes))


def test_percent_and_amount_shares_may_fill_the_limit_exactly() -> None:
    checked = allocations.validate(body(limit_usd='3', shares=[
        {'scope': 'project', 'scope_value': 'a', 'percent': '33.33'},
        {'scope': 'project', 'scope_value': 'b', 'percent': '33.33'},
        {'scope': 'tag', 'scope_value': 'c', 'amount_usd': '1.0002'}]))  # 2 x 0.9999 + 1.0002 = 3
    assert [allocations.share_limit(checked.limit_micros, s.bp, s.amount_micros) for s in checked.shares] == \
        [999_900, 999_900, 1_000_200]
    # rounding down: 33.33 % of $0.000010 is 3.333 micro-USD, held to 3
    assert allocations.share_limit(10, 3333, None) == 3


# --- the commands keep the policies in step ---------------------------------------------------------------------

@pytest.fixture
def running(engine: Engine, ledger: Ledger) -> tuple[Commands, Checker, list[LiveEvent]]:
    checker = Checker(engine, ledger.hub, ZONE)
    checker.start()
    events: list[LiveEvent] = []
    ledger.hub.subscribe(events.append)
    return Commands(CommandContext(engine, ledger.hub, counters=checker, ledger=ledger)), checker, events


def owned(engine: Engine, allocation_id: int) -> dict[tuple[str, str | None], policies.PolicyRule]:
    with engine.connect() as conn:
        return {(p.scope, p.scope_value): p for p in policies.list_policies(conn) if p.allocation_id == allocation_id}


def test_create_update_delete_keep_the_policies_in_step(engine: Engine,
                                                        running: tuple[Commands, Checker, list[LiveEvent]]) -> None:
    commands, checker, events = running
    created = commands.allocations.create(SYSTEM, body(action='block', notify=['log']))
    found = owned(engine, created.id)
    assert {k: (p.limit_micros, p.period, p.action, p.origin, p.name) for k, p in found.items()} == {
        ('project', 'a'): (600_000_000, 'month', 'block', 'allocation', 'Eng split · project=a'),
        ('project', 'b'): (400_000_000, 'month', 'block', 'allocation', 'Eng split · project=b'),
        ('global', None): (1_000_000_000, 'month', 'block', 'allocation', 'Eng split · total')}
    assert created.total_policy_id == found['global', None].id
    assert [(s.label, s.policy_id) for s in created.shares] == [('project=a', found['project', 'a'].id),
                                                               ('project=b', found['project', 'b'].id)]
    assert events == [PoliciesChanged('allocation')]
    kept = found['project', 'a'].id

    # a: 50 %, b dropped, tag nightly $100 added, the total no longer enforced; a keeps its policy
    updated = commands.allocations.update(SYSTEM, created.id, body(
        limit_usd='500', enforce_total=False, shares=[{'scope': 'project', 'scope_value': 'a', 'percent': '50'},
                                                     {'scope': 'tag', 'scope_value': 'nightly', 'amount_usd': 100}]))
    found = owned(engine, created.id)
    assert {k: p.limit_micros for k, p in found.items()} == {('project', 'a'): 250_000_000,
                                                            ('tag', 'nightly'): 100_000_000}
    assert found['project', 'a'].id == kept and updated.total_policy_id is None
    assert updated.as_dict()['allocated_micros'] == 350_000_000
    assert {p['name'] for p in checker.check(CheckRequest(project='a', tags=('nightly',)))['policies']} == \
        {'Eng split · project=a', 'Eng split · tag=nightly'}, 'the checker follows at once'

    assert commands.allocations.delete(SYSTEM, created.id) == 2
    assert owned(engine, created.id) == {}
    with pytest.raises(allocations.AllocationNotFound):
        commands.allocations.delete(SYSTEM, created.id)
    assert checker.check(CheckRequest(project='a'))['policies'] == []


def test_names_are_unique_and_bad_input_changes_nothing(engine: Engine,
                                                        running: tuple[Commands, Checker, list[LiveEvent]]) -> None:
    commands, _, _ = running
    first = commands.allocations.create(SYSTEM, body())
    with pytest.raises(allocations.AllocationTaken, match="already called 'Eng split'"):
        commands.allocations.create(SYSTEM, body())
    with pytest.raises(allocations.AllocationInvalid, match=r'shares\.1'):
        commands.allocations.update(SYSTEM, first.id, body(shares=[
            {'scope': 'project', 'scope_value': 'a', 'percent': '60'},
            {'scope': 'project', 'scope_value': 'b', 'percent': '41'}]))
    assert {k: p.limit_micros for k, p in owned(engine, first.id).items()} == {
        ('project', 'a'): 600_000_000, ('project', 'b'): 400_000_000, ('global', None): 1_000_000_000}


def test_share_policies_are_changed_only_through_the_allocation(
        engine: Engine, running: tuple[Commands, Checker, list[LiveEvent]]) -> None:
    commands, _, _ = running
    created = commands.allocations.create(SYSTEM, body())
    share = created.shares[0].policy_id
    with pytest.raises(policies.PolicyReadOnly, match=f'belongs to allocation {created.id}.*allocations/{created.id}'):
        commands.policies.update(SYSTEM, share, {'limit_usd': '1'})
    with pytest.raises(policies.PolicyReadOnly):
        commands.policies.delete(SYSTEM, share)
    reader = Actor('reed', Role.READ)
    with pytest.raises(Forbidden, match='changing an allocation needs the admin role'):
        commands.allocations.update(reader, created.id, body(limit_usd='1'))
    with pytest.raises(Forbidden):
        commands.allocations.delete(reader, created.id)
    with pytest.raises(Forbidden):
        commands.allocations.create(reader, body(name='other'))
    assert owned(engine, created.id)[('project', 'a')].limit_micros == 600_000_000


def test_a_share_is_enforced_and_alerts_like_any_policy(engine: Engine, ledger: Ledger,
                                                        running: tuple[Commands, Checker, list[LiveEvent]]) -> None:
    commands, checker, _ = running
    created = commands.allocations.create(SYSTEM, body(limit_usd='1', action='block', shares=[
        {'scope': 'project', 'scope_value': 'a', 'percent': '60'},
        {'scope': 'project', 'scope_value': 'b', 'amount_usd': '0.4'}]))
    share_a = created.shares[0].policy_id
    spend(ledger, '0.5', project='a')  # 83 % of a's $0.60: warn
    assert checker.check(CheckRequest(project='a'))['decision'] == 'warn'
    assert checker.check(CheckRequest(project='b'))['decision'] == 'allow'
    spend(ledger, '0.08', project='a')  # 97 %: throttle
    assert checker.check(CheckRequest(project='a'))['decision'] == 'throttle'
    spend(ledger, '0.02', project='a')  # a at its limit: block; b untouched
    decided = checker.check(CheckRequest(project='a'))
    assert decided['decision'] == 'block'
    assert any(p['id'] == share_a and p['spent_micros'] == 600_000 for p in decided['policies'])
    assert checker.check(CheckRequest(project='b'))['decision'] == 'allow'
    spend(ledger, '0.39', project='c')  # outside the shares: the whole limit ($1) at 99 % throttles b
    assert checker.check(CheckRequest(project='b'))['decision'] == 'throttle'
    with engine.connect() as conn:
        raised = {(a['type'], a['data']['policy_id']) for a in alerts.list_alerts(conn)}
    assert {('threshold_warning', share_a), ('threshold_critical', share_a), ('limit_exceeded', share_a),
            ('threshold_critical', created.total_policy_id)} <= raised


# --- the page -----------------------------------------------------------------------------------------------------

async def test_allocations_page_adds_edits_and_deletes(user: User) -> None:
    await user.open('/allocations')
    await user.should_see(marker='no-allocations')
    user.find(marker='allocation-name').type('Eng split')
    user.find(marker='allocation-limit').type('1000')
    user.find(marker='share-value-0').type('a')
    user.find(marker='share-amount-0').type('60%')
    user.find(marker='share-add').click()
    await user.should_see(marker='share-value-1')
    user.find(marker='share-value-1').type('b')
    user.find(marker='share-amount-1').type('50%')
    user.find(marker='save-allocation').click()
    await user.should_see('shares.1 (project=b): takes the shares to 110.00 % of the limit')
    user.find(marker='share-amount-1').clear().type('$400')
    user.find(marker='save-allocation').click()
    await user.should_see('project = b · fixed · $0.00 of $400.00')
    [saved] = runtime.current().read(allocations.list_allocations)
    assert [(s.label, s.limit_micros) for s in saved.shares] == [('project=a', 600_000_000),
                                                                 ('project=b', 400_000_000)]
    user.find(marker=f'edit-allocation-{saved.id}').click()
    await user.should_see(marker='share-remove-1')
    user.find(marker='share-remove-1').click()
    await user.should_not_see(marker='share-remove-1')
    user.find(marker='save-allocation').click()
    await user.should_not_see('project = b')
    [edited] = runtime.current().read(allocations.list_allocations)
    assert [s.label for s in edited.shares] == ['project=a'] and edited.id == saved.id
    await user.open('/policies')  # its policies point at the allocation instead of an editor
    await user.should_see('Eng split · project=a')
    assert user.find(marker=f'edit-{edited.shares[0].policy_id}').elements.pop().props['icon'] == 'call_split'
    await user.open('/allocations')
    user.find(marker=f'delete-allocation-{saved.id}').click()
    await user.should_see(marker='no-allocations')
    assert runtime.current().read(allocations.list_allocations) == []


async def test_allocations_page_follows_new_spend(user: User) -> None:
    rt = runtime.current()
    rt.commands.allocations.create(SYSTEM, body(name='Live split', limit_usd='10',
                                                 shares=[{'scope': 'project', 'scope_value': 'a', 'percent': 50}]))
    await user.open('/allocations')
    await user.should_see('project = a · 50.00 % · $0.00 of $5.00')
    spend(rt.ledger, '1.25', project='a')
    await user.should_see('project = a · 50.00 % · $1.25 of $5.00', retries=PATIENT)
