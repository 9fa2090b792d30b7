"""The forecast on constructed hourly series with known answers (the pure core), then through the database (the
ledger, both engines), the API and the forecast_exhaustion alert."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import Engine, event

from services.alerting import alerts
from services.budget import limits
from services.core.context import BudgetContext
from services.core.display import format_usd
from services.insights.forecast import (
    RECENT_SPAN,
    PeriodForecast,
    budget_forecast,
    check_exhaustion,
    day_forecast,
    project,
    read_hours,
    read_recent,
    run_exhaustion_check,
)
from services.live.hub import EventHub, LiveEvent
from services.live.topics import Topic
from services.spend.budget import period_summary
from services.usage.ledger import Ledger
from tests.support.api import assert_money

UTC_ZONE = ZoneInfo('UTC')
BUDGET = BudgetContext(UTC_ZONE)
DAY_LIMIT = 8_000_000
HOUR = timedelta(hours=1)
NOW = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)  # a Wednesday
MIDNIGHT = NOW.replace(hour=0)


@pytest.fixture
def ledger(ledger: Ledger) -> Ledger:
    """The conftest ledger, on a database with a daily limit of $8."""
    with ledger.engine.begin() as conn:
        limits.set_limit(conn, 'day', DAY_LIMIT)
    return ledger


def hourly(start: datetime, end: datetime, micros: int) -> list[tuple[datetime, int]]:
    return [(start + HOUR * n, micros) for n in range(int((end - start) / HOUR))]


def day_only(hours: list[tuple[datetime, int]], now: datetime = NOW, limit: int | None = None,
             zone: ZoneInfo = UTC_ZONE, watch_recent: bool = True,
             recent: list[tuple[datetime, int, int]] | None = None) -> PeriodForecast:
    midnight = datetime.combine(now.astimezone(zone).date(), datetime.min.time(), tzinfo=zone)
    spent = sum(m for s, m in hours if midnight <= s < now)
    return project(hours, now, zone, {'day': spent}, {'day': limit}, ('day',), watch_recent, recent or ())['day']


def working_days(first: datetime, days: int, busy: int, quiet: int) -> list[tuple[datetime, int]]:
    """`days` days of `busy` micro-USD an hour from 08:00 to 18:00 and `quiet` an hour otherwise."""
    return [(first + HOUR * n, busy if 8 <= n % 24 < 18 else quiet) for n in range(24 * days)]


def so_far(minutes: list[int], midnight: datetime, now: datetime) -> list[tuple[datetime, int]]:
    """Hourly totals of a per-minute series up to `now`, the current hour as far as it goes (as read_hours reads
    the rollups)."""
    elapsed = int((now - midnight) / timedelta(minutes=1))
    return [(midnight + HOUR * h, sum(minutes[60 * h:min(60 * h + 60, elapsed)])) for h in range(elapsed // 60 + 1)
            if 60 * h < elapsed]


def slices(minutes: list[int], calls: list[int], midnight: datetime,
           now: datetime) -> list[tuple[datetime, int, int]]:
    """The 5-minute spend and calls of the RECENT_SPAN before `now` (as read_recent reads the events)."""
    elapsed = int((now - midnight) / timedelta(minutes=1))
    return [(midnight + timedelta(minutes=m), sum(minutes[m:m + 5]), sum(calls[m:m + 5]))
            for m in range(elapsed - RECENT_SPAN // timedelta(minutes=1), elapsed, 5) if m >= 0]


# --- the pure core ----------------------------------------------------------------------------------------------

def test_a_flat_rate_without_history_runs_out_when_the_arithmetic_says() -> None:
    # $0.50 an hour since midnight: $5 spent at 10:00, 14 h left at the same rate
    forecast = day_only(hourly(MIDNIGHT, NOW, 500_000), limit=8_000_000)
    assert forecast.method == 'trailing_rate'
    assert round(forecast.rate_per_hour) == 500_000
    assert forecast.projected == 5_000_000 + 14 * 500_000
    assert forecast.state == 'exhausts'
    assert forecast.eta == NOW.replace(hour=16)  # $3 left at $0.50 an hour
    assert forecast.text(UTC_ZONE) == 'Budget exhausted at ~16:00'
    assert forecast.low < forecast.projected < forecast.high  # no history: the fallback band


def test_a_flat_rate_with_a_flat_history_uses_the_profile_and_has_no_spread() -> None:
    hours = hourly(MIDNIGHT - timedelta(days=14), NOW, 500_000)
    forecast = day_only(hours, limit=8_000_000)
    assert forecast.method == 'profile_blend'
    assert forecast.projected == 12_000_000
    assert forecast.eta == NOW.replace(hour=16)
    assert forecast.low == forecast.projected == forecast.high  # every past day was predicted exactly


def test_a_profile_knows_the_evening_is_quiet() -> None:
    """$1 an hour from 08:00 to 18:00 every day: at 10:00 the rest of the day is 8 more busy hours, not 14."""
    hours = []
    for day in range(14, -1, -1):
        start = MIDNIGHT - timedelta(days=day)
        hours += [(start + HOUR * h, 1_000_000 if 8 <= h < 18 else 0) for h in range(24)]
    forecast = day_only(hours, limit=20_000_000)
    assert forecast.method == 'profile_blend'
    assert forecast.projected == 10_000_000
    assert forecast.state == 'holds'
    assert forecast.text(UTC_ZONE) == 'Holds until midnight: ~$10.00 of $20.00 projected'
    assert day_only(hours, limit=6_000_000).eta == NOW.replace(hour=14)  # $2 spent, $4 more at $1 an hour


def test_a_single_burst_does_not_become_the_rate() -> None:
    """The usual methods cap a burst; the recent-rate watch speaks while it lasts and is quiet once it is over."""
    hours = hourly(MIDNIGHT, NOW, 100_000)
    hours[9] = (hours[9][0], 3_000_000)  # one runaway hour just before now
    forecast = day_only(hours, limit=10_000_000, watch_recent=False)
    assert forecast.method == 'trailing_rate'
    assert forecast.rate_per_hour < 250_000  # the burst is capped at 2.5x the window's median rate
    spent = 9 * 100_000 + 3_000_000
    assert forecast.projected == spent + round(14 * forecast.rate_per_hour)  # the burst counts as spent, once
    assert forecast.state == 'holds'
    history = hourly(MIDNIGHT - timedelta(days=14), MIDNIGHT, 100_000)
    with_history = day_only(history + hours, limit=10_000_000, watch_recent=False)
    assert with_history.method == 'profile_blend'
    assert with_history.rate_per_hour < 200_000
    assert with_history.projected < spent + 14 * 200_000
    # $3.90 spent, two more hours at $3 make $9.90 at 12:00, and the usual pace after that crosses $10
    watched = day_only(history + hours, limit=10_000_000)
    assert (watched.method, watched.state, watched.rate_per_hour) == ('recent_rate', 'exhausts', 3_000_000)
    assert watched.text(UTC_ZONE) == 'Budget exhausted at ~12:50 if the pace of the last 30 min goes on'
    after = day_only(history + hours + [(NOW, 100_000)], NOW + HOUR, limit=10_000_000)
    assert (after.method, after.state) == ('profile_blend', 'holds')


def test_no_spend_holds_at_zero() -> None:
    forecast = day_only([], limit=5_000_000)
    assert (forecast.method, forecast.state, forecast.projected, forecast.eta) == ('none', 'holds', 0, None)
    assert (forecast.low, forecast.high) == (0, 0)
    assert forecast.text(UTC_ZONE) == 'Holds until midnight: ~$0.00 of $5.00 projected'
    assert day_only([], limit=None).text(UTC_ZONE) == '~$0.00 projected by midnight'


def test_a_budget_already_exceeded_has_no_eta_and_names_the_hour_it_was_crossed() -> None:
    forecast = day_only(hourly(MIDNIGHT, NOW, 1_000_000), limit=5_000_000)
    assert forecast.state == 'exceeded' and forecast.eta is None
    assert forecast.projected == 24_000_000
    assert forecast.text(UTC_ZONE) == 'Limit exceeded between 04:00 and 05:00: $10.00 of $5.00'
    assert forecast.as_dict(UTC_ZONE)['exceeded_at'] == NOW.replace(hour=4).isoformat()
    now = NOW.replace(minute=40)  # crossed in the current hour: up to now
    current = day_only([*hourly(MIDNIGHT, NOW, 400_000), (NOW, 1_500_000)], now, limit=5_000_000)
    assert current.text(UTC_ZONE) == 'Limit exceeded between 10:00 and 10:40: $5.50 of $5.00'
    # the reconciled spend is over the limit but the recorded calls are not: when is not known
    unknown = project(hourly(MIDNIGHT, NOW, 100_000), NOW, UTC_ZONE, {'day': 6_000_000}, {'day': 5_000_000},
                      ('day',))['day']
    assert (unknown.state, unknown.crossing, unknown.text(UTC_ZONE)) == ('exceeded', None,
                                                                        'Limit exceeded: $6.00 of $5.00')


def test_the_day_starts_at_local_midnight() -> None:
    """New York (UTC-5 in December): today starts at 05:00 UTC; spend before it is yesterday's."""
    zone = ZoneInfo('America/New_York')
    now = NOW.replace(hour=15)  # 10:00 local
    start = now.replace(hour=5)
    hours = [(start - HOUR, 9_000_000), *hourly(start, now, 500_000)]
    forecast = day_only(hours, now, 8_000_000, zone)
    assert forecast.span.start == start and forecast.span.end == start + timedelta(days=1)
    assert forecast.spent == 5_000_000 and forecast.projected == 12_000_000
    assert forecast.eta == now + 6 * HOUR
    assert forecast.text(zone) == 'Budget exhausted at ~16:00'  # local time


