"""The dashboard and sessions pages through NiceGUI's simulated user (no browser), and the shared live feed."""
from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from nicegui import ui
from nicegui.testing import User

from app import runtime
from app.feed import feed
from components import theme
from services.budget import eco
from services.core.access import SYSTEM
from services.spend import agents, tasks
from tests.support.pages import PATIENT, settle
from tests.support.queries import counting_queries


def record(**fields: object) -> None:
    runtime.current().ledger.record({'model': 'gpt-4o', 'provider': 'openai', **fields})


def echart(user: User, marker: str) -> ui.echart:
    return user.find(kind=ui.echart, marker=marker).elements.pop()


async def test_empty_dashboard_shows_empty_states(user: User) -> None:
    await user.open('/')
    await user.should_see('No spend yet today')
    await user.should_see('Via LiteLLM: $0.00 | Direct: $0.00 | Total: $0.00')
    await user.should_see('Holds until midnight: ~$0.00 of $5.00 projected')
    await user.should_see('No agents yet')
    await user.should_see('No tasks yet')
    await user.should_see('never switched')
    await user.should_see('No webhook is configured (SPENDGAUGE_N8N_WEBHOOK_URL): switching only changes what '
                          'agents read. Agents are expected to use cheaper models and put off optional work while it '
                          'is on.')
    assert echart(user, 'budget-gauge').options['series'][0]['data'][0]['name'] == '$0.00 / $5.00'


async def test_dashboard_shows_todays_spend(user: User) -> None:
    record(channel='litellm', cost_usd='1.25', agent_id='planner')
    record(channel='direct', cost_usd='0.50', agent_id='coder', provider='anthropic', model='claude-haiku-4-5')
    await user.open('/')
    await user.should_see('Via LiteLLM: $1.25 | Direct: $0.50 | Total: $1.75')
    await user.should_see('resets in')
    # the forecast's band caption: the trailing rate, or the pace of the last 30 min (that runs $5 out unless
    # it is nearly midnight)
    await user.should_see('by midnight (')
    await user.should_not_see('No spend yet today')
    assert echart(user, 'budget-gauge').options['series'][0]['data'][0] == {'value': 35.0, 'name': '$1.75 / $5.00'}
    bars = echart(user, 'agent-bars').options
    assert bars['yAxis']['data'] == ['coder', 'planner'] and bars['series'][0]['data'] == [0.5, 1.25]
    donut = echart(user, 'provider-donut').options['series'][0]['data']
    assert {d['name']: d['value'] for d in donut} == {'openai 71%': 1.25, 'anthropic 29%': 0.5}
    line = echart(user, 'history-line').options
    assert len(line['xAxis']['data']) == 30 and line['series'][0]['data'][-1] == 1.75
    assert line['series'][0]['markLine']['data'] == [{'yAxis': 5.0}]


async def test_a_recorded_event_reaches_the_open_page_within_a_second(user: User) -> None:
    await user.open('/')
    await user.should_see('No spend yet today')
    started = asyncio.get_running_loop().time()
    await asyncio.to_thread(record, cost_usd='0.42', agent_id='live-agent', session_id='s-live', input_tokens=1000,
                            output_tokens=500)
    await user.should_see('Total: $0.42', retries=40)  # 40 retries of 0.1 s at most
    assert asyncio.get_running_loop().time() - started < 1.0
    await user.should_see('Tokens this session: 1,500 | Cost: $0.42')
    assert echart(user, 'budget-gauge').options['series'][0]['data'][0]['name'] == '$0.42 / $5.00'


