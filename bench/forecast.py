"""Forecast backtest, two parts.

    .venv/bin/python bench/forecast.py [--part all|mae|regimes] [--days 31] [--seed 7] [--tz Europe/Berlin]
                                       [--db data/spendgauge.db] [--seeds 4] [--step 5]

MAE: the mean absolute error of the projected end-of-day spend at 10:00, 14:00 and 18:00 local, beside two naive
baselines (linear extrapolation of today so far; yesterday's total). Generated month (the default): a seeded RNG
draws LLM calls hour by hour from a daily profile with a working-hours peak and a lunch dip, weekday and weekend
levels, multiplicative noise per day and per hour (busy hours cluster: AR(1) log-noise), and a few broken loops (one
to three hours at 6-12x the usual rate). With --db the hourly totals of a recorded SQLite database are replayed
instead (its rollups, over the days that hold spend). For every day and each check hour, the forecast core the API
serves (`services.insights.forecast.project`) sees only the hours before that moment. Days with fewer than
MIN_HISTORY_DAYS past days with spend (no profile yet) are reported separately. Target: below both baselines.

Regime changes: does the day forecast warn before the daily limit is crossed? Per seed, 14 quiet days (the same
generator without loops), then ordinary weekdays drawn minute by minute (calls and their cost), each also replayed
running 10-50x hotter from a random minute of several hours until midnight, and with a one-hour 10x burst. The limit
($10, 2.5x a usual weekday) holds on ordinary days; hot days cross it. Every --step minutes (the alert check runs
every 5) `project` gets what `read_hours` and `read_recent` would serve (whole hours, the current hour so far; the
5-minute spend and calls of the last hour) and answers three ways: the profile alone (`watch_recent=False`, as
before the watch), the watch over whole hours (no 5-minute totals, as before them) and the watch with them.
Reported: the lead time from the first "exhausts" at or after the change to the crossing, beside a perfect warning
at the minute of the change and one at the first check after it (the best a forecast fed every 5 minutes can do);
crossings less than 15 min after the change apart (no method can warn 15 min ahead of those); and the share of days
that held but said "exhausts" at some point, bursts split by whether their pace, had it gone on until midnight,
would have crossed the limit. Goal: median lead >= 60 min, none under 15.
"""
from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from services.core.display import format_usd  # noqa: E402
from services.core.periods import hour_floor  # noqa: E402
from services.insights.forecast import MIN_HISTORY_DAYS, RECENT_SPAN, project  # noqa: E402

CHECK_HOURS = (10, 14, 18)
HOUR = timedelta(hours=1)
# Relative spend per local hour on a working day: night trickle (batch jobs), a morning ramp, lunch dip, evening.
SHAPE = [0.12, 0.1, 0.1, 0.1, 0.1, 0.12, 0.2, 0.35, 0.7, 1.0, 1.0, 0.95, 0.6, 0.75, 1.0, 1.0, 0.9, 0.7, 0.45,
         0.3, 0.25, 0.2, 0.15, 0.12]
WEEKDAY_DAILY_USD = 4.0
WEEKEND_FACTOR = 0.3
DAY_NOISE, HOUR_NOISE = 0.25, 0.35  # sigma of the log-normal factors
PERSISTENCE = 0.5  # busy hours cluster: the hourly log-noise is AR(1) with this coefficient
MEAN_CALL_USD = 0.02
LOOPS_PER_MONTH = 5
FIRST_DAY = date(2026, 11, 1)  # a fixed month, so a seed always gives the same figures


