"""Forecast backtest: the mean absolute error of the projected end-of-day spend at 10:00, 14:00 and 18:00 local,
beside two naive baselines (linear extrapolation of today so far; yesterday's total).

    .venv/bin/python bench/forecast.py [--days 31] [--seed 7] [--tz Europe/Berlin] [--db data/spendgauge.db]

Generated month (the default): a seeded RNG draws LLM calls hour by hour from a daily profile with a working-hours
peak and a lunch dip, weekday and weekend levels, multiplicative noise per day and per hour (busy hours cluster:
AR(1) log-noise), and a few broken
loops (one to three hours at 6-12x the usual rate). With --db the hourly totals of a recorded SQLite database are
replayed instead (its rollups, over the days that hold spend).

Replay: for every day and each check hour, the forecast core the API serves (`services.forecast.project`) sees
only the hours before that moment. Days with fewer than MIN_HISTORY_DAYS past days with spend (no profile yet)
are reported separately. Target: below both baselines at each hour.
"""
from __future__ import annotations

import argparse
import math
import random
import sys
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from services.core.periods import hour_floor  # noqa: E402
from services.insights.forecast import MIN_HISTORY_DAYS, project  # noqa: E402

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


def generate(days: int, seed: int, zone: ZoneInfo, first: date = FIRST_DAY) -> tuple[date, dict[datetime, int]]:
    """Hourly totals (UTC hour start -> micro-USD) of `days` local days of simulated calls from `first`."""
    rng = random.Random(seed)
    scale = WEEKDAY_DAILY_USD / sum(SHAPE)
    loops = {rng.randrange(days * 24) for _ in range(LOOPS_PER_MONTH * days // 30)}
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
        calls = _poisson(rng, expected / MEAN_CALL_USD)
        hours[t] = sum(round(rng.expovariate(1 / MEAN_CALL_USD) * 1_000_000) for _ in range(calls))
        t += HOUR
        index += 1
    return first, hours


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--days', type=int, default=30)
    parser.add_argument('--seed', type=int, default=7)
    parser.add_argument('--tz', default='Europe/Berlin')
    parser.add_argument('--db', type=Path, help='replay the hourly totals of a recorded SQLite database')
    args = parser.parse_args()
    zone = ZoneInfo(args.tz)
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
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
