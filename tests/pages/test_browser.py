"""End-to-end in a real browser: Debian's chromium driven by Playwright (sync API) against a real server process.

Skipped when /usr/bin/chromium or the playwright package is missing, except in CI (CI=true), where that fails.
Screenshots of both pages land in `screenshots/` at the repository root (git-ignored).
"""
from __future__ import annotations

import csv
import io
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from components import theme
from services.core.display import channel_text, format_usd, format_usd_all
from tests.support.browser import GAUGE_NAME_JS, Browser, Locator, Tab, save_screenshot
from tests.support.servers import Server, start_server

LIVE_DEADLINE_S = 1.0

HAS_TEXT_JS = """(text) => {
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    while (walker.nextNode()) if (walker.currentNode.data.trim() === text) return true;
    return false;
}"""
LIVE_JS = f"""([strip, card, gauge]) => {{
    const hasText = {HAS_TEXT_JS};
    const gaugeName = {GAUGE_NAME_JS};
    return hasText(strip) && hasText(card) && gaugeName() === gauge;
}}"""
PIXELS_JS = """(canvas) => {
    const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    const colours = new Set();
    let painted = 0;
    for (let i = 0; i < data.length; i += 4) {
        if (data[i + 3] === 0) continue;
        painted++;
        if (colours.size < 100) colours.add(data.slice(i, i + 4).join());
    }
    return {total: canvas.width * canvas.height, painted, colours: colours.size};
}"""

# What the charts drew with, from ECharts itself: the gauge's unfilled track, and every axis label's colour.
CHART_COLOURS_JS = """() => {
    let track = null;
    const labels = [];
    for (const el of document.querySelectorAll('.nicegui-echart')) {
        const option = getElement(el)?.chart?.getOption();
        if (!option) continue;
        if (option.series?.[0]?.type === 'gauge') track = option.series[0].axisLine.lineStyle.color[0][1];
        for (const axis of [...(option.xAxis || []), ...(option.yAxis || [])]) labels.push(axis.axisLabel.color);
    }
    return {track, labels};
}"""


def uid(prefix: str) -> str:
    return f'{prefix}-{uuid.uuid4().hex[:10]}'


@pytest.fixture(scope='module')
def live_server(browser: Browser, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp('browser'), SPENDGAUGE_LOG_LEVEL='WARNING')
    yield srv
    srv.stop()


@pytest.fixture(scope='module')
def api(live_server: Server) -> Iterator[httpx.Client]:
    with live_server.client() as client:
        yield client


@pytest.fixture(scope='module')
def seeded(api: httpx.Client) -> list[str]:
    """Some spend today and over the last days across agents, providers, channels and sessions; the session ids."""
    now = datetime.now(UTC)
    sessions = [uid('sess') for _ in range(4)]
    models = [('openai', 'gpt-4o'), ('anthropic', 'claude-sonnet-4-5'), ('openrouter', 'openai/gpt-4o-mini')]
    events = []
    for i in range(36):
        provider, model = models[i % len(models)]
        days_ago = 0 if i < 12 else i % 12
        events.append({'event_id': uid('seed'), 'provider': provider, 'model': model,
                       'channel': 'litellm' if i % 3 else 'direct', 'agent_id': f'seed-agent-{i % 5}',
                       'session_id': sessions[i % len(sessions)], 'input_tokens': 1000 + 137 * i,
                       'output_tokens': 200 + 11 * i, 'cost_usd': f'{0.05 + 0.013 * (i % 7):.3f}',
                       'ts': (now - timedelta(days=days_ago, minutes=i)).isoformat()})
    response = api.post('/usage/batch', json={'events': events})
    assert response.status_code == 200, response.text
    assert response.json()['stored'] == len(events), response.text
    return sessions


@pytest.fixture
def tab(browser: Browser) -> Iterator[Tab]:
    t = Tab(browser, 1280, 800)
    yield t
    t.close()


def test_dashboard_loads_without_console_errors_or_failed_requests(tab: Tab, live_server: Server,
                                                                   seeded: list[str]) -> None:
    page = tab.open_dashboard(live_server)
    page.wait_for_timeout(300)  # late errors: chart set-up, the websocket
    assert page.title() == 'Dashboard · SpendGauge'
    assert tab.problems == []


def test_gauge_canvas_is_drawn(tab: Tab, live_server: Server, seeded: list[str]) -> None:
    page = tab.open_dashboard(live_server)
    canvas = page.locator('.nicegui-echart canvas').first  # the gauge comes first
    box = canvas.bounding_box()
    assert box is not None and box['width'] > 100 and box['height'] > 100, box
    pixels = canvas.evaluate(PIXELS_JS)
    assert pixels['painted'] > 0.05 * pixels['total'], f'the gauge looks blank: {pixels}'
    assert pixels['colours'] > 2, f'the gauge looks like one flat colour: {pixels}'  # arc, progress, text


