"""Components from plain data: option builders and formatting, without a page; plus the trailing-rate forecast."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import cast
from zoneinfo import ZoneInfo

from nicegui import ui
from nicegui.testing import User

from components import charts, theme
from components.cards import ago, session_cost_level
from components.eco import eco_caption, eco_tooltip
from components.forecast import forecast_caption
from components.gauge import gauge_colour, gauge_options
from components.sessions_table import breakdown_rows, session_rows
from components.shared import per_snapshot
from components.strip import channel_strip_text
from components.usage_table import units_text
from services.dashboard import AgentBar, top_with_others
from services.insights.forecast import day_forecast
from services.spend.agents import AgentOut
from services.spend.budget import HistoryPoint, PeriodSummary
from services.spend.rollups import AgentSpend, ProviderSpend
from services.spend.sessions import SessionDetail
from services.spend.tasks import TaskOut
from services.usage.ledger import Ledger

# The read models below hold only the keys the component reads; a cast stands for the whole model.


def test_gauge_turns_amber_at_soft_and_red_at_critical() -> None:
    assert gauge_colour(50) == '#d4a72c'
    assert gauge_colour(80) == '#f59e0b'
    assert gauge_colour(96) == '#ef4444'
    over = gauge_options(7_000_000, 5_000_000)['series'][0]
    assert over['data'][0]['value'] == 100.0 and over['detail']['formatter'] == '140%'
    assert over['progress']['itemStyle']['color'] == '#ef4444' and over['detail']['color'] == '#f87171'  # as text
    assert gauge_options(3_120_000, 5_000_000)['series'][0]['data'][0] == {'value': 62.4, 'name': '$3.12 / $5.00'}
    assert gauge_options(0, None)['series'][0]['data'][0]['name'] == '$0.00'


def test_channel_strip() -> None:
    summary = cast(PeriodSummary, {'spent_micros': 3_120_000, 'limit_micros': None,
                                   'by_channel': {'litellm': {'spent_micros': 2_000_000},
                                                  'direct': {'spent_micros': 1_120_000}}})
    assert channel_strip_text(summary) == 'Via LiteLLM: $2.00 | Direct: $1.12 | Total: $3.12'


def test_top_ten_agents_and_others() -> None:
    items = cast(list[AgentSpend], [{'agent_id': f'a{i}', 'cost_micros': 1000 * (20 - i), 'requests': 1}
                                    for i in range(13)])
    items.append(cast(AgentSpend, {'agent_id': None, 'cost_micros': 10, 'requests': 2}))
    top = top_with_others(items, 'agent_id', 10)
    assert [i['label'] for i in top[:10]] == [f'a{i}' for i in range(10)]
    assert top[10] == {'label': 'others (4)', 'agent_id': None, 'cost_micros': 10_000 + 9_000 + 8_000 + 10,
                       'requests': 5}
    assert top_with_others(items[-1:], 'agent_id', 10)[0]['label'] == '(no agent)'


def test_agent_bars_put_the_largest_on_top() -> None:
    options = charts.agent_bars_options([{'label': 'big', 'agent_id': 'big', 'cost_micros': 2_500_000, 'requests': 1},
                                         {'label': 'small', 'agent_id': 'small', 'cost_micros': 500_000,
                                          'requests': 1}])
    assert options['yAxis']['data'] == ['small', 'big']  # ECharts draws categories bottom-up
    assert options['series'][0]['data'] == [0.5, 2.5]


def test_empty_charts_say_so() -> None:
    for options in (charts.agent_bars_options([]), charts.provider_donut_options([])):
        assert options['title']['text'] == 'No spend yet today' and options['series'] == []


def test_provider_donut() -> None:
    options = charts.provider_donut_options(cast(list[ProviderSpend], [
        {'provider': 'openai', 'cost_micros': 1_250_000, 'share_percent': 99.6},
        {'provider': None, 'cost_micros': 1, 'share_percent': 0.4}]))
    assert options['series'][0]['data'] == [{'name': 'openai 100%', 'value': 1.25},
                                            {'name': 'unknown 0%', 'value': 1e-06}]


def test_history_line_has_the_limit_as_reference() -> None:
    points = cast(list[HistoryPoint], [{'date': '2026-11-28', 'cost_micros': 1_000_000},
                                       {'date': '2026-11-29', 'cost_micros': 0}])
    options = charts.history_line_options(points, 5_000_000)
    assert options['xAxis']['data'] == ['11-28', '11-29']
    assert options['series'][0]['markLine']['data'] == [{'yAxis': 5.0}]
    assert '5.0' in options['yAxis'][':max']
    without = charts.history_line_options(points, None)
    assert 'markLine' not in without['series'][0] and ':max' not in without['yAxis']


def test_history_line_is_straight_and_drawn_once_with_the_limit_label_at_its_start() -> None:
    points = cast(list[HistoryPoint], [{'date': '2026-11-27', 'cost_micros': 0},
                                       {'date': '2026-11-28', 'cost_micros': 4_000_000},
                                       {'date': '2026-11-29', 'cost_micros': 6_500_000}])  # today, over the limit
    options = charts.history_line_options(points, 5_000_000)
    series = options['series'][0]
    assert series['smooth'] is False  # a smoothed curve dips below $0 between 0 and 4 and bulges above the points
    assert options['animationDurationUpdate'] == 0  # a live update moves the points, it does not replay the line
    # at the start of the line (the left), never at its end, where today's point is
    assert series['markLine']['label']['position'] == 'insideStartTop'


def _luminance(colour: str) -> float:
    def channel(c: float) -> float:
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (channel(int(colour[i:i + 2], 16) / 255) for i in (1, 3, 5))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    """WCAG contrast ratio of two #rrggbb colours."""
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