async def test_agent_card_shows_session_tokens_trend_and_high_cost(user: User) -> None:
    start = datetime.now(UTC) - timedelta(minutes=20)
    for i, cost in enumerate(['0.04', '0.05', '0.05', '0.06', '0.06', '0.07', '0.08', '0.09', '0.10', '0.11']):
        record(agent_id='spender', session_id='s1', ts=(start + timedelta(minutes=i)).isoformat(), cost_usd=cost,
               input_tokens=100, output_tokens=50)
    record(agent_id='frugal', session_id='s2', cost_usd='0.002', input_tokens=10, output_tokens=5)
    await user.open('/')
    await user.should_see('Tokens this session: 1,500 | Cost: $0.71')
    await user.should_see('Cost/Request: $0.0710 ↗')
    await user.should_see('Avg cost/request: $0.0710 (last 10 requests)')
    spender = user.find(marker='agent-card-spender').elements.pop()
    frugal = user.find(marker='agent-card-frugal').elements.pop()
    assert spender.props['data-level'] == 'green' and frugal.props['data-level'] == 'green'
    assert any(e for e in spender.descendants() if 'high-cost' in e._markers)
    assert not any(e for e in frugal.descendants() if 'high-cost' in e._markers)
    await user.should_see('Cost/Request: $0.0020 →')


async def test_agent_card_colour_follows_session_cost(user: User) -> None:
    record(agent_id='cheap', session_id='a', cost_usd='0.99')
    record(agent_id='middling', session_id='b', cost_usd='1.00')
    record(agent_id='pricey', session_id='c', cost_usd='5.01')
    await user.open('/')
    await user.should_see('Cost: $5.01')
    levels = {name: user.find(marker=f'agent-card-{name}').elements.pop().props['data-level']
              for name in ('cheap', 'middling', 'pricey')}
    assert levels == {'cheap': 'green', 'middling': 'yellow', 'pricey': 'red'}


async def test_task_cards_compare_actual_with_estimate(user: User) -> None:
    rt = runtime.current()
    with rt.engine.begin() as conn:
        tasks.create_task(conn, 'Summarise the inbox', task_id='t-under', agent_id='planner',
                          estimated_cost_micros=500_000)
        tasks.create_task(conn, 'Refactor the parser', task_id='t-over', agent_id='coder', status='running',
                          estimated_cost_micros=100_000)
    record(task_id='t-under', cost_usd='0.30')
    record(task_id='t-over', cost_usd='0.25')
    await user.open('/')
    await user.should_see('Summarise the inbox')
    await user.should_see('Refactor the parser')
    under = user.find(marker='task-card-t-under').elements.pop()
    over = user.find(marker='task-card-t-over').elements.pop()
    badge = {card.id: [e for e in card.descendants() if isinstance(e, ui.badge) and 'task-actual' in e._markers].pop()
             for card in (under, over)}
    assert (badge[under.id].text, badge[under.id].props['color']) == ('actual $0.3000', 'green')
    assert (badge[over.id].text, badge[over.id].props['color']) == ('actual $0.2500', 'red')
    await user.should_see('est. $0.50')


async def test_eco_toggle_persists_and_is_pushed_to_other_tabs(user: User, create_user: Callable[[], User]) -> None:
    other = create_user()
    await user.open('/')
    await other.open('/')
    user.find(marker='eco-toggle').click()
    await settle(lambda: _eco_on())
    await user.should_see('on since', retries=PATIENT)
    await other.should_see('on since', retries=PATIENT)
    assert other.find(kind=ui.switch, marker='eco-toggle').elements.pop().value is True


def _eco_on() -> bool:
    with runtime.current().engine.connect() as conn:
        return eco.get_eco(conn)['eco_mode']


@pytest.mark.serial  # counts the queries in a 0.5 s window: on a loaded CPU the tabs' opening spills into it
async def test_twenty_tabs_cost_the_database_what_one_tab_does(user: User, create_user: Callable[[], User]) -> None:
    await user.open('/')

    async def queries_for_one_event() -> int:
        before = feed().reloads
        with counting_queries(runtime.current().engine) as statements:
            await asyncio.to_thread(record, cost_usd='0.01')
            await settle(lambda: feed().reloads > before)
            await asyncio.sleep(0.5)  # nothing else may query afterwards
        return len([s for s in statements if s.lstrip().upper().startswith('SELECT')])

    one_tab = await queries_for_one_event()
    tabs = [create_user() for _ in range(19)]
    for tab in tabs:
        await tab.open('/')
    assert feed().listeners == 20
    twenty_tabs = await queries_for_one_event()
    assert twenty_tabs == one_tab > 0
    await tabs[-1].should_see('Total: $0.02')