@pytest.mark.serial  # a wall-clock deadline of one second
def test_posted_event_shows_on_the_dashboard_within_a_second(tab: Tab, live_server: Server, api: httpx.Client,
                                                            seeded: list[str]) -> None:
    page = tab.open_dashboard(live_server)
    before = api.get('/budget/summary', params={'period': 'day'}).json()
    agent, cost_micros = uid('live-agent'), 370_000
    channels = before['by_channel']
    total = before['spent_micros'] + cost_micros
    # the dashboard's own formatters: this test is about liveness, the formats have their own tests
    strip = channel_text(channels['litellm']['spent_micros'], channels['direct']['spent_micros'] + cost_micros,
                         before['limit_micros'])
    card = f'Tokens this session: 1,234 | Cost: {format_usd(cost_micros)}'
    gauge = ' / '.join(format_usd_all([total, before['limit_micros']]))
    assert not page.evaluate(LIVE_JS, [strip, card, gauge])

    response = api.post('/usage', json={'event_id': uid('live'), 'model': 'gpt-4o', 'channel': 'direct',
                                        'agent_id': agent, 'session_id': uid('live-sess'), 'input_tokens': 1200,
                                        'output_tokens': 34, 'cost_usd': '0.37'})
    posted = time.monotonic()
    assert response.status_code == 201, response.text
    page.wait_for_function(LIVE_JS, arg=[strip, card, gauge], timeout=5000)
    elapsed = time.monotonic() - posted

    assert page.get_by_text(strip, exact=True).is_visible()
    assert page.get_by_text(card, exact=True).is_visible()
    assert page.get_by_text(agent, exact=True).is_visible()
    assert page.evaluate(GAUGE_NAME_JS) == gauge
    assert elapsed < LIVE_DEADLINE_S, f'the dashboard showed the event {elapsed:.3f} s after the POST returned'


def test_sessions_export_csv_downloads_the_recorded_sessions(tab: Tab, live_server: Server,
                                                             seeded: list[str]) -> None:
    page = tab.open(live_server.url + '/sessions')
    page.get_by_text(seeded[0]).first.wait_for()
    with page.expect_download(timeout=5000) as info:
        page.get_by_role('button', name='Export CSV').click()
    download = info.value
    assert download.failure() is None
    assert download.suggested_filename == 'sessions.csv'
    text = Path(download.path()).read_text()
    rows = list(csv.reader(io.StringIO(text)))
    assert len(rows) > len(seeded), text[:500]
    assert set(seeded) <= {cell for row in rows for cell in row}, text[:500]
    assert tab.problems == []


@pytest.mark.parametrize(('width', 'height'), [(390, 844), (1440, 900)])
def test_budget_settings_fit_and_show_the_limit_and_its_action(browser: Browser, live_server: Server,
                                                               seeded: list[str], width: int, height: int) -> None:
    shot = Tab(browser, width, height)
    try:
        page = shot.open_dashboard(live_server)
        page.get_by_text('Budget settings').click()
        action = page.get_by_label('At the limit')
        action.wait_for()
        assert page.get_by_label('Daily limit (USD)').input_value() == '5'
        page.get_by_text('Block at 100 % (warn 80 %, throttle 95 %)').wait_for()  # the default limit's action
        page.wait_for_timeout(300)
        overflow = page.evaluate('document.documentElement.scrollWidth')
        assert overflow <= width + 1, f'the Budget settings are {overflow} px wide at a {width} px viewport'
        save_screenshot(page, f'budget-settings-{width}x{height}')
    finally:
        shot.close()


def classes(locator: Locator) -> list[str]:
    value = locator.get_attribute('class')
    assert value is not None
    return value.split()


def test_dark_mode_button_switches_the_body_class(tab: Tab, live_server: Server) -> None:
    page = tab.open(live_server.url + '/')
    body = page.locator('body')
    assert 'body--dark' in classes(body)  # dark by default
    toggle = page.locator('.q-header').get_by_role('button').filter(has_text='dark_mode')
    toggle.click()
    page.wait_for_function('document.body.classList.contains("body--light")', timeout=3000)
    assert 'body--dark' not in classes(body)
    page.reload(wait_until='load')  # the choice is stored per browser
    page.wait_for_function('document.body.classList.contains("body--light")', timeout=3000)
    page.locator('.q-header').get_by_role('button').filter(has_text='dark_mode').click()
    page.wait_for_function('document.body.classList.contains("body--dark")', timeout=3000)
    assert 'body--light' not in classes(body)