def generate(days: int, seed: int, zone: ZoneInfo, first: date = FIRST_DAY,
             loops_per_month: int = LOOPS_PER_MONTH) -> tuple[date, dict[datetime, int]]:
    """Hourly totals (UTC hour start -> micro-USD) of `days` local days of simulated calls from `first`."""
    rng = random.Random(seed)
    scale = WEEKDAY_DAILY_USD / sum(SHAPE)
    loops = {rng.randrange(days * 24) for _ in range(loops_per_month * days // 30)}
    hours: dict[datetime, int] = {}
    loop_left, loop_factor = 0, 1.0
    start = datetime.combine(first, time(0), tzinfo=zone).astimezone(UTC)
    end = datetime.combine(first + timedelta(days=days), time(0), tzinfo=zone).astimezone(UTC)
    day_factor, day_seen, noise = 1.0, None, 0.0
    index, t = 0, start
    while t < end:
        local = t.astimezone(zone)
        if local.date() != day_seen:
            day_seen = local.date()
            day_factor = rng.lognormvariate(0, DAY_NOISE) * (WEEKEND_FACTOR if local.weekday() >= 5 else 1.0)
        if index in loops:
            loop_left, loop_factor = rng.randint(1, 3), rng.uniform(6, 12)
        noise = PERSISTENCE * noise + math.sqrt(1 - PERSISTENCE ** 2) * rng.gauss(0, HOUR_NOISE)
        expected = scale * SHAPE[local.hour] * day_factor * math.exp(noise - HOUR_NOISE ** 2 / 2)
        if loop_left:
            expected *= loop_factor
            loop_left -= 1
        hours[t] = _calls_cost(rng, expected)
        t += HOUR
        index += 1
    return first, hours


def _calls_cost(rng: random.Random, usd: float) -> int:
    """Micro-USD of the calls drawn for an expected spend of `usd`."""
    return _calls(rng, usd)[0]


def _calls(rng: random.Random, usd: float) -> tuple[int, int]:
    """Micro-USD and number of the calls drawn for an expected spend of `usd`."""
    count = _poisson(rng, usd / MEAN_CALL_USD)
    return sum(round(rng.expovariate(1 / MEAN_CALL_USD) * 1_000_000) for _ in range(count)), count


def _poisson(rng: random.Random, mean: float) -> int:
    if mean > 50:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def recorded(path: Path, zone: ZoneInfo) -> tuple[date, dict[datetime, int]]:
    """Hourly totals of a recorded SQLite database, over the local days from its first to its last spend."""
    from sqlalchemy import func, select

    from services.core.db import create_db_engine
    from services.core.periods import as_utc
    from services.spend.rollups import totals_between
    from services.usage.ledger import ROLLUPS

    engine = create_db_engine(f'sqlite:///{path}')
    with engine.connect() as conn:
        low, high = conn.execute(select(func.min(ROLLUPS.c.hour), func.max(ROLLUPS.c.hour))).one()
        if low is None:
            raise SystemExit(f'{path}: no spend recorded')
        first = as_utc(low).astimezone(zone).date()
        last = as_utc(high).astimezone(zone).date()
        start = hour_floor(datetime.combine(first, time(0), tzinfo=zone).astimezone(UTC))
        end = datetime.combine(last + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)
        edges = [start + HOUR * n for n in range(int((end - start) / HOUR) + 1)]
        buckets = totals_between(conn, edges)
    return first, {edges[n]: buckets.total(n).cost_micros for n in range(len(edges) - 1)}


def replay(first: date, hours: dict[datetime, int], zone: ZoneInfo) -> dict[str, dict[str, list[float]]]:
    """Absolute errors (USD) per group ('history', 'warm-up') and method per check hour."""
    series = sorted(hours.items())
    totals: dict[date, int] = {}
    for start, micros in series:
        day = start.astimezone(zone).date()
        totals[day] = totals.get(day, 0) + micros
    days = sorted(totals)
    errors: dict[str, dict[str, list[float]]] = {}
    for day in days[1:]:
        actual = totals[day]
        yesterday = totals.get(day - timedelta(days=1), 0)
        active_before = sum(1 for d in days if day - timedelta(days=14) <= d < day and totals[d] > 0)
        group = 'history' if active_before >= MIN_HISTORY_DAYS else 'warm-up'
        midnight = datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)
        for check in CHECK_HOURS:
            now = datetime.combine(day, time(check), tzinfo=zone).astimezone(UTC)
            seen = [(s, m) for s, m in series if s < now and s >= now - timedelta(days=16)]
            spent = sum(m for s, m in seen if s >= midnight)
            forecast = project(seen, now, zone, {'day': spent}, {'day': None}, ('day',))['day']
            elapsed = (now - midnight) / HOUR
            linear = spent * 24 / elapsed
            table = errors.setdefault(group, {})
            for name, value in (('forecast', forecast.projected), ('linear', linear), ('yesterday', yesterday)):
                table.setdefault(f'{name}:{check}', []).append(abs(value - actual) / 1_000_000)
            inside = forecast.low <= actual <= forecast.high
            table.setdefault(f'band:{check}', []).append(1.0 if inside else 0.0)
    return errors


# --- regime changes: does the day forecast warn before the limit is crossed? --------------------------------------

REGIME_FIRST = date(2026, 11, 2)  # a Monday: 14 quiet days of history, then the replayed day, a Monday too
REGIME_HISTORY_DAYS = 14
DAY_LIMIT = 10_000_000  # 2.5x a usual weekday: ordinary days hold, a day that runs hot for long enough crosses it
CHANGE_HOURS = (8, 10, 12, 14, 16)
MULTIPLIERS = (10, 20, 30, 50)
BURST_HOURS = (9, 11, 13, 15, 17)
BURST_MULTIPLIER = 10
DAY_DRAWS = 3  # ordinary days per seed; each hot or burst day is one of them from its change on
MINUTES = 24 * 60
MINUTE = timedelta(minutes=1)
GOAL_MEDIAN, GOAL_MIN = timedelta(minutes=60), timedelta(minutes=15)
STEP = timedelta(minutes=5)  # RECENT_STEP: the slices read_recent serves
# project(watch_recent=..., recent=...): the profile alone; the watch over whole hours (as before the slices); the
# watch with the 5-min slices of the last hour
METHODS = {'baseline': (False, False), 'hourly': (True, False), 'watch': (True, True)}


@dataclass
class Day:
    kind: str  # ordinary, hot, burst
    history: list[tuple[datetime, int]]
    midnight: datetime  # UTC
    minutes: list[int]  # micro-USD spent in each minute of the local day
    calls: list[int]  # calls made in each minute
    rates: list[float]  # the expected USD per minute of the ordinary day
    change: int = 0  # the minute the hot spell or burst starts
    multiplier: float = 1.0
    said: dict[str, list[tuple[int, str]]] = field(default_factory=dict)  # method -> (minute, state) per replay step

    def crossing(self) -> int | None:
        """The minute (its end) at which the day's spend reached the limit."""
        total = 0
        for minute, micros in enumerate(self.minutes):
            total += micros
            if total >= DAY_LIMIT:
                return minute + 1
        return None

    def would_cross(self) -> bool:
        """A burst: would the day have crossed the limit had the burst's pace gone on until midnight (expected
        spend)? Then a warning while it lasts was right about the pace, if not about the day."""
        expected = sum(self.rates[self.change:]) * self.multiplier * 1_000_000
        return sum(self.minutes[:self.change]) + expected >= DAY_LIMIT


def minute_rates(rng: random.Random) -> list[float]:
    """Expected USD per minute of an ordinary weekday, drawn like `generate` draws its hours (without loops)."""
    scale = WEEKDAY_DAILY_USD / sum(SHAPE)
    day_factor, noise, rates = rng.lognormvariate(0, DAY_NOISE), 0.0, []
    for hour in range(24):
        noise = PERSISTENCE * noise + math.sqrt(1 - PERSISTENCE ** 2) * rng.gauss(0, HOUR_NOISE)
        rates += [scale * SHAPE[hour] * day_factor * math.exp(noise - HOUR_NOISE ** 2 / 2) / 60] * 60
    return rates


def regime_days(seeds: int, zone: ZoneInfo) -> list[Day]:
    """Per seed: a quiet history and DAY_DRAWS ordinary days after it, each also run hot (every change hour and
    multiplier, until midnight) and with a one-hour burst (every burst hour)."""
    days = []
    test_day = REGIME_FIRST + timedelta(days=REGIME_HISTORY_DAYS)
    midnight = datetime.combine(test_day, time(0), tzinfo=zone).astimezone(UTC)
    for seed in range(1, seeds + 1):
        _, hours = generate(REGIME_HISTORY_DAYS, seed, zone, REGIME_FIRST, loops_per_month=0)
        history = sorted(hours.items())
        for draw in range(DAY_DRAWS):
            rng = random.Random(f'{seed}-{draw}')
            rates = minute_rates(rng)
            base = [_calls(rng, r) for r in rates]
            days.append(Day('ordinary', history, midnight, [c for c, _ in base], [n for _, n in base], rates))
            variants = [('hot', 60 * h + rng.randrange(60), MINUTES, m) for h in CHANGE_HOURS for m in MULTIPLIERS]
            variants += [('burst', 60 * h + rng.randrange(60), 60 * h + 60, BURST_MULTIPLIER) for h in BURST_HOURS]
            for kind, start, end, multiplier in variants:
                drawn = [*base[:start], *(_calls(rng, r * multiplier) for r in rates[start:end]), *base[end:]]
                days.append(Day(kind, history, midnight, [c for c, _ in drawn], [n for _, n in drawn], rates, start,
                                multiplier))
    return days


def replay_regime(day: Day, step: int, zone: ZoneInfo, before: Day | None) -> None:
    """The day forecast every `step` minutes until the limit is crossed or the day ends, with and without the
    watch. A variant starts from its ordinary day's answers up to its change (the data is the same until then)."""
    prefix, calls = [0], [0]
    for micros, count in zip(day.minutes, day.calls, strict=True):
        prefix.append(prefix[-1] + micros)
        calls.append(calls[-1] + count)
    step_m = STEP // MINUTE
    span_m = RECENT_SPAN // MINUTE
    for method in METHODS:
        day.said[method] = [(m, s) for m, s in before.said[method] if m <= day.change] if before else []
    first = step * (day.change // step + 1) if before else step
    for minute in range(first, MINUTES, step):
        spent = prefix[minute]
        if spent >= DAY_LIMIT:
            return
        now = day.midnight + timedelta(minutes=minute)
        today = [(day.midnight + HOUR * h, prefix[min(60 * h + 60, minute)] - prefix[60 * h])
                 for h in range(minute // 60 + 1)]
        # what read_recent would serve: the 5-min slices of the RECENT_SPAN ending now (from midnight on: the bench
        # has no minutes of the day before, and the watch reads the hours where the slices do not reach)
        recent = [(now - MINUTE * (minute - s), prefix[s + step_m] - prefix[s], calls[s + step_m] - calls[s])
                  for s in range(minute - span_m, minute, step_m) if s >= 0]
        for method, (watch, fine) in METHODS.items():
            forecast = project([*day.history, *today], now, zone, {'day': spent}, {'day': DAY_LIMIT}, ('day',),
                               watch_recent=watch, recent=recent if fine else ())['day']
            day.said[method].append((minute, forecast.state))


def _lead(day: Day, method: str, crossing: int, step: int) -> int:
    """Minutes from the first 'exhausts' at or after the change to the crossing; 0 when it never warned. 'perfect'
    is a method that would know at the very minute of the change, 'next' one that would know at the first check
    that has seen a minute of it (the best any forecast can do from the data it is given)."""
    if method == 'perfect':
        return crossing - day.change
    if method == 'next':
        return crossing - step * (day.change // step + 1)
    warned = [m for m, state in day.said[method] if state == 'exhausts' and m >= day.change]
    return crossing - warned[0] if warned else 0


def _alarm_share(days: list[Day], method: str) -> str:
    if method in ('perfect', 'next') or not days:
        return '-'
    return f'{100 * sum(any(s == "exhausts" for _, s in d.said[method]) for d in days) / len(days):.0f} %'


def _spread(values: list[int]) -> str:
    return f'{statistics.median(values):.0f} / {min(values)} / {max(values)}' if values else '-'


def report_regimes(days: list[Day], step: int) -> bool:
    """Print the lead times and false alarms, beside the profile alone and a perfect warning; True when the
    goals are met."""
    columns = ('perfect', 'next', *METHODS)
    crossed = [(d, c) for d in days if (c := d.crossing()) is not None]
    fast = [(d, c) for d, c in crossed if c - d.change < GOAL_MIN / MINUTE]
    slow = [(d, c) for d, c in crossed if c - d.change >= GOAL_MIN / MINUTE]
    held = [d for d in days if d.crossing() is None]

    def leads(group: list[tuple[Day, int]], method: str) -> list[int]:
        return [_lead(d, method, c, step) for d, c in group]

    rows = [(f'crossed >= 15 min after the change ({len(slow)}): lead median / min / max',
             [_spread(leads(slow, m)) for m in columns]),
            ('  warned >= 60 min ahead', [f'{sum(v >= 60 for v in leads(slow, m))}' for m in columns]),
            ('  warned < 15 min ahead or not at all', [f'{sum(v < 15 for v in leads(slow, m))}' for m in columns])]
    for multiplier in MULTIPLIERS:
        group = [(d, c) for d, c in slow if d.kind == 'hot' and d.multiplier == multiplier]
        rows.append((f'  {multiplier}x hotter ({len(group)})', [_spread(leads(group, m)) for m in columns]))
    rows.append((f'crossed < 15 min after the change ({len(fast)})', [_spread(leads(fast, m)) for m in columns]))
    bursts = [d for d in held if d.kind == 'burst']
    for label, same in (('ordinary days', [d for d in held if d.kind == 'ordinary']),
                        (f'days with a one-hour {BURST_MULTIPLIER}x burst', bursts),
                        ('  whose pace, had it gone on, would have crossed', [d for d in bursts if d.would_cross()]),
                        ('  whose pace would have held too', [d for d in bursts if not d.would_cross()]),
                        ('hot days that still held', [d for d in held if d.kind == 'hot'])):
        indent = '' if label.startswith(' ') else 'held, '
        rows.append((f'{indent}{label} ({len(same)}): said "exhausts"', [_alarm_share(same, m) for m in columns]))
    print(f'\nRegime changes: {len(days)} replayed days ({DAY_DRAWS} ordinary weekdays per seed, each also run hot'
          f' from {len(CHANGE_HOURS)} hours at {len(MULTIPLIERS)} multipliers and with a one-hour burst at'
          f' {len(BURST_HOURS)} hours) after 14 quiet days, limit {format_usd(DAY_LIMIT)} a day, the day forecast every'
          f' {step} min. Lead: minutes from the first "exhausts" at or after the change to the crossing; "perfect"'
          f' warns at the minute of the change, "next check" at the first check after it.')
    width = max(len(label) for label, _ in rows)
    headers = ('perfect', 'next check', 'profile alone', 'hourly watch', '5-min watch')
    print(f'\n{"":<{width}}' + ''.join(f'  {h:>15}' for h in headers))
    for label, values in rows:
        print(f'{label:<{width}}' + ''.join(f'  {v:>15}' for v in values))
    late = sorted((c - d.change, _lead(d, 'next', c, step)) for d, c in slow
                  if _lead(d, 'watch', c, step) < 15)
    if late:
        print(f'\nwith the 5-min watch, warned < 15 min ahead on {len(late)} days; they crossed '
              f'{", ".join(str(a) for a, _ in late)} min after the change (a warning at the first check after the '
              f'change: {", ".join(str(n) for _, n in late)} min ahead)')
    watched = leads(slow, 'watch')
    ok = bool(watched) and statistics.median(watched) >= 60 and min(watched) >= 15
    print(f'\ngoal (crossed >= 15 min after the change: median lead >= 60 min, none under 15): '
          f'{"met" if ok else "MISSED"}')
    return ok


def report_errors(args: argparse.Namespace, zone: ZoneInfo) -> bool:
    first, hours = recorded(args.db, zone) if args.db else generate(args.days, args.seed, zone)
    errors = replay(first, hours, zone)
    source = str(args.db) if args.db else f'generated, {args.days} days, seed {args.seed}'
    print(f'Forecast backtest ({source}, {args.tz}): MAE of the projected end-of-day spend, USD')
    ok = True
    for group in ('history', 'warm-up'):
        table = errors.get(group)
        if not table:
            continue
        count = len(table[f'forecast:{CHECK_HOURS[0]}'])
        print(f'\n{group} ({count} days)')
        print(f'{"at":>6} {"forecast":>9} {"linear":>9} {"yesterday":>9} {"vs linear":>10} {"vs yest.":>9} '
              f'{"in band":>8}')
        for check in CHECK_HOURS:
            mae = {n: sum(table[f'{n}:{check}']) / count for n in ('forecast', 'linear', 'yesterday')}
            coverage = 100 * sum(table[f'band:{check}']) / count
            print(f'{check:>4}:00 {mae["forecast"]:>9.3f} {mae["linear"]:>9.3f} {mae["yesterday"]:>9.3f} '
                  f'{mae["forecast"] / mae["linear"]:>10.2f} {mae["forecast"] / mae["yesterday"]:>9.2f} '
                  f'{coverage:>7.0f}%')
            if group == 'history':
                ok &= mae['forecast'] < min(mae['linear'], mae['yesterday'])
    print(f'\ntarget (with history, below both baselines at every hour): {"met" if ok else "MISSED"}')
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--days', type=int, default=30)
    parser.add_argument('--seed', type=int, default=7)
    parser.add_argument('--tz', default='Europe/Berlin')
    parser.add_argument('--db', type=Path, help='replay the hourly totals of a recorded SQLite database')
    parser.add_argument('--part', choices=('all', 'mae', 'regimes'), default='all')
    parser.add_argument('--seeds', type=int, default=4, help='regime changes: seeds of quiet history')
    parser.add_argument('--step', type=int, default=5, help='regime changes: minutes between replayed forecasts')
    args = parser.parse_args()
    zone = ZoneInfo(args.tz)
    ok = True
    if args.part in ('all', 'mae'):
        ok &= report_errors(args, zone)
    if args.part in ('all', 'regimes'):
        days = regime_days(args.seeds, zone)
        ordinary: Day | None = None
        for day in days:
            ordinary = day if day.kind == 'ordinary' else ordinary
            replay_regime(day, args.step, zone, None if day is ordinary else ordinary)
        ok &= report_regimes(days, args.step)
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