CARD_BACKGROUND = {True: '#1d1d1d', False: '#ffffff'}  # Quasar's card in dark and in light mode


def test_charts_and_gauge_take_the_page_theme() -> None:
    history = cast(list[HistoryPoint], [{'date': '2026-11-29', 'cost_micros': 1_000_000}])
    bars = [cast(AgentBar, {'label': 'a', 'agent_id': 'a', 'cost_micros': 1, 'requests': 1})]
    donut = cast(list[ProviderSpend], [{'provider': 'openai', 'cost_micros': 1, 'share_percent': 100.0}])
    for dark in (True, False):
        colours, background = theme.chart_colours(dark), CARD_BACKGROUND[dark]
        gauge = gauge_options(4_000_000, 5_000_000, dark)['series'][0]
        track = gauge['axisLine']['lineStyle']['color'][0][1]
        # the unfilled track is close to the card (not a second segment); the gold progress stands out from it
        assert contrast(track, background) < 1.5 and contrast(theme.GOLD, track) > 1.8
        assert gauge['title']['color'] == colours.text
        assert contrast(gauge['detail']['color'], background) >= 3  # large bold percent
        for options in (charts.history_line_options(history, 5_000_000, dark), charts.agent_bars_options(bars, dark)):
            for axis in (options['xAxis'], options['yAxis']):
                assert axis['axisLabel']['color'] == colours.text
        assert charts.provider_donut_options(donut, dark)['legend']['textStyle']['color'] == colours.text
        assert charts.empty_options(dark=dark)['title']['textStyle']['color'] == colours.text
        label = charts.history_line_options(history, 5_000_000, dark)['series'][0]['markLine']['label']['color']
        assert contrast(colours.text, background) >= 7 and contrast(label, background) >= 4.5
    assert theme.DARK.track != theme.LIGHT.track and theme.DARK.text != theme.LIGHT.text


def test_eco_switch_names_the_webhook_host_and_no_secret() -> None:
    url = 'https://hook-user:s3cret@hooks.example.com:8443/webhook/abc-secret-id?token=t0ken#frag'
    for text in (eco_caption(url), eco_tooltip(url)):
        assert 'hooks.example.com:8443' in text
        assert not any(part in text for part in ('hook-user', 's3cret', 'abc-secret-id', 't0ken', 'frag', '/webhook'))
        assert 'cheaper models' in text
    assert 'the webhook at hooks.example.com. ' in eco_caption('http://hooks.example.com/x')  # no port: none shown
    assert 'the webhook at [::1]:5678' in eco_caption('http://[::1]:5678/webhook/id')
    for text in (eco_caption(''), eco_tooltip('')):
        assert 'No webhook is configured (SPENDGAUGE_N8N_WEBHOOK_URL)' in text
    assert 'blocks nothing by itself' in eco_tooltip('') and '/api/v1/eco' in eco_tooltip('')