@pytest.mark.parametrize(('name', 'path', 'width', 'height'), [
    ('dashboard-1280x800', '/', 1280, 800),
    ('dashboard-390x844', '/', 390, 844),
    ('sessions-1280x800', '/sessions', 1280, 800),
], ids=['dashboard-1280x800', 'dashboard-390x844', 'sessions-1280x800'])
def test_screenshots(browser: Browser, live_server: Server, seeded: list[str], name: str, path: str, width: int,
                     height: int) -> None:
    shot = Tab(browser, width, height)
    try:
        page = shot.open_dashboard(live_server) if path == '/' else shot.open(live_server.url + path)
        if path == '/sessions':
            page.get_by_text(seeded[0]).first.wait_for()
        page.wait_for_timeout(400)  # let the chart animations finish
        save_screenshot(page, name)
    finally:
        shot.close()


@pytest.mark.parametrize('dark', [True, False], ids=['dark', 'light'])
def test_dashboard_at_1440_px_in_dark_and_light(browser: Browser, live_server: Server, seeded: list[str],
                                                dark: bool) -> None:
    """The charts take the theme (switched live in light), the agent cards' headers are tinted by their level;
    screenshots dashboard-1440x900-dark.png and dashboard-1440x900-light.png."""
    shot = Tab(browser, 1440, 900)
    try:
        page = shot.open_dashboard(live_server)
        if not dark:
            page.get_by_role('button', name='Light or dark').click()
            page.wait_for_function('document.body.classList.contains("body--light")', timeout=3000)
            page.mouse.move(720, 880)  # off the button: no tooltip in the screenshot
        colours = theme.chart_colours(dark)
        page.wait_for_function(f'({CHART_COLOURS_JS})().track === "{colours.track}"', timeout=3000)
        drawn = page.evaluate(CHART_COLOURS_JS)
        assert len(drawn['labels']) == 4 and set(drawn['labels']) == {colours.text}, drawn  # line and bars
        header = page.locator('[data-agent] > div').first
        tint = header.evaluate('(el) => getComputedStyle(el).backgroundColor')
        assert tint not in ('rgba(0, 0, 0, 0)', 'transparent'), tint
        page.get_by_text('Switching posts to the webhook at', exact=False).or_(
            page.get_by_text('No webhook is configured', exact=False)).first.wait_for()
        page.wait_for_timeout(400)  # let the chart animations finish
        save_screenshot(page, f'dashboard-1440x900-{"dark" if dark else "light"}')
        assert shot.problems == []
    finally:
        shot.close()


KEEP_JS = """(agents) => agents.map((agent) => {
    const card = document.querySelector(`[data-agent="${agent}"]`);
    if (card.__kept === undefined) card.__kept = agent;  // lives as long as this DOM node does
    return card.__kept === agent;
})"""


def test_a_live_update_replaces_only_the_changed_agent_card_in_the_dom(tab: Tab, live_server: Server,
                                                                      api: httpx.Client) -> None:
    now = datetime.now(UTC)
    earlier = max(now - timedelta(minutes=61), now.replace(hour=0, minute=0, second=1, microsecond=0))
    still, changed = uid('still'), uid('changed')
    for agent, cost in ((still, '1.00'), (changed, '0.90')):  # the top spenders: their cards are on the page
        response = api.post('/usage', json={'event_id': uid('keep'), 'model': 'gpt-4o', 'agent_id': agent,
                                            'cost_usd': cost, 'ts': earlier.isoformat()})
        assert response.status_code == 201, response.text
    page = tab.open_dashboard(live_server)
    page.locator(f'[data-agent="{changed}"]').get_by_text('Today: $0.90').wait_for()
    assert page.evaluate(KEEP_JS, [still, changed]) == [True, True]
    response = api.post('/usage', json={'event_id': uid('keep'), 'model': 'gpt-4o', 'agent_id': changed,
                                        'cost_usd': '0.05'})
    assert response.status_code == 201, response.text
    page.locator(f'[data-agent="{changed}"]').get_by_text('Today: $0.95').wait_for(timeout=10_000)
    assert page.evaluate('(agent) => document.querySelector(`[data-agent="${agent}"]`).__kept', changed) is None
    assert page.evaluate('(agent) => document.querySelector(`[data-agent="${agent}"]`).__kept', still) == still
    assert tab.problems == []