@pytest.mark.serial  # reloads per coalescing window: a reload slowed by another worker's load shifts them
async def test_a_burst_of_a_thousand_events_is_a_handful_of_reloads(user: User) -> None:
    await user.open('/')
    before = feed().reloads
    ledger = runtime.current().ledger

    def burst() -> None:
        for i in range(1000):
            ledger.record({'model': 'gpt-4o', 'provider': 'openai', 'cost_usd': '0.001', 'event_id': f'b{i}'})

    started = time.monotonic()
    await asyncio.to_thread(burst)
    took = time.monotonic() - started
    await user.should_see('Total: $1.00', retries=PATIENT)
    # one reload at the leading edge, then at most one per coalescing window while the burst lasts, one trailing
    # (a slow machine stretches the burst, never the per-window bound); without coalescing it would be 1,000
    windows = math.ceil(took / feed().coalesce_s)
    assert 1 <= feed().reloads - before <= 2 + windows, (feed().reloads - before, took)


async def test_pages_stop_listening_when_their_tab_is_gone(user: User) -> None:
    await user.open('/')
    assert feed().listeners == 1
    assert user.client is not None
    user.client.delete()
    assert feed().listeners == 0


async def test_sessions_page_lists_sessions_and_shows_a_breakdown(user: User) -> None:
    record(session_id='sess-1', agent_id='planner', cost_usd='0.10', input_tokens=1000, output_tokens=200)
    record(session_id='sess-1', agent_id='coder', cost_usd='0.30', input_tokens=3000, output_tokens=100)
    record(session_id='sess-2', agent_id='coder', cost_usd='0.05')
    await user.open('/sessions')
    table = user.find(kind=ui.table, marker='sessions-table').elements.pop()
    rows = {r['id']: r for r in table.rows}
    assert set(rows) == {'sess-1', 'sess-2'}
    assert (rows['sess-1']['tokens'], rows['sess-1']['cost'], rows['sess-1']['agents']) == \
        ('4,300', '$0.4000', 'coder, planner')
    user.find(marker='sessions-table').trigger('open', 'sess-1')  # what a click on the row or card sends
    await user.should_see('Session sess-1')
    breakdown = user.find(kind=ui.table, marker='session-breakdown').elements.pop()
    assert [(r['agent'], r['cost']) for r in breakdown.rows] == [('coder', '$0.3000'), ('planner', '$0.1000')]


async def test_sessions_page_exports_csv(user: User) -> None:
    record(session_id='sess-csv', agent_id='planner', cost_usd='0.10')
    await user.open('/sessions')
    user.find(marker='export-csv').click()
    response = await user.download.next()
    assert response.status_code == 200
    assert 'sess-csv' in response.text and response.text.startswith('session_id,')


async def test_empty_sessions_page(user: User) -> None:
    await user.open('/sessions')
    await user.should_see('No sessions yet')


async def test_dark_mode_switch_is_remembered(user: User) -> None:
    await user.open('/')
    dark = user.find(kind=ui.dark_mode).elements.pop()
    assert dark.value is True
    user.find(marker='dark-toggle').click()
    assert dark.value is False
    await user.open('/sessions')
    assert user.find(kind=ui.dark_mode).elements.pop().value is False


