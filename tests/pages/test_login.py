"""The dashboard's login, and what a read-only user can and cannot do from the pages (NiceGUI's simulated user).

The read-only tests also tamper: they enable a disabled control on the server side and use it anyway, to show the
refusal comes from the command that carries the change out, not from the widget.
"""
from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable

from nicegui import ui
from nicegui.elements.mixins.disableable_element import DisableableElement
from nicegui.testing import User

from app import runtime
from services.accounts import throttle
from services.alerting import alerts
from services.budget import allocations, eco, policies
from services.core.access import SYSTEM, Role
from services.spend import agents
from tests.support.pages import PATIENT, settle

PASSWORD = 'correct horse battery'


def add_user(name: str, role: Role) -> None:
    runtime.current().commands.accounts.create_user(SYSTEM, name, PASSWORD, role)


async def log_in(user: User, name: str, password: str = PASSWORD, ok: bool = True) -> None:
    """Fill in the login form; with `ok`, wait for the dashboard it leads to."""
    await user.open('/login')
    user.find(marker='login-user').type(name)
    user.find(marker='login-password').type(password)
    user.find(marker='login-submit').click()
    if not ok:
        return
    for _ in range(PATIENT // 10):
        with contextlib.suppress(AssertionError):
            await user.should_see(marker='logout', retries=10)
            return
        # The simulation points `ui.navigate` at the User whose attributes were touched last, and another User's
        # live page touches its own: the login's navigation can reach that one. Go to the dashboard ourselves.
        await user.open('/')
    await user.should_see(marker='logout')


def control(user: User, marker: str) -> DisableableElement:
    element = user.find(marker=marker).elements.pop()
    assert isinstance(element, DisableableElement)
    return element


def eco_on() -> bool:
    with runtime.current().engine.connect() as conn:
        return eco.get_eco(conn)['eco_mode']


async def test_without_users_or_tokens_the_dashboard_needs_no_login(user: User) -> None:
    await user.open('/')
    await user.should_see('Eco mode', retries=PATIENT)
    await user.should_not_see(marker='logout')


async def test_once_a_user_exists_pages_send_to_login(user: User) -> None:
    add_user('ada', Role.ADMIN)
    for path in ('/', '/policies', '/alerts', '/sessions', '/reports', '/settings'):
        await user.open(path)
        await user.should_see(marker='login-card', retries=PATIENT)


async def test_wrong_password_is_refused_and_right_one_opens_the_dashboard(user: User) -> None:
    add_user('ada', Role.ADMIN)
    await log_in(user, 'ada', 'not the password', ok=False)
    await user.should_see('Wrong name or password', retries=PATIENT)
    await log_in(user, 'nobody', PASSWORD, ok=False)
    await user.should_see('Wrong name or password', retries=PATIENT)
    await log_in(user, 'ada')
    await user.should_see('Eco mode', retries=PATIENT)
    await user.should_see(marker='logout', retries=PATIENT)
    await user.open('/logout')
    await user.should_see(marker='login-card', retries=PATIENT)
    await user.open('/')
    await user.should_see(marker='login-card', retries=PATIENT)


async def test_login_goes_back_to_the_page_asked_for_but_never_off_site(user: User) -> None:
    add_user('ada', Role.ADMIN)
    await user.open('/login?next=//evil.example/x')
    user.find(marker='login-user').type('ada')
    user.find(marker='login-password').type(PASSWORD)
    user.find(marker='login-submit').click()
    await user.should_see('Eco mode', retries=PATIENT)  # the dashboard, not evil.example


async def test_guessing_passwords_locks_the_name_for_a_while(user: User) -> None:
    add_user('grace', Role.ADMIN)
    for _ in range(throttle.MAX_FAILURES):
        await log_in(user, 'grace', 'guess', ok=False)
        await settle(lambda: user.find(kind=ui.input, marker='login-password').elements.pop().value == '')
    login = sys.modules['app.pages.login']  # imported by the app (importing it here would register its pages early)
    assert login.throttle.locked_for('grace') > 0
    await log_in(user, 'grace', ok=False)  # the right password, too late
    await user.should_see('Too many wrong passwords', retries=PATIENT)
    await user.should_see(marker='login-card', retries=PATIENT)


async def test_admin_can_change_eco_mode(user: User) -> None:
    add_user('ada', Role.ADMIN)
    await log_in(user, 'ada')
    await user.should_see('Eco mode', retries=PATIENT)
    user.find(marker='eco-toggle').click()
    await settle(eco_on)


async def test_read_only_user_sees_every_control_disabled_and_cannot_change_a_thing(user: User) -> None:
    add_user('ada', Role.ADMIN)
    add_user('reed', Role.READ)
    runtime.current().ledger.record({'model': 'gpt-4o', 'provider': 'openai', 'agent_id': 'coder',
                                     'session_id': 's1', 'input_tokens': 10, 'output_tokens': 5})
    await log_in(user, 'reed')
    await user.should_see('Eco mode', retries=PATIENT)
    await user.should_see(marker='read-only-badge', retries=PATIENT)
    for marker in ('eco-toggle', 'sync-now', 'pause-coder', 'daily-limit', 'save-budget-settings'):
        assert not control(user, marker).enabled, marker

    # Tampering: the controls enabled on the server side still change nothing.
    for marker in ('eco-toggle', 'pause-coder', 'sync-now', 'save-budget-settings'):
        control(user, marker).enable()
    user.find(marker='eco-toggle').click()
    await user.should_see('switching eco mode needs the admin role', retries=PATIENT)
    assert not eco_on()
    user.find(marker='pause-coder').click()
    user.find(marker='pause-confirm').click()  # Pause asks first
    await user.should_see('pausing an agent needs the admin role', retries=PATIENT)
    with runtime.current().engine.connect() as conn:
        assert not any(a['paused'] for a in agents.list_agents(conn))
    user.find(marker='sync-now').click()
    await user.should_see('pulling spend needs the admin role', retries=PATIENT)
    user.find(marker='daily-limit').type('999999')
    user.find(marker='save-budget-settings').click()
    await user.should_see('needs the admin role', retries=PATIENT)
    assert [(p.name, p.limit_micros) for p in runtime.current().read(policies.list_policies)] == \
        [('Daily budget', 5_000_000)], 'the default daily limit, unchanged'


async def test_read_only_user_cannot_edit_or_delete_a_policy(user: User) -> None:
    add_user('reed', Role.READ)
    created = runtime.current().commands.policies.create(SYSTEM, {'name': 'block', 'limit_usd': '5',
                                                                  'action': 'block'})
    await log_in(user, 'reed')
    await user.open('/policies')
    await user.should_see('block', retries=PATIENT)
    delete, save = control(user, f'delete-{created.id}'), control(user, 'save-policy')
    assert not delete.enabled and not save.enabled
    delete.enable()
    user.find(marker=f'delete-{created.id}').click()
    await user.should_see('deleting a policy needs the admin role', retries=PATIENT)
    save.enable()
    user.find(marker='name').type('sneaky')
    user.find(marker='limit_usd').type('1')
    user.find(marker='save-policy').click()
    await user.should_see('adding a policy needs the admin role', retries=PATIENT)
    assert [p.name for p in runtime.current().read(policies.list_policies)] == ['Daily budget', 'block']


async def test_read_only_user_sees_allocations_but_cannot_change_them(user: User) -> None:
    add_user('reed', Role.READ)
    created = runtime.current().commands.allocations.create(SYSTEM, {
        'name': 'split', 'limit_usd': '10', 'shares': [{'scope': 'project', 'scope_value': 'web', 'percent': 70}]})
    await log_in(user, 'reed')
    await user.open('/allocations')
    await user.should_see('project = web · 70.00 % · $0.00 of $7.00', retries=PATIENT)
    delete, save = control(user, f'delete-allocation-{created.id}'), control(user, 'save-allocation')
    assert not delete.enabled and not save.enabled
    delete.enable()
    user.find(marker=f'delete-allocation-{created.id}').click()
    await user.should_see('deleting an allocation needs the admin role', retries=PATIENT)
    save.enable()
    user.find(marker='allocation-name').type('sneaky')
    user.find(marker='allocation-limit').type('1')
    user.find(marker='share-value-0').type('x')
    user.find(marker='share-amount-0').type('1')
    user.find(marker='save-allocation').click()
    await user.should_see('adding an allocation needs the admin role', retries=PATIENT)
    assert [a.name for a in runtime.current().read(allocations.list_allocations)] == ['split']


async def test_read_only_user_cannot_acknowledge_alerts(user: User) -> None:
    add_user('reed', Role.READ)
    alert = runtime.current().commands.alerts.raise_(SYSTEM, 'anomaly', 'warning', 'spend jumped', 'k1', {})
    assert alert is not None
    await log_in(user, 'reed')
    await user.open('/alerts')
    await user.should_see('spend jumped', retries=PATIENT)
    for action in ('ack', 'resolve'):
        button = control(user, f'{action}-{alert["id"]}')
        assert not button.enabled
        button.enable()
        user.find(marker=f'{action}-{alert["id"]}').click()
        await user.should_see('needs the admin role', retries=PATIENT)
    row = runtime.current().read(alerts.get_alert, alert['id'])
    assert row['acknowledged_at'] is None and row['open']  # unchanged


async def test_admin_manages_tokens_and_users_on_the_settings_page(user: User) -> None:
    add_user('ada', Role.ADMIN)
    await log_in(user, 'ada')
    await user.open('/settings')
    user.find(marker='token-name').type('litellm proxy')
    user.find(marker='create-token').click()
    await user.should_see('copy it now', retries=PATIENT)
    shown = user.find(kind=ui.input, marker='new-token').elements.pop().value
    assert shown.startswith('sg_')
    actor = runtime.current().accounts.token_actor(shown)
    assert actor is not None and actor.role is Role.INGEST
    user.find(marker='user-name').type('reed')
    user.find(marker='user-password').type(PASSWORD)
    user.find(marker='add-user').click()
    await user.should_see('Added reed (read-only)', retries=PATIENT)
    assert runtime.current().accounts.login('reed', PASSWORD) is not None


async def test_a_changed_password_logs_out_other_sessions(user: User, create_user: Callable[[], User]) -> None:
    add_user('ada', Role.ADMIN)
    other = create_user()
    await log_in(user, 'ada')
    await log_in(other, 'ada')
    await other.should_see('Eco mode', retries=PATIENT)
    runtime.current().commands.accounts.set_password(SYSTEM, 'ada', 'a brand new password')
    await other.open('/')
    await other.should_see(marker='login-card', retries=PATIENT)
