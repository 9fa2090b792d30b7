"""Budget policies: validation, the CRUD API (with 4xx for every bad field), preloading from a YAML/JSON file and
the environment, `spendgauge limits list` and the policies page."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from nicegui import ui
from nicegui.testing import User
from sqlalchemy import Engine

from app import cli, runtime
from services.budget import limits, policies
from services.core.access import SYSTEM
from services.core.settings import SettingsError, load_settings
from tests.support.api import assert_client_error, uid

POLICY_YAML = """
policies:
  - name: nightly jobs
    scope: tag
    scope_value: nightly
    period: week
    limit_usd: 12.50
    action: block
    notify: [in_app, webhook]
  - name: march campaign
    period: custom
    period_start: 2026-03-01
    period_end: 2026-03-31
    limit_usd: "100"
"""


# --- validation ---------------------------------------------------------------------------------------------------

def test_defaults() -> None:
    policy = policies.validate({'name': 'day', 'limit_usd': '5'})
    assert policy.row() | {} == {
        'name': 'day', 'scope': 'global', 'scope_value': None, 'period': 'day', 'period_start': None,
        'period_end': None, 'limit_micros': 5_000_000, 'soft_percent': 80, 'critical_percent': 95,
        'action': 'warn', 'notify': [], 'auto_eco': False, 'auto_pause': False, 'enabled': True}


@pytest.mark.parametrize(('data', 'field'), [
    ({}, 'name'),
    ({'name': 'x'}, 'limit_usd'),
    ({'name': 'x', 'limit_usd': '-1'}, 'limit_usd'),
    ({'name': 'x', 'limit_usd': 'NaN'}, 'limit_usd'),
    ({'name': 'x', 'limit_usd': '1', 'scope': 'team'}, 'scope'),
    ({'name': 'x', 'limit_usd': '1', 'scope_value': 'a'}, 'scope_value'),
    ({'name': 'x', 'limit_usd': '1', 'period': 'year'}, 'period'),
    ({'name': 'x', 'limit_usd': '1', 'period': 'custom'}, 'period_start'),
    ({'name': 'x', 'limit_usd': '1', 'period': 'custom', 'period_start': '2026-03-02',
      'period_end': '2026-03-01'}, 'period_end'),
    ({'name': 'x', 'limit_usd': '1', 'period_start': '2026-03-02'}, 'period_start'),
    ({'name': 'x', 'limit_usd': '1', 'soft_percent': 0}, 'soft_percent'),
    ({'name': 'x', 'limit_usd': '1', 'soft_percent': 96}, 'soft_percent'),
    ({'name': 'x', 'limit_usd': '1', 'critical_percent': 101}, 'critical_percent'),
    ({'name': 'x', 'limit_usd': '1', 'action': 'explode'}, 'action'),
    ({'name': 'x', 'limit_usd': '1', 'notify': ['pigeon']}, 'notify'),
    ({'name': 'x', 'limit_usd': '1', 'colour': 'red'}, 'colour'),
])
def test_validation_names_the_field(data: dict[str, Any], field: str) -> None:
    with pytest.raises(policies.PolicyInvalid, match=field):
        policies.validate(data)


# --- storage and preloading -------------------------------------------------------------------------------------

def test_crud_and_sync_origin(engine: Engine) -> None:
    with engine.begin() as conn:
        created = policies.create_policy(conn, policies.validate({'name': 'a', 'limit_usd': '1'}))
        changed = policies.update_policy(conn, created.id, {'limit_usd': '2', 'action': 'block'})
        assert (changed.limit_micros, changed.action, changed.origin) == (2_000_000, 'block', 'api')
        with pytest.raises(policies.PolicyInvalid, match='soft_percent'):
            policies.update_policy(conn, created.id, {'soft_percent': 99})
        file_policies = policies.load_file_text(POLICY_YAML)
        assert policies.sync_origin(conn, 'file', file_policies) == 2
        assert policies.sync_origin(conn, 'file', file_policies[:1]) == 1  # the dropped one goes
        names = [(p.name, p.origin) for p in policies.list_policies(conn)]
        assert names == [('a', 'api'), ('nightly jobs', 'file')]
        policies.delete_policy(conn, created.id)
        with pytest.raises(policies.PolicyNotFound):
            policies.get_policy(conn, created.id)


def test_yaml_and_env_preload_on_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / 'policies.yaml'
    path.write_text(POLICY_YAML)
    monkeypatch.setenv('SPENDGAUGE_POLICIES_FILE', str(path))
    monkeypatch.setenv('DAILY_BUDGET_LIMIT', '5')
    monkeypatch.setenv('MONTHLY_BUDGET_LIMIT', '100.25')
    rt = runtime.start(load_settings())
    with rt.engine.connect() as conn:
        found = {p.name: p for p in policies.list_policies(conn)}
    nightly = found['nightly jobs']
    assert (nightly.scope, nightly.scope_value, nightly.period, nightly.limit_micros, nightly.action,
            nightly.notify, nightly.origin) == ('tag', 'nightly', 'week', 12_500_000, 'block', ('in_app', 'webhook'),
                                                'file')
    assert str(found['march campaign'].period_end) == '2026-03-31'
    env = sorted((p.period, p.limit_micros, p.action) for p in found.values() if p.origin == 'env')
    assert env == [('day', 5_000_000, 'block'), ('month', 100_250_000, 'block')]
    runtime.stop()
    # re-synced on start: the daily limit changes, the monthly one goes, the file now is JSON with one policy
    json_path = tmp_path / 'policies.json'
    json_path.write_text(json.dumps([{'name': 'only', 'limit_usd': 3}]))
    monkeypatch.setenv('SPENDGAUGE_POLICIES_FILE', str(json_path))
    monkeypatch.setenv('DAILY_BUDGET_LIMIT', '6')
    monkeypatch.delenv('MONTHLY_BUDGET_LIMIT')
    rt = runtime.start(load_settings())
    with rt.engine.connect() as conn:
        resynced = {(p.origin, p.name): p.limit_micros for p in policies.list_policies(conn)}
    assert resynced == {('file', 'only'): 3_000_000, ('env', 'Daily budget'): 6_000_000}
    with rt.engine.begin() as conn:
        for policy in policies.list_policies(conn):
            with pytest.raises(policies.PolicyReadOnly, match=r'change it there|set-limit'):
                policies.update_policy(conn, policy.id, {'limit_usd': '1'})
            with pytest.raises(policies.PolicyReadOnly):
                policies.delete_policy(conn, policy.id)
    runtime.stop()


def test_a_limit_set_at_run_time_wins_over_the_environment_for_good(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv('SPENDGAUGE_DAILY_LIMIT_USD', '4')
    monkeypatch.setenv('SPENDGAUGE_LIMIT_ACTION', 'warn')
    monkeypatch.setenv('WEEKLY_BUDGET_LIMIT', '20')

    def stored() -> dict[str, tuple[str, int, str, bool]]:
        with runtime.current().engine.connect() as conn:
            return {p.period: (p.origin, p.limit_micros, p.action, p.enabled) for p in policies.list_policies(conn)}

    rt = runtime.start(load_settings())
    day = rt.read(limits.limit_policy, 'day')
    assert day is not None
    assert stored() == {'day': ('env', 4_000_000, 'warn', True), 'week': ('env', 20_000_000, 'warn', True)}
    rt.commands.limits.set(SYSTEM, 'day', 2_000_000)
    rt.commands.limits.remove(SYSTEM, 'week')
    runtime.stop()
    monkeypatch.setenv('SPENDGAUGE_DAILY_LIMIT_USD', '9')
    rt = runtime.start(load_settings())
    assert stored() == {'day': ('limit', 2_000_000, 'warn', True), 'week': ('limit', 20_000_000, 'warn', False)}
    assert rt.read(limits.limit_policy, 'day') == replace(day, origin='limit', limit_micros=2_000_000), \
        'the same policy (its alerts keep their keys), now set at run time'
    assert (rt.read(limits.get_limit, 'day'), rt.read(limits.get_limit, 'week')) == (2_000_000, None)
    runtime.stop()


@pytest.mark.parametrize(('content', 'message'), [
    ('policies: 3', 'expected a list'),
    ('- name: x\n  limit_usd: -1\n', 'policy 0: limit_usd'),
    ('- just a string\n', 'policy 0 is not a mapping'),
])
def test_bad_policies_file_stops_the_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str,
                                           message: str) -> None:
    path = tmp_path / 'policies.yaml'
    path.write_text(content)
    monkeypatch.setenv('SPENDGAUGE_POLICIES_FILE', str(path))
    with pytest.raises(SettingsError, match=message):
        runtime.start(load_settings())


# --- the API ----------------------------------------------------------------------------------------------------

def test_crud_api(api: httpx.Client) -> None:
    name = uid('policy')
    created = api.post('/policies', json={'name': name, 'scope': 'agent', 'scope_value': uid('agent'),
                                          'limit_usd': '2.5', 'action': 'throttle', 'notify': ['log']})
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body['limit_micros'], body['limit_usd'], body['soft_percent'], body['origin']) == \
        (2_500_000, '2.500000', 80, 'api')
    pid = body['id']
    assert any(p['id'] == pid for p in api.get('/policies').json()['items'])
    assert api.get(f'/policies/{pid}').json()['name'] == name
    patched = api.patch(f'/policies/{pid}', json={'limit_usd': '3', 'critical_percent': 90})
    assert patched.status_code == 200, patched.text
    assert (patched.json()['limit_micros'], patched.json()['critical_percent']) == (3_000_000, 90)
    assert_client_error(api.patch(f'/policies/{pid}', json={'soft_percent': 95}), 422, mentions='soft_percent')
    assert_client_error(api.patch(f'/policies/{pid}', json={'action': 'nuke'}), 422, mentions='action')
    assert_client_error(api.patch(f'/policies/{pid}', json=[1]), 422)
    assert api.delete(f'/policies/{pid}').json() == {'deleted': pid}
    assert_client_error(api.get(f'/policies/{pid}'), 404, mentions=str(pid))
    assert_client_error(api.delete(f'/policies/{pid}'), 404)
    assert_client_error(api.patch(f'/policies/{pid}', json={'limit_usd': '1'}), 404)


@pytest.mark.parametrize(('body', 'field'), [
    ({'limit_usd': '1'}, 'name'),
    ({'name': 'x', 'limit_usd': 'cheap'}, 'limit_usd'),
    ({'name': 'x', 'limit_usd': '1', 'scope': 'planet'}, 'scope'),
    ({'name': 'x', 'limit_usd': '1', 'period': 'custom', 'period_start': '2026-13-01',
      'period_end': '2026-12-01'}, 'period_start'),
    ({'name': 'x', 'limit_usd': '1', 'soft_percent': 99}, 'soft_percent'),
    ({'name': 'x', 'limit_usd': '1', 'scope_value': 'a'}, 'scope_value'),
])
def test_create_api_rejects_bad_fields(api: httpx.Client, body: dict[str, Any], field: str) -> None:
    assert_client_error(api.post('/policies', json=body), 422, mentions=field)


# --- CLI ------------------------------------------------------------------------------------------------------

def test_cli_limits_list_and_set_limit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = f'sqlite:///{tmp_path / "cli.db"}'
    assert cli.main(['limits', 'list', '--db', db]) == 0
    out = capsys.readouterr().out
    assert 'Daily budget' in out and '$5.00' in out and 'block' in out and 'env' in out, 'the default daily limit'
    runtime.stop()
    rt = runtime.start(load_settings().with_overrides(database_url=db))
    with rt.engine.begin() as conn:
        policies.create_policy(conn, policies.validate({'name': 'tags', 'scope': 'tag', 'scope_value': 'nightly',
                                                        'limit_usd': '12.5', 'action': 'block', 'period': 'week'}))
    runtime.stop()
    assert cli.main(['limits', 'list', '--db', db]) == 0
    out = capsys.readouterr().out
    assert 'tags' in out and 'tag=nightly' in out and '$12.50' in out and '80/95%' in out and 'block' in out
    runtime.stop()
    assert cli.main(['set-limit', 'week', '7', '--action', 'throttle', '--db', db]) == 0
    assert 'week limit set to $7.00 (warn at 80%, throttle at 95%)' in capsys.readouterr().out
    runtime.stop()
    assert cli.main(['limits', 'list', '--db', db]) == 0
    assert 'Weekly budget' in capsys.readouterr().out
    runtime.stop()
    assert cli.main(['set-limit', 'week', 'none', '--db', db]) == 0
    assert 'week limit removed' in capsys.readouterr().out


def test_cli_limits_list_via_server(api: httpx.Client, server: Any, tmp_path: Path) -> None:
    from tests.support.cli import cli as run_cli

    name = uid('cli')
    assert api.post('/policies', json={'name': name, 'limit_usd': '1', 'scope': 'project',
                                       'scope_value': name}).status_code == 201
    result = run_cli('limits', 'list', '--url', server.url, '--json', cwd=tmp_path)
    assert result.returncode == 0, result
    assert any(p['name'] == name for p in json.loads(result.stdout))


# --- the page -----------------------------------------------------------------------------------------------------

def added_policies() -> list[policies.PolicyRule]:
    """The policies added on the page (not the default daily limit)."""
    with runtime.current().engine.connect() as conn:
        return [p for p in policies.list_policies(conn) if p.origin == 'api']


async def test_policies_page_add_edit_delete(user: User) -> None:
    await user.open('/policies')
    await user.should_see('Daily budget · global · per day')  # the default daily limit, edited in Budget settings
    [default] = runtime.current().read(policies.list_policies)
    await user.should_see(marker=f'edit-{default.id}')
    assert user.find(marker=f'edit-{default.id}').elements.pop().props['icon'] == 'tune'
    await user.should_not_see(marker=f'delete-{default.id}')
    user.find(marker='name').type('Daily cap')
    user.find(marker='limit_usd').type('4.5')
    user.find(marker='save-policy').click()
    await user.should_see('$0.00 of $4.50 · soft 80% · critical 95%')
    [saved] = added_policies()
    assert (saved.name, saved.limit_micros, saved.origin) == ('Daily cap', 4_500_000, 'api')
    user.find(marker=f'edit-{saved.id}').click()
    user.find(marker='limit_usd').clear().type('9')
    user.find(marker='save-policy').click()
    await user.should_see('$0.00 of $9.00')
    user.find(marker='name').type('Bad')
    user.find(marker='limit_usd').type('abc')
    user.find(marker='save-policy').click()
    await user.should_see('limit_usd')
    user.find(marker=f'delete-{saved.id}').click()
    await user.should_not_see(marker=f'policy-{saved.id}')
    assert added_policies() == []


async def test_policies_page_sets_auto_pause_on_agent_policies_only(user: User) -> None:
    await user.open('/policies')
    user.find(marker='name').type('Looper cap')
    user.find(marker='limit_usd').type('2')
    user.find(marker='auto_pause').click()
    user.find(marker='save-policy').click()
    await user.should_see('auto_pause: only an agent policy can pause its agent')
    user.find(kind=ui.select, marker='scope').elements.pop().value = 'agent'
    user.find(marker='save-policy').click()
    await user.should_see('pauses the agent')
    [saved] = added_policies()
    assert (saved.scope, saved.auto_pause) == ('agent', True)


async def test_dashboard_pause_button_blocks_checks(user: User) -> None:
    from services.budget.checker import CheckRequest

    runtime.current().ledger.record({'model': 'gpt-4o', 'provider': 'openai', 'agent_id': 'worker', 'cost_usd': '0.1'})
    await user.open('/')
    user.find(marker='pause-worker').click()
    user.find(marker='pause-confirm').click()  # Pause asks first
    await user.should_see('paused: its checks are blocked')
    await user.should_see(marker='agent-paused')
    checker = runtime.current().checker
    assert checker is not None and checker.check(CheckRequest(agent_id='worker'))['decision'] == 'block'
    user.find(marker='pause-worker').click()
    await user.should_see('worker resumed')
    assert checker.check(CheckRequest(agent_id='worker'))['decision'] == 'allow'


def test_env_policy_on_a_real_server_blocks_and_is_read_only(tmp_path: Path) -> None:
    from tests.support.servers import start_server

    server = start_server(tmp_path, DAILY_BUDGET_LIMIT='5')
    try:
        with server.client() as api:
            [policy] = api.get('/policies').json()['items']
            assert (policy['origin'], policy['limit_usd'], policy['action']) == ('env', '5.000000', 'block')
            assert_client_error(api.patch(f'/policies/{policy["id"]}', json={'limit_usd': '9'}), 409,
                                mentions='/budget/limits/day')
            assert_client_error(api.delete(f'/policies/{policy["id"]}'), 409)
            assert api.post('/check', json={'estimated_cost_usd': '5.01'}).json()['decision'] == 'block'
            assert api.post('/check', json={'estimated_cost_usd': '3.99'}).json()['decision'] == 'allow'
    finally:
        server.stop()