async def test_the_feed_reloads_once_for_concurrent_writers(user: User) -> None:
    await user.open('/')
    before = feed().reloads
    threads = [threading.Thread(target=record, kwargs={'cost_usd': '0.01', 'event_id': f'c{i}'}) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    await user.should_see('Total: $0.20', retries=PATIENT)
    assert feed().reloads - before <= 3


async def test_export_in_a_desktop_window_saves_the_csv(user: User, desktop_downloads: Path) -> None:
    record(session_id='sess-native', agent_id='planner', cost_usd='0.10')
    await user.open('/sessions')
    user.find(marker='export-csv').click()
    await user.should_see('Saved ', retries=PATIENT)
    saved = list(desktop_downloads.glob('sessions-*.csv'))
    assert len(saved) == 1 and 'sess-native' in saved[0].read_text()


async def test_spend_sources_and_reconciliation_view(user: User) -> None:
    from services.sources.base import PullResult, SnapshotRow
    from services.sources.snapshots import store_snapshots

    record(cost_usd='1.00', channel='litellm')
    today = datetime.now(UTC).date()
    with runtime.current().engine.begin() as conn:
        bill = SnapshotRow('openai_direct', today, 'openai', '', 3_000_000)
        store_snapshots(conn, 'openai_direct', PullResult([bill], {today}))
    await user.open('/')
    await user.should_see('LiteLLM proxy: off (no key configured)')
    await user.should_see('OpenAI billing: off (no key configured)')
    assert user.find(kind=ui.button, marker='sync-now').elements.pop().enabled is False
    await user.should_see('Via LiteLLM: $1.00 | Direct: $2.00 | Total: $3.00')
    table = user.find(kind=ui.table, marker='reconciliation-table').elements.pop()
    assert table.rows == []  # closed: nothing sent to the tab on each update
    user.find(kind=ui.expansion, marker='reconciliation').elements.pop().open()
    assert [(r['provider'], r['litellm'], r['billed'], r['direct'], r['total']) for r in table.rows] == \
        [('openai', '$1.00', '$3.00', '$2.00', '$3.00')]


async def test_the_reconciliation_table_is_filled_while_open(user: User) -> None:
    record(cost_usd='1.00', channel='litellm')
    await user.open('/')
    expansion = user.find(kind=ui.expansion, marker='reconciliation').elements.pop()
    table = user.find(kind=ui.table, marker='reconciliation-table').elements.pop()
    expansion.open()
    assert [(r['provider'], r['total']) for r in table.rows] == [('openai', '$1.00')]
    record(cost_usd='2.00', channel='litellm')
    await user.should_see('Total: $3.00', retries=PATIENT)  # the live update came
    assert [(r['provider'], r['total']) for r in table.rows] == [('openai', '$3.00')]
    expansion.close()
    record(cost_usd='4.00', channel='litellm')
    await user.should_see('Total: $7.00', retries=PATIENT)
    assert [(r['provider'], r['total']) for r in table.rows] == [('openai', '$3.00')]  # closed: not sent
    expansion.open()
    assert [(r['provider'], r['total']) for r in table.rows] == [('openai', '$7.00')]


async def test_a_refused_callback_token_shows_under_spend_sources(user: User) -> None:
    from services.integrations import CALLBACK_USER_AGENT

    refusals = runtime.current().refusals
    await user.open('/')
    for _ in range(12):
        refusals.refused(CALLBACK_USER_AGENT, 'POST /api/v1/usage/batch', 401, 'the bearer token is not valid')
    await user.should_see('LiteLLM callback: token refused ', retries=PATIENT)  # live: the dashboard heard of it
    [line] = user.find(marker='token-refused').elements
    assert isinstance(line, ui.label) and 'refused 12 times' in line.text and \
        '(POST /api/v1/usage/batch: the bearer token is not valid)' in line.text
    refusals.accepted(CALLBACK_USER_AGENT)
    await user.should_see('accepted again', retries=PATIENT)


async def test_sync_now_pulls_and_shows_the_result(openrouter_source: str, user: User) -> None:
    await user.open('/')
    await user.should_see('OpenRouter: never synced')
    user.find(marker='sync-now').click()
    await user.should_see('Synced 1 source(s)', retries=PATIENT)
    await user.should_see('OpenRouter: synced', retries=PATIENT)
    await user.should_see('Direct: $6.12', retries=PATIENT)


def card_order(user: User) -> list[str]:
    """The agents of the cards, as the page lays them out."""
    assert user.client is not None
    return [e.props['data-agent'] for e in user.client.layout.descendants() if 'data-agent' in e.props]


def paused_agents() -> set[str]:
    with runtime.current().engine.connect() as conn:
        return {a['id'] for a in agents.list_agents(conn) if a['paused']}


async def test_agent_cards_keep_their_order_across_live_updates(user: User) -> None:
    now = datetime.now(UTC)
    # the most recently active first would be charlie, bravo, alpha; the most spent today first is the reverse
    for seconds_ago, agent, cost in ((30, 'alpha', '0.50'), (20, 'bravo', '0.30'), (10, 'charlie', '0.10')):
        record(agent_id=agent, cost_usd=cost, ts=(now - timedelta(seconds=seconds_ago)).isoformat())
    await user.open('/')
    await user.should_see('Today: $0.10')
    assert card_order(user) == ['alpha', 'bravo', 'charlie']
    for agent, today in (('bravo', '$0.31'), ('alpha', '$0.51'), ('bravo', '$0.32'), ('charlie', '$0.11')):
        await asyncio.to_thread(record, agent_id=agent, cost_usd='0.01')  # now this agent's request is the latest
        await user.should_see(f'Today: {today}', retries=PATIENT)
        await user.should_see('last request just now · gpt-4o · $0.01')
        assert card_order(user) == ['alpha', 'bravo', 'charlie'], f'after a request of {agent}'
    await asyncio.to_thread(record, agent_id='charlie', cost_usd='0.30')  # now it spent more than bravo: it moves up
    await user.should_see('Today: $0.41', retries=PATIENT)
    assert card_order(user) == ['alpha', 'charlie', 'bravo']


async def test_pause_asks_first_naming_the_agent_and_pauses_only_that_one(user: User) -> None:
    record(agent_id='alpha', cost_usd='0.50')
    record(agent_id='bravo', cost_usd='0.30')
    await user.open('/')
    await user.should_see('Today: $0.30')
    dialog = user.find(kind=ui.dialog, marker='pause-dialog').elements.pop()

    def shown(marker: str) -> str:
        element = user.find(marker=marker).elements.pop()
        assert isinstance(element, (ui.label, ui.button))
        return element.text

    user.find(marker='pause-bravo').click()
    await settle(lambda: dialog.value is True)
    assert shown('pause-title') == 'Pause bravo?' and shown('pause-confirm') == 'Pause bravo'
    assert shown('pause-text').startswith('Every budget check for bravo ') and 'answers "block"' in shown('pause-text')
    user.find(marker='pause-cancel').click()
    await settle(lambda: dialog.value is False)
    await asyncio.sleep(0.2)
    assert paused_agents() == set()

    user.find(marker='pause-bravo').click()
    await settle(lambda: dialog.value is True)
    # a live update rebuilds the cards under the open dialog, and a new top spender takes the first slot
    await asyncio.to_thread(record, agent_id='aardvark', cost_usd='2.00')
    await user.should_see('Today: $2.00', retries=PATIENT)
    assert card_order(user) == ['aardvark', 'alpha', 'bravo'] and dialog.value is True
    user.find(marker='pause-confirm').click()
    await settle(lambda: paused_agents() == {'bravo'})
    await user.should_see('bravo paused: its checks are blocked')
    assert dialog.value is False
    answers = {agent: (await user.http_client.post('/api/v1/check', json={'agent_id': agent})).json()['decision']
               for agent in ('alpha', 'bravo', 'aardvark')}
    assert answers == {'alpha': 'allow', 'bravo': 'block', 'aardvark': 'allow'}
    bravo = user.find(marker='agent-card-bravo').elements.pop()
    assert any('agent-paused' in e._markers for e in bravo.descendants())

    user.find(marker='pause-bravo').click()  # Resume: no question
    await settle(lambda: paused_agents() == set())
    assert dialog.value is False


def _track(user: User) -> str:
    return echart(user, 'budget-gauge').options['series'][0]['axisLine']['lineStyle']['color'][0][1]


def _axis_label_colours(user: User) -> set[str]:
    return {echart(user, marker).options[axis]['axisLabel']['color']
            for marker in ('history-line', 'agent-bars') for axis in ('xAxis', 'yAxis')}


async def test_charts_follow_the_light_and_dark_switch(user: User) -> None:
    record(agent_id='alpha', cost_usd='1.00')
    await user.open('/')
    assert (_track(user), _axis_label_colours(user)) == (theme.DARK.track, {theme.DARK.text})
    user.find(marker='dark-toggle').click()
    await settle(lambda: _track(user) == theme.LIGHT.track)
    assert _axis_label_colours(user) == {theme.LIGHT.text}
    assert echart(user, 'provider-donut').options['legend']['textStyle']['color'] == theme.LIGHT.text
    await user.open('/')  # the choice is remembered: the page opens light
    assert (_track(user), _axis_label_colours(user)) == (theme.LIGHT.track, {theme.LIGHT.text})
    user.find(marker='dark-toggle').click()
    await settle(lambda: _track(user) == theme.DARK.track)


WEBHOOK_SECRETS = ('n8n-user', 'pw-s3cret', '0d5e-secret', 't0k')


@pytest.fixture
def n8n_webhook(monkeypatch: pytest.MonkeyPatch) -> None:
    """An eco-mode webhook with secrets in its user info, path and query; set before the app starts."""
    monkeypatch.setenv('SPENDGAUGE_N8N_WEBHOOK_URL',
                       'https://n8n-user:pw-s3cret@n8n.example.com/webhook/0d5e-secret?token=t0k')


async def test_eco_switch_says_which_webhook_it_calls_and_no_secret(n8n_webhook: None, user: User) -> None:
    await user.open('/')
    await user.should_see('Switching posts to the webhook at n8n.example.com. Agents are expected to use cheaper '
                          'models and put off optional work while it is on.')
    assert user.client is not None
    target = '#' + user.find(marker='eco-help').elements.pop().html_id
    [tip] = [e for e in user.client.elements.values() if isinstance(e, ui.tooltip) and e.props['target'] == target]
    assert 'to the webhook at n8n.example.com,' in tip.text and 'blocks nothing by itself' in tip.text
    shown = [f'{getattr(e, "text", "")} {e.props}' for e in user.client.elements.values()]
    assert not [text for text in shown if any(secret in text for secret in WEBHOOK_SECRETS)]


def element_id(user: User, marker: str) -> int:
    return user.find(marker=marker).elements.pop().id


async def test_only_the_agent_card_whose_data_changed_is_rebuilt(user: User) -> None:
    now = datetime.now(UTC)
    earlier = max(now - timedelta(minutes=61), now.replace(hour=0, minute=0, second=1, microsecond=0))
    record(agent_id='alpha', cost_usd='0.50', ts=earlier.isoformat())  # "last request 1 h ago": stays put a while
    record(agent_id='bravo', cost_usd='0.30', ts=earlier.isoformat())
    await user.open('/')
    await user.should_see('Today: $0.30')
    cards = {agent: element_id(user, f'agent-card-{agent}') for agent in ('alpha', 'bravo')}
    await asyncio.to_thread(record, agent_id='bravo', cost_usd='0.01')
    await user.should_see('Today: $0.31', retries=PATIENT)
    assert element_id(user, 'agent-card-alpha') == cards['alpha'], 'alpha did not change: its card stays'
    assert element_id(user, 'agent-card-bravo') != cards['bravo']
    assert card_order(user) == ['alpha', 'bravo']
    await asyncio.to_thread(record, agent_id='bravo', cost_usd='0.30')  # bravo overtakes alpha: moved, not rebuilt
    await user.should_see('Today: $0.61', retries=PATIENT)
    assert card_order(user) == ['bravo', 'alpha'] and element_id(user, 'agent-card-alpha') == cards['alpha']


async def test_last_request_ago_moves_on_in_place(user: User) -> None:
    from components.cards import AgentCard

    record(agent_id='alpha', cost_usd='0.50', ts=(datetime.now(UTC) - timedelta(seconds=20)).isoformat())
    await user.open('/')
    [card] = user.find(marker='agent-card-alpha').elements
    assert isinstance(card, AgentCard)
    before = card.last_request.text
    assert before.startswith('last request 2') and ' s ago · ' in before, before
    await asyncio.sleep(1.1)  # the next reload's "ago" differs
    await asyncio.to_thread(record, agent_id='bravo', cost_usd='0.01')
    await user.should_see('Today: $0.01', retries=PATIENT)
    assert card.last_request.text != before and ' s ago · ' in card.last_request.text, card.last_request.text
    assert user.find(marker='agent-card-alpha').elements == {card}, 'alpha did not change: its card stays'


async def test_the_plan_panel_is_rebuilt_only_when_the_plan_changes(user: User) -> None:
    commands = runtime.current().commands
    commands.tasks.create(SYSTEM, 'Summarise the inbox', 't-1', priority=5, estimated_cost_micros=100_000)
    record(agent_id='alpha', cost_usd='0.10')
    await user.open('/')
    await user.should_see('Run now: 1 task')
    plan = element_id(user, 'plan-summary')
    user.find(marker='eco-toggle').click()  # eco mode: the plan's part is not even reloaded
    await user.should_see('on since', retries=PATIENT)
    await asyncio.to_thread(commands.agents.pause, SYSTEM, 'alpha', 'test')  # nor for a pause
    await user.should_see(marker='agent-paused', retries=PATIENT)
    assert element_id(user, 'plan-summary') == plan
    await asyncio.to_thread(commands.tasks.create, SYSTEM, 'Refactor the parser', 't-2', priority=5,
                            estimated_cost_micros=200_000)
    await user.should_see('Run now: 2 tasks', retries=PATIENT)
    assert element_id(user, 'plan-summary') != plan


async def test_an_agent_card_opens_its_token_efficiency_by_model(user: User) -> None:
    now = datetime.now(UTC)
    yesterday = (now - timedelta(days=1)).isoformat()
    # today: gpt-4o 1,000 in (400 cache reads) / 250 out for $0.01, and gpt-4o-mini 3,000 in / 250 out for $0.002;
    # yesterday gpt-4o again, 2,000 in / 500 out for $0.03; another agent's call is not counted
    record(agent_id='coder', model='gpt-4o', input_tokens=1000, output_tokens=250, cache_read_tokens=400,
           cost_usd='0.01')
    record(agent_id='coder', model='gpt-4o-mini', input_tokens=3000, output_tokens=250, cost_usd='0.002')
    record(agent_id='coder', model='gpt-4o', input_tokens=2000, output_tokens=500, cost_usd='0.03', ts=yesterday)
    record(agent_id='writer', model='gpt-4o', input_tokens=5, output_tokens=5000, cost_usd='9')
    await user.open('/')
    await user.should_see('Tokens this session')
    user.find(marker='detail-coder').click()
    await user.should_see('Token efficiency, last 7 days, by model')
    await user.should_see('2 calls · $0.04')  # gpt-4o: most spent first
    await user.should_see('0.25 out per in · 13.3% cached · $0.0533 per 1k out')  # 750/3000; 400/3000; $0.04/750
    await user.should_see('1 calls · $0.0020')
    await user.should_see('0.083 out per in · 0% cached · $0.0080 per 1k out')
    trend = echart(user, 'agent-detail-trend').options
    assert [s['name'] for s in trend['series']] == ['gpt-4o', 'gpt-4o-mini']
    assert trend['series'][0]['data'] == [0.06, 0.04] and trend['series'][1]['data'] == [None, 0.008]
    link = user.find(marker='agent-detail-calls').elements.pop()
    assert link.props['href'] == '/usage?agent_id=coder'


async def test_an_agent_without_calls_this_week_says_so(user: User) -> None:
    record(agent_id='sleeper', cost_usd='0.5', ts=(datetime.now(UTC) - timedelta(days=9)).isoformat())
    await user.open('/')
    await user.should_see('Tokens this session')
    user.find(marker='detail-sleeper').click()
    await user.should_see('No calls in the last 7 days')