def test_session_cost_colour_thresholds() -> None:
    assert [session_cost_level(c, 1_000_000, 5_000_000) for c in (999_999, 1_000_000, 5_000_000, 5_000_001)] == \
        ['green', 'yellow', 'yellow', 'red']


def test_ago() -> None:
    now = datetime(2026, 11, 29, 12, tzinfo=UTC)
    assert [ago((now - timedelta(seconds=s)).isoformat(), now) for s in (2, 30, 600, 7200, 200_000)] == \
        ['just now', '30 s ago', '10 min ago', '2 h ago', '2 d ago']
    assert ago(None, now) == 'never'


def test_session_rows_in_the_configured_zone() -> None:
    session = cast(SessionDetail, {
        'id': 's', 'started_at': '2026-11-29T10:00:00+00:00', 'ended_at': None,
        'last_event_at': '2026-11-29T10:30:00+00:00', 'tokens': 12345, 'cost_micros': 1_500_000,
        'agents': ['a', 'b'], 'by_agent': [{'agent_id': None, 'requests': 2, 'tokens': 10, 'cost_micros': 5}]})
    row = session_rows([session], ZoneInfo('Asia/Kolkata'))[0]
    assert row == {'id': 's', 'start': '2026-11-29 15:30:00', 'end': 'active, last call 11-29 16:00:00',
                   'tokens': '12,345', 'cost': '$1.50', 'agents': 'a, b'}
    assert breakdown_rows(session) == [{'agent': '(no agent)', 'requests': '2', 'tokens': '10', 'cost': '$0.0000'}]


def test_forecast_exhausts_holds_and_is_exceeded(ledger: Ledger) -> None:
    utc = ZoneInfo('UTC')
    now = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    for hour in range(8, 12):
        ledger.record({'model': 'gpt-4o', 'provider': 'openai', 'cost_usd': '0.50',
                       'ts': now.replace(hour=hour, minute=30)})
    with ledger.engine.connect() as conn:
        # $0.50 an hour for 4 hours, 12 h left: $2 + $6 projected, so $5 runs out after 6 more hours
        exhausts = day_forecast(conn, 2_000_000, 5_000_000, utc, now)
        holds = day_forecast(conn, 2_000_000, 10_000_000, utc, now)
        exceeded = day_forecast(conn, 6_000_000, 5_000_000, utc, now)
        quiet = day_forecast(conn, 0, 5_000_000, utc, now.replace(hour=0))
    assert (exhausts['state'], exhausts['text']) == ('exhausts', 'Budget exhausted at ~18:00')
    assert exhausts['projected_micros'] == 8_000_000 and exhausts['rate_per_hour_micros'] == 500_000
    assert exhausts['method'] == 'trailing_rate'
    assert exhausts['projected_low_micros'] < 8_000_000 < exhausts['projected_high_micros']
    assert (holds['state'], holds['text']) == ('holds', 'Holds until midnight: ~$8.00 of $10.00 projected')
    # the reconciled $6 is over the limit, the recorded calls ($2) are not: when it was crossed is not known
    assert exceeded['state'] == 'exceeded' and exceeded['text'] == 'Limit exceeded: $6.00 of $5.00'
    assert exceeded['exceeded_at'] is None
    assert exceeded['eta'] is None
    assert quiet['text'] == 'Holds until midnight: ~$0.00 of $5.00 projected' and quiet['method'] == 'none'
    assert forecast_caption(quiet) == ''
    assert forecast_caption({**exhausts, 'projected_low_micros': 5_000_000, 'projected_high_micros': 11_000_000}) \
        == 'likely $5.00 to $11.00 by midnight (trailing rate)'
    assert forecast_caption({**exhausts, 'method': 'recent_rate'}).endswith('by midnight (pace of the last 30 min)')