def test_week_and_month_add_the_usual_days_to_today() -> None:
    """$0.10 an hour for weeks: Wednesday 12:00 has 12 h of today and Thursday to Sunday left in the week."""
    now = NOW.replace(hour=12)
    hours = hourly(MIDNIGHT - timedelta(days=14), now, 100_000)
    week_start, month_start = MIDNIGHT - timedelta(days=2), MIDNIGHT.replace(day=1)
    spent = {'day': 1_200_000, 'week': sum(m for s, m in hours if s >= week_start),
             'month': sum(m for s, m in hours if s >= month_start)}
    forecasts = project(hours, now, UTC_ZONE, spent, {'day': None, 'week': 10_000_000, 'month': None})
    week, month = forecasts['week'], forecasts['month']
    assert spent['week'] == 6_000_000
    assert week.projected == 6_000_000 + 1_200_000 + 4 * 2_400_000
    assert week.state == 'exhausts'
    assert week.eta == datetime(2026, 12, 4, 4, 0, tzinfo=UTC)  # $2.80 left at midnight: 28 more hours
    assert week.text(UTC_ZONE) == 'Week budget exhausted on Fri 04 Dec ~04:00'
    assert week.method == 'profile_blend+daily_level'
    assert month.projected == 3_600_000 + 1_200_000 + 29 * 2_400_000
    assert (month.state, month.eta) == ('no_limit', None)
    assert month.text(UTC_ZONE) == '~$74.40 projected by the end of the month'