async def test_components_render_on_a_page(user: User) -> None:
    """Each card component renders its texts (the dashboard tests cover them with live data)."""
    from components.cards import agent_card, task_card

    @ui.page('/components')
    def page() -> None:
        agent_card(cast(AgentOut, {'id': 'a1', 'session_cost_micros': 120_000, 'avg_cost_per_request_micros': 8_000,
                                   'session_tokens': 4234, 'trend': 'down', 'recent_requests': 10,
                                   'last_request_at': datetime.now(UTC).isoformat(), 'last_model': 'gpt-4o',
                                   'last_cost_micros': 7_200}), 1_000_000, 5_000_000, today_micros=420_000)
        task_card(cast(TaskOut, {'id': 't1', 'title': 'Write docs', 'agent_id': None, 'status': 'done',
                                 'estimated_cost_micros': None, 'actual_cost_micros': 10_000}))

    await user.open('/components')
    await user.should_see('Tokens this session: 4,234 | Cost: $0.12')
    await user.should_see('Cost/Request: $0.0080 ↘')
    await user.should_see('Avg cost/request: $0.0080 (last 10 requests)')
    await user.should_see('last request just now · gpt-4o · $0.0072')
    await user.should_see('Today: $0.4200')
    await user.should_see('OK')  # the session-cost level as a word, not only as a colour
    await user.should_see('Session cost $0.12: under the $1.00 warning level')
    await user.should_see('unassigned')
    await user.should_see('no estimate')
    await user.should_see('actual $0.01')
    await user.should_not_see('high cost')


def test_refusal_lines_sum_up_each_client() -> None:
    from components.sources import refusal_lines
    from services.accounts.refusals import RefusedRequest

    def item(client: str, route: str, count: int, last_at: str, accepted_at: str | None = None) -> RefusedRequest:
        return {'client': client, 'route': route, 'status': 401, 'reason': 'the bearer token is not valid',
                'count': count, 'first_at': '2026-11-29T16:00:00+00:00', 'last_at': last_at,
                'accepted_at': accepted_at}

    lines = refusal_lines([item('litellm_callback', 'POST /api/v1/check', 2, '2026-11-29T17:02:10+00:00'),
                           item('litellm_callback', 'POST /api/v1/usage/batch', 10, '2026-11-29T16:59:00+00:00'),
                           item('sdk', 'POST /api/v1/usage', 1, '2026-11-29T16:30:00+00:00',
                                '2026-11-29T16:45:00+00:00')])
    assert [line.text for line in lines] == [
        'LiteLLM callback: token refused 12 times, last 2026-11-29 17:02 UTC '
        '(POST /api/v1/check: the bearer token is not valid)',
        'SpendGauge SDK: token refused once, last 2026-11-29 16:30 UTC (POST /api/v1/usage: the bearer token is not '
        'valid) · accepted again 2026-11-29 16:45 UTC']
    assert [line.resolved for line in lines] == [False, True]
    assert refusal_lines([]) == []


def test_every_tab_shares_what_a_snapshot_shows() -> None:
    """The feed hands each tab the same snapshot: the first tab works out a chart's options, the others get them."""
    calls: list[int] = []

    @per_snapshot
    def options(items: list[int], dark: bool = True) -> dict[str, int]:
        calls.append(1)
        return {'sum': sum(items)}

    part = [1, 2, 3]
    first = options(part, True)
    assert all(options(part, True) is first for _ in range(19)) and len(calls) == 1  # 20 tabs, one working out
    assert options(part, False) is not first and len(calls) == 2  # a tab in the other theme
    reloaded = [1, 2, 4]  # a reload brings a new object: worked out again
    assert options(reloaded, True) == {'sum': 7} and len(calls) == 3
    bars = charts.agent_bars_options(cast(list[AgentBar], [{'label': 'a', 'agent_id': 'a', 'cost_micros': 1,
                                                            'requests': 1}]), True)
    assert bars['series'][0]['data'] == [1e-06]


def test_what_a_call_used_beyond_text_tokens_in_words() -> None:
    assert units_text(None) == ''
    assert units_text({'images': {'count': 2, 'size': '1024x1792', 'quality': 'hd'}}) == '2 images (1024x1792, hd)'
    assert units_text({'images': {'count': 1}, 'audio_seconds': 8.47}) == '1 image; 8.47 s of audio'
    assert units_text({'characters': 1234, 'audio_input_tokens': 10_000, 'audio_output_tokens': 6_000,
                       'image_output_tokens': 4160}) == \
        '1,234 characters; audio tokens: 10,000 in, 6,000 out; image tokens: 4,160 out'