def test_weekends_are_projected_at_their_own_level() -> None:
    """Weekdays $2.40, weekend days $0.24: Friday noon's week outlook is half of Friday plus two quiet days."""
    now = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    first = now.replace(hour=0) - timedelta(days=14)
    hours = [(first + HOUR * n, 10_000 if (first + HOUR * n).weekday() >= 5 else 100_000)
             for n in range(int((now - first) / HOUR))]
    spent = {'day': 1_200_000, 'week': 4 * 2_400_000 + 1_200_000, 'month': 3 * 2_400_000 + 1_200_000}
    week = project(hours, now, UTC_ZONE, spent, {'day': None, 'week': None, 'month': None})['week']
    assert week.projected == spent['week'] + 1_200_000 + 2 * 240_000


def test_a_hot_afternoon_is_caught_by_the_recent_rate_well_before_the_limit() -> None:
    """Two quiet weeks ($0.20 an hour at work, $0.02 at night: $2.28 a day); today runs 20x hotter from 14:00.
    The profile alone keeps saying it holds; the recent rate says it runs out, about half an hour ahead."""
    history = working_days(MIDNIGHT - timedelta(days=14), 14, 200_000, 20_000)
    minutes = [m // 60 for _, m in working_days(MIDNIGHT, 1, 200_000, 20_000) for _ in range(60)]
    minutes[14 * 60:] = [4_000_000 // 60] * (10 * 60)  # $4 an hour from 14:00
    limit = 5_000_000
    crossing = next(n + 1 for n in range(len(minutes)) if sum(minutes[:n + 1]) >= limit)
    crossed_at = MIDNIGHT + timedelta(minutes=crossing)
    assert crossed_at == MIDNIGHT.replace(hour=14, minute=55)
    first_warning = profile_warning = None
    for now in (MIDNIGHT + timedelta(minutes=m) for m in range(5, crossing, 5)):
        hours = history + so_far(minutes, MIDNIGHT, now)
        watched = day_only(hours, now, limit)
        if day_only(hours, now, limit, watch_recent=False).state == 'exhausts' and profile_warning is None:
            profile_warning = now
        if watched.state == 'exhausts' and first_warning is None:
            first_warning = now
            assert watched.method == 'recent_rate' and watched.eta is not None
            assert watched.text(UTC_ZONE).endswith('if the pace of the last 30 min goes on')
            assert watched.rate_per_hour > 5 * 200_000
        if first_warning is not None:
            assert watched.state == 'exhausts', f'the warning stays until the crossing ({now:%H:%M})'
    assert first_warning is not None and crossed_at - first_warning >= timedelta(minutes=40)
    assert profile_warning is None or profile_warning - first_warning >= timedelta(minutes=20)
    after = day_only(history + so_far(minutes, MIDNIGHT, crossed_at), crossed_at, limit)
    assert after.state == 'exceeded'
    assert after.text(UTC_ZONE) == f'Limit exceeded between 14:00 and 14:55: {format_usd(after.spent)} of $5.00'


def first_warnings(change: datetime, limit: int) -> tuple[datetime | None, datetime | None, PeriodForecast | None]:
    """Two quiet weeks, then today 20x hotter from `change` ($4 an hour, two calls a minute; one call every 5 minutes
    before). Checked every 5 minutes: the first 'exhausts' with the 5-minute totals, and without them (whole hours),
    and the forecast of the first."""
    history = working_days(MIDNIGHT - timedelta(days=14), 14, 200_000, 20_000)
    usual = [m for _, m in working_days(MIDNIGHT, 1, 200_000, 20_000)]
    minutes = [usual[n // 60] // 60 for n in range(24 * 60)]
    calls = [1 if n % 5 == 0 else 0 for n in range(24 * 60)]
    at = int((change - MIDNIGHT) / timedelta(minutes=1))
    minutes[at:] = [4_000_000 // 60] * (24 * 60 - at)
    calls[at:] = [2] * (24 * 60 - at)
    fine = hourly = None
    forecast = None
    for now in (MIDNIGHT + timedelta(minutes=m) for m in range(5, 24 * 60, 5)):
        hours = history + so_far(minutes, MIDNIGHT, now)
        if day_only(hours, now, limit).state == 'exceeded':
            break
        with_slices = day_only(hours, now, limit, recent=slices(minutes, calls, MIDNIGHT, now))
        if with_slices.state == 'exhausts' and fine is None:
            fine, forecast = now, with_slices
        if day_only(hours, now, limit).state == 'exhausts' and hourly is None:
            hourly = now
    return fine, hourly, forecast


def test_a_change_within_the_hour_is_seen_within_minutes() -> None:
    """A loop makes the afternoon 20x hotter from 14:07 (limit $5: crossed at 15:02). The 5-minute totals show it
    at the second check after the change (14:15: 8 hot minutes in the last 10), read over the last 10 minutes.
    Early in an hour the current hour's spend so far is mostly the change, so whole hours see it as soon; from 14:47
    (crossed at 15:40) they spread it over the hour's minutes and warn 10 minutes later than the 5-minute totals."""
    fine, hourly, forecast = first_warnings(MIDNIGHT.replace(hour=14, minute=7), 5_000_000)
    assert fine == hourly == MIDNIGHT.replace(hour=14, minute=15)
    assert forecast is not None and forecast.method == 'recent_rate'
    assert forecast.text(UTC_ZONE).endswith('if the pace of the last 10 min goes on')
    fine, hourly, _ = first_warnings(MIDNIGHT.replace(hour=14, minute=47), 5_000_000)
    assert (fine, hourly) == (MIDNIGHT.replace(hour=14, minute=55), MIDNIGHT.replace(hour=15, minute=5))


def test_one_expensive_call_is_not_a_pace() -> None:
    """A $2 call at 09:58 is 60x the usual pace over the last 10 minutes, but a pace is read from several calls:
    the watch reads it from the hours (spread over the half hour) and the day holds. The same $2 over five calls
    in those minutes is read as a pace."""
    history = hourly(MIDNIGHT - timedelta(days=14), MIDNIGHT, 100_000)
    hours = hourly(MIDNIGHT, NOW, 100_000)
    hours[9] = (hours[9][0], 2_100_000)
    quiet = [(NOW - timedelta(minutes=60 - 5 * n), 100_000 if n == 6 else 0, 1 if n == 6 else 0) for n in range(11)]
    one_call = day_only(history + hours, limit=10_000_000, recent=[*quiet, (NOW - timedelta(minutes=5), 2_000_000, 1)])
    assert (one_call.state, one_call.method) == ('holds', 'profile_blend')  # the hours' pace ($2.10/h) holds too
    five_calls = day_only(history + hours, limit=10_000_000,
                          recent=[*quiet, (NOW - timedelta(minutes=5), 2_000_000, 5)])
    assert (five_calls.state, five_calls.method) == ('exhausts', 'recent_rate')
    assert round(five_calls.rate_per_hour) == 12_000_000  # $2 in the last 10 min
    assert five_calls.text(UTC_ZONE) == 'Budget exhausted at ~10:35 if the pace of the last 10 min goes on'


def test_a_smooth_ordinary_day_never_says_it_runs_out() -> None:
    """A usual day with some noise from hour to hour, checked every 15 minutes against a limit twice its size."""
    history = working_days(MIDNIGHT - timedelta(days=14), 14, 200_000, 20_000)
    wobble = (1.0, 1.3, 0.8, 1.1, 0.7, 1.2)
    minutes = [round(m * wobble[n // 60 % len(wobble)]) // 60
               for n, (_, m) in enumerate((s, m) for s, m in working_days(MIDNIGHT, 1, 200_000, 20_000)
                                          for _ in range(60))]
    for now in (MIDNIGHT + timedelta(minutes=m) for m in range(15, 24 * 60, 15)):
        forecast = day_only(history + so_far(minutes, MIDNIGHT, now), now, 4_560_000)
        assert (forecast.state, forecast.method) == ('holds', 'profile_blend'), f'{now:%H:%M}'


# --- through the database ---------------------------------------------------------------------------------------

def record_hourly(ledger: Ledger, start: datetime, end: datetime, usd: str) -> None:
    rows = [{'event_id': f'h-{n}-{start.isoformat()}', 'model': 'gpt-4o', 'provider': 'openai', 'cost_usd': usd,
             'ts': start + HOUR * n + timedelta(minutes=30)} for n in range(int((end - start) / HOUR))]
    ledger.record_batch(rows)


def test_budget_forecast_reads_the_ledger_and_reports_the_reconciled_spend(ledger: Ledger) -> None:
    record_hourly(ledger, MIDNIGHT - timedelta(days=2), NOW, '0.50')
    with ledger.engine.begin() as conn:
        limits.set_limit(conn, 'week', 60_000_000)
        forecast = budget_forecast(conn, BUDGET, NOW)
        summaries = {p: period_summary(conn, BUDGET, p, NOW) for p in ('day', 'week', 'month')}
    assert forecast['at'] == NOW.isoformat() and forecast['timezone'] == 'UTC'
    for period in ('day', 'week', 'month'):
        item = forecast[period]
        assert item['period'] == period
        assert (item['start'], item['end']) == (summaries[period]['start'], summaries[period]['end'])
        assert item['spent_micros'] == summaries[period]['spent_micros']
        for name in ('spent', 'projected', 'projected_low', 'projected_high'):
            assert_money(item, name)
        assert item['projected_low_micros'] <= item['projected_micros'] <= item['projected_high_micros']
    day = forecast['day']
    assert (day['spent_micros'], day['method'], day['state']) == (5_000_000, 'trailing_rate', 'exhausts')
    assert day['projected_micros'] == 12_000_000 and day['eta'] == NOW.replace(hour=16).isoformat()
    assert day['text'] == 'Budget exhausted at ~16:00'
    week = forecast['week']  # Monday, Tuesday and 10 h of Wednesday at $12 a day; the rest at $12 a day too
    assert week['spent_micros'] == 29_000_000 and week['projected_micros'] == 29_000_000 + 7_000_000 + 4 * 12_000_000
    assert week['state'] == 'exhausts' and week['limit_micros'] == 60_000_000
    assert forecast['month']['limit_micros'] is None and forecast['month']['state'] == 'no_limit'
    with ledger.engine.connect() as conn:
        day_only_forecast = day_forecast(conn, 5_000_000, 8_000_000, UTC_ZONE, NOW)
    assert day_only_forecast == day


def test_a_half_hour_zone_splits_the_boundary_hour(ledger: Ledger) -> None:
    """Kolkata (UTC+5:30): the day starts at 18:30 UTC; $3 at 18:15 UTC is yesterday's, $1 at 18:45 today's."""
    zone = ZoneInfo('Asia/Kolkata')
    now = datetime(2026, 12, 1, 19, 30, tzinfo=UTC)
    ledger.record({'model': 'gpt-4o', 'provider': 'openai', 'cost_usd': '3', 'ts': now.replace(hour=18, minute=15)})
    ledger.record({'model': 'gpt-4o', 'provider': 'openai', 'cost_usd': '1', 'ts': now.replace(hour=18, minute=45)})
    with ledger.engine.connect() as conn:
        hours = dict(read_hours(conn, now, zone))
        forecast = budget_forecast(conn, BudgetContext(zone), now)
    assert hours[now.replace(hour=18, minute=0)] == 3_000_000
    assert hours[now.replace(hour=18, minute=30)] == 1_000_000
    day = forecast['day']
    assert day['start'] == '2026-12-01T18:30:00+00:00' and day['spent_micros'] == 1_000_000
    assert day['method'] == 'trailing_rate'  # one past day with spend is no profile yet
    assert day['projected_low_micros'] >= 1_000_000


def record_crossing(ledger: Ledger) -> None:
    """$0.50 an hour until 10:00, then $1 at 11:05, $2.50 at 11:38 and $1 at 11:50: $8 is crossed at 11:38."""
    record_hourly(ledger, MIDNIGHT, NOW, '0.50')
    for minute, usd in ((5, '1.00'), (38, '2.50'), (50, '1.00')):
        ledger.record({'model': 'gpt-4o', 'provider': 'openai', 'cost_usd': usd,
                       'ts': NOW.replace(hour=11, minute=minute)})


def test_the_largest_amounts_are_forecast_without_overflow(ledger: Ledger) -> None:
    """Calls of the largest cost an event may carry, a few minutes before "now" (schemathesis found a 500 here).
    "Now" is yesterday's noon, so all four fall on its day whenever the test runs (just after midnight, the 40
    minutes ago of the real now were the day before)."""
    now = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0) - timedelta(days=1)
    for minutes in (3, 7, 11, 40):
        ledger.record({'model': 'gpt-4o', 'provider': 'openai', 'cost_usd': '1000000',  # the most one call may cost
                       'ts': (now - timedelta(minutes=minutes)).isoformat()})
    with ledger.engine.connect() as conn:
        forecast = budget_forecast(conn, BUDGET, now)
    assert (forecast['day']['state'], forecast['day']['spent_micros']) == ('exceeded', 4 * 10**12)


def test_an_exceeded_period_names_the_call_that_crossed_its_limit(ledger: Ledger) -> None:
    record_crossing(ledger)
    with ledger.engine.begin() as conn:
        limits.set_limit(conn, 'week', 9_000_000)
        forecast = budget_forecast(conn, BUDGET, NOW.replace(hour=12))
        dashboard = day_forecast(conn, 9_500_000, 8_000_000, UTC_ZONE, NOW.replace(hour=12))
    day, week = forecast['day'], forecast['week']
    assert (day['state'], day['eta']) == ('exceeded', None)
    assert day['text'] == 'Limit exceeded at 11:38: $9.50 of $8.00'
    assert day['exceeded_at'] == NOW.replace(hour=11, minute=38).isoformat()
    assert dashboard == day
    assert week['text'] == 'Week limit exceeded on Wed 02 Dec at 11:50: $9.50 of $9.00'
    assert forecast['month']['exceeded_at'] is None


# --- the API ----------------------------------------------------------------------------------------------------

def test_forecast_endpoint_shape(api: httpx.Client) -> None:
    response = api.get('/budget/forecast')
    assert response.status_code == 200, response.text
    body = response.json()
    assert body['timezone'] == 'UTC' and datetime.fromisoformat(body['at'])
    summaries = {p: api.get('/budget/summary', params={'period': p}).json() for p in ('day', 'week', 'month')}
    for period in ('day', 'week', 'month'):
        item = body[period]
        assert item['period'] == period and item['start'] == summaries[period]['start']
        assert item['spent_micros'] == summaries[period]['spent_micros']
        for name in ('spent', 'projected', 'projected_low', 'projected_high'):
            assert_money(item, name)
        assert item['state'] in ('no_limit', 'exceeded', 'exhausts', 'holds')
        assert item['method'] and item['text']
        assert item['eta'] is None or datetime.fromisoformat(item['eta']) < datetime.fromisoformat(item['end'])
    assert all(body[p]['limit_micros'] is None and body[p]['state'] == 'no_limit' for p in body if p in summaries), \
        'the shared server has no limit'


# --- the forecast_exhaustion alert ------------------------------------------------------------------------------

def test_the_exhaustion_alert_fires_once_per_period(ledger: Ledger, engine: Engine, hub: EventHub) -> None:
    published: list[LiveEvent] = []
    hub.subscribe(published.append)
    record_hourly(ledger, MIDNIGHT, NOW, '0.50')
    published.clear()
    first = run_exhaustion_check(engine, hub, BUDGET, NOW)
    again = run_exhaustion_check(engine, hub, BUDGET, NOW + timedelta(minutes=5))
    assert len(first) == 1 and again == []
    alert = first[0]
    assert (alert['type'], alert['severity']) == ('forecast_exhaustion', 'warning')
    assert alert['dedupe_key'] == f'forecast_exhaustion:day:{MIDNIGHT.isoformat()}'
    assert alert['message'].startswith('Budget exhausted at ~16:00: $5.00 spent, ~$12.00 of $8.00 projected')
    assert alert['data']['eta'] == NOW.replace(hour=16).isoformat()
    assert [e.topic for e in published].count(Topic.ALERT_RAISED) == 1
    with engine.begin() as conn:
        [stored] = alerts.list_alerts(conn, 'open', 'forecast_exhaustion')
        assert stored['count'] == 2
        alerts.resolve(conn, stored['id'], NOW + timedelta(minutes=6))
    record_hourly(ledger, NOW, NOW + 2 * HOUR, '0.50')
    with engine.begin() as conn:
        # resolved by hand: not again this day, even after the usual one-hour cooldown
        assert check_exhaustion(conn, BUDGET, NOW + timedelta(hours=2)) == [(None, False)]
    tomorrow = MIDNIGHT + timedelta(days=1)
    record_hourly(ledger, tomorrow, tomorrow + 10 * HOUR, '0.50')
    nxt = run_exhaustion_check(engine, hub, BUDGET, tomorrow + 10 * HOUR)
    assert [a['dedupe_key'] for a in nxt] == [f'forecast_exhaustion:day:{tomorrow.isoformat()}']


def test_no_alert_while_the_budget_holds_and_an_ended_period_is_resolved(ledger: Ledger, engine: Engine,
                                                                         hub: EventHub) -> None:
    record_hourly(ledger, MIDNIGHT, NOW, '0.10')
    assert run_exhaustion_check(engine, hub, BUDGET, NOW) == []
    with engine.begin() as conn:
        limits.set_limit(conn, 'month', 10_000_000)  # $1 so far, ~$2.40 a day from here: the month runs out
        [(month, is_new)] = check_exhaustion(conn, BUDGET, NOW)
        assert is_new and month is not None and month['data']['period'] == 'month'
        check_exhaustion(conn, BUDGET, datetime(2027, 1, 1, 1, 0, tzinfo=UTC))
        assert alerts.get_alert(conn, month['id'])['open'] is False


def test_the_exhaustion_alert_hands_over_to_the_limit_once_it_is_crossed(ledger: Ledger, engine: Engine,
                                                                          hub: EventHub) -> None:
    record_hourly(ledger, MIDNIGHT, NOW, '0.50')
    [warning] = run_exhaustion_check(engine, hub, BUDGET, NOW)  # $8 runs out at ~16:00
    record_crossing(ledger)
    later = NOW.replace(hour=12)
    assert run_exhaustion_check(engine, hub, BUDGET, later) == []
    with engine.connect() as conn:
        resolved = alerts.get_alert(conn, warning['id'])
        assert alerts.list_alerts(conn, 'open', 'forecast_exhaustion') == []
    assert not resolved['open'] and resolved['resolved_at'] == later.isoformat()
    assert resolved['message'] == ('Limit exceeded at 11:38: $9.50 of $8.00. The day limit is crossed: the '
                                   'limit_exceeded alert takes over from this forecast')
    data = resolved['data']
    assert (data['state'], data['exceeded_at']) == ('exceeded', NOW.replace(hour=11, minute=38).isoformat())
    assert (data['spent_micros'], data['limit_micros']) == (9_500_000, 8_000_000)
    assert data['eta'] == NOW.replace(hour=16).isoformat()  # what it had warned of stays


@pytest.mark.parametrize('zone', ['America/New_York', 'Asia/Kolkata'])
def test_read_hours_is_one_hourly_series_up_to_the_current_hour(ledger: Ledger, zone: str) -> None:
    now = NOW + timedelta(minutes=20)
    with ledger.engine.connect() as conn:
        hours = read_hours(conn, now, ZoneInfo(zone))
    starts = [s for s, _ in hours]
    assert starts == sorted(starts) and starts[-1] <= now < starts[-1] + HOUR
    assert timedelta(days=14) < now - starts[0] < timedelta(days=15) + HOUR  # 14 whole local days and today


def test_read_recent_is_the_last_half_hours_five_minute_spend_and_calls_in_one_query(ledger: Ledger) -> None:
    now = NOW + timedelta(minutes=20)
    for at, usd in ((now - timedelta(minutes=31), '9'), (now - timedelta(minutes=30), '2'),
                    (now - timedelta(minutes=26), '3'), (now - timedelta(seconds=1), '4'), (now, '8')):
        ledger.record({'model': 'gpt-4o', 'provider': 'openai', 'cost_usd': usd, 'ts': at})
    statements: list[str] = []

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    event.listen(ledger.engine, 'before_cursor_execute', count)
    try:
        with ledger.engine.connect() as conn:
            recent = read_recent(conn, now)
    finally:
        event.remove(ledger.engine, 'before_cursor_execute', count)
    assert len(statements) == 1
    assert [start for start, *_ in recent] == [now - timedelta(minutes=30 - 5 * n) for n in range(6)]
    spend = {start: (micros, calls) for start, micros, calls in recent if calls}
    assert spend == {now - timedelta(minutes=30): (5_000_000, 2),
                     now - timedelta(minutes=5): (4_000_000, 1)}  # 31 min ago and `now` itself are outside


def test_the_dashboard_forecast_reads_a_pace_of_the_last_minutes(ledger: Ledger) -> None:
    """$0.50 an hour (one call at :30), then six $0.25 calls in the last 10 minutes: $9 an hour, read from the
    events; the last $1.50 of the $8 limit goes in 10 minutes."""
    record_hourly(ledger, MIDNIGHT, NOW, '0.50')
    for n in range(6):  # 09:51, 09:52:30, ..., 09:58:30
        ledger.record({'model': 'gpt-4o', 'provider': 'openai', 'cost_usd': '0.25',
                       'ts': NOW - timedelta(minutes=9) + n * timedelta(seconds=90)})
    with ledger.engine.connect() as conn:
        day = day_forecast(conn, 6_500_000, DAY_LIMIT, UTC_ZONE, NOW)
    assert (day['state'], day['method'], day['rate_per_hour_micros']) == ('exhausts', 'recent_rate', 9_000_000)
    assert day['eta'] == NOW.replace(minute=10).isoformat()
    assert day['text'] == 'Budget exhausted at ~10:10 if the pace of the last 10 min goes on'
