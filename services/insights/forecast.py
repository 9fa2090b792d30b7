"""When does the budget run out? Today's burn rate blended with the time-of-day profile of the past two weeks,
projected to the end of the day, the week and the month.

The core (`project`) is pure: hourly spend and the 5-minute totals of the last hour in, forecast out, so the
backtest (bench/forecast.py) replays the same function the API serves. The DB layer reads the hourly totals with
one `totals_between` call over hourly edges (the current hour from its rollup so far), the last hour's 5-minute
spend and call counts with one query over the events' ts index (`read_recent`: a row per slice), and events once more
only to pin an exceeded limit to the call that crossed it (`pin_crossing`, one hour's events).

Method, per day:
- 'none': no spend today and too little history: nothing more is projected.
- 'trailing_rate': no usable history (fewer than MIN_HISTORY_DAYS days with spend). The rate is an exponentially
  decayed mean over the last WINDOW_H hours (half-life HALF_LIFE_H), each hour capped at BURST_MULT x the
  window's median rate (or today's mean rate without its largest hour, when higher), so one burst does not
  become the rate.
- 'profile_blend': the per-local-hour profile of the past days of the same kind (weekday or weekend; a trimmed
  mean across days, so a past burst does not shape it), scaled to today's level. The level blends today's
  ratio actual/profile so far (shrunk towards 1 by a prior of PRIOR_WEIGHT x a profile day) with the decayed
  trailing ratio over the last hours (the trailing rate, relative to the profile). Bursts are capped as above.
- 'recent_rate': a watch over the methods above, for when today changes pace faster than they follow. The recent
  rate is the highest pace over the last 10, 15, 20 and 30 minutes (RECENT_WINDOWS) read from the 5-minute
  totals, counting only windows with at least RECENT_MIN_CALLS calls; without them (or with too few calls), the
  spend of the last RECENT_WINDOW read from the hours (the current hour's spend so far spread over its minutes,
  plus the part of the hour before inside the window). It is assumed to go on for RECENT_HORIZON before the usual
  projection resumes. When that runs a period out sooner than the usual method (or the usual method holds), the
  period's forecast is the recent-rate one and its text says so.
The low/high band replays the method on each past day at the same time of day (leave one out) and takes the
10 % and 90 % quantiles of actual rest of day / predicted rest of day; without history it is 0.5x-1.5x.
Week and month: spent so far + today's projected rest + a daily level (mean of past days of the same kind) for
each remaining day, spread over the day by the profile.
Exceeded: the hourly totals name the interval in which the period's spend reached its limit; the database layer
then pins it to the call that crossed it.
"""
from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cache, cached_property, lru_cache
from typing import Literal
from zoneinfo import ZoneInfo

from sqlalchemy import CompoundSelect, Connection, Engine, bindparam, func, literal, select, union_all
from typing_extensions import TypedDict

from services.alerting import alerts
from services.alerting.alerts import AlertOut
from services.core.context import BudgetContext
from services.core.display import format_usd_all
from services.core.money import micros_to_usd
from services.core.periods import PERIODS, Period, as_utc, hour_floor, local_days, period_containing
from services.core.tables import EVENTS
from services.live.hub import EventHub
from services.live.topics import AlertsChanged
from services.spend.budget import period_summary
from services.spend.rollups import totals_between

HOUR = timedelta(hours=1)
HISTORY_DAYS = 14
MIN_HISTORY_DAYS = 3
WINDOW_H = 4
HALF_LIFE_H = 1.0
BURST_MULT = 2.5
PRIOR_WEIGHT = 0.3
RECENT_WEIGHT = 0.25
BAND_QUANTILES = (0.05, 0.95)
FALLBACK_BAND = (0.5, 1.5)
MIN_BAND_SAMPLES = 4
RECENT_WINDOW = timedelta(minutes=30)  # bench/forecast.py: 30 min warns a little sooner than 60, no more false alarms
RECENT_HORIZON = timedelta(hours=2)  # bench/forecast.py: 90 min alarms on fewer bursts (52 % vs 60 %), at 1 min of lead
RECENT_STEP = timedelta(minutes=5)  # the DB layer's sub-hour totals of the last RECENT_SPAN, ending at now
RECENT_WINDOWS = (timedelta(minutes=10), timedelta(minutes=15), timedelta(minutes=20), RECENT_WINDOW)
RECENT_SPAN = RECENT_WINDOWS[-1]  # what the longest window reads: an older slice would never count
RECENT_SLICES = int(RECENT_SPAN / RECENT_STEP)
RECENT_MIN_CALLS = 5  # a pace is read from several calls, not from one call that happens to fall in a short window
# (not kept: a 5-min window too made an ordinary day say "exhausts"; requiring 10 min of the faster pace cost 3 min
# of median lead for one point fewer burst alarms; see the README's backtest)
RECENT_METHOD = 'recent_rate'

Segment = tuple[datetime, datetime, float]  # projected micro-USD in [start, end)
Slice = tuple[datetime, int, int]  # (start, micro-USD, calls) in [start, start + RECENT_STEP), the last up to now
State = Literal['no_limit', 'exceeded', 'exhausts', 'holds']


class ForecastOut(TypedDict):
    """Where a day, week or month is heading."""

    period: str  # day, week, month
    start: str
    end: str
    spent_micros: int  # so far, reconciled
    spent_usd: str
    limit_micros: int | None  # None: no limit for the period
    limit_usd: str | None
    projected_micros: int  # by the end of the period
    projected_usd: str
    projected_low_micros: int  # the likely range around it
    projected_low_usd: str
    projected_high_micros: int
    projected_high_usd: str
    eta: str | None  # when the limit is reached; None when it holds (or there is no limit)
    exceeded_at: str | None  # exceeded: when (the call that crossed the limit); None when not known or not exceeded
    state: State
    text: str  # 'Budget exhausted at ~16:45', 'Holds until midnight: ~$3.80 of $5.00 projected'
    method: str  # none, trailing_rate, profile_blend, recent_rate; '+daily_level' for the days after today
    rate_per_hour_micros: int  # today's burn rate now
    rate_per_hour_usd: str


class BudgetForecast(TypedDict):
    at: str
    timezone: str
    day: ForecastOut
    week: ForecastOut
    month: ForecastOut


@dataclass
class Interval:
    start: datetime
    end: datetime
    micros: int
    hour: int  # local hour of day of the start


@dataclass
class LocalDay:
    """One local day's intervals, filled by `split_days` before any total is read (the totals are cached)."""

    date: date
    start: datetime
    end: datetime
    intervals: list[Interval] = field(default_factory=list)

    @cached_property
    def total(self) -> int:
        return sum(i.micros for i in self.intervals)

    @property
    def weekend(self) -> bool:
        return self.date.weekday() >= 5

    @cached_property
    def hourly(self) -> tuple[float, ...]:
        """Spend per local hour of day."""
        hours = [0.0] * 24
        for interval in self.intervals:
            hours[interval.hour] += interval.micros
        return tuple(hours)


@dataclass
class Prediction:
    rest: float  # micro-USD from now to the end of the day
    rate_per_hour: float
    method: str
    segments: list[Segment]


# --- the pure core ----------------------------------------------------------------------------------------------

def split_days(hours: Iterable[tuple[datetime, int]], zone: ZoneInfo, now: datetime) -> tuple[LocalDay,
                                                                                               list[LocalDay]]:
    """Today and the HISTORY_DAYS local days before it, from hourly (start, micros) totals. Each interval counts
    on the local day and hour of its start; an interval ends at the next whole UTC hour."""
    local_today = now.astimezone(zone).date()
    spans = local_days(local_today, HISTORY_DAYS + 1, zone)
    days = {d: LocalDay(d, start, end) for d, start, end in spans}
    for start, micros in hours:
        start = as_utc(start)
        if start >= now:
            continue
        local_day, local_hour, next_hour = _placed(start, zone)
        day = days.get(local_day)
        if day is not None:
            day.intervals.append(Interval(start, min(next_hour, day.end), int(micros), local_hour))
    ordered = [days[d] for d, _, _ in spans]
    return ordered[-1], ordered[:-1]


@lru_cache(maxsize=4096)
def _placed(start: datetime, zone: ZoneInfo) -> tuple[date, int, datetime]:
    """The local day and hour of an interval's start, and the next whole UTC hour (cached: every forecast reads
    the same hours again)."""
    local = start.astimezone(zone)
    return local.date(), local.hour, hour_floor(start) + HOUR


@lru_cache(maxsize=256)
def _steps(start: datetime, end: datetime, zone: ZoneInfo) -> tuple[tuple[datetime, datetime, int], ...]:
    """[start, end) in one-hour steps from start (DST-proof: UTC arithmetic), each with its local hour."""
    steps, t = [], start
    while t < end:
        after = min(t + HOUR, end)
        steps.append((t, after, t.astimezone(zone).hour))
        t = after
    return tuple(steps)


def _trimmed_mean(values: Sequence[float]) -> float:
    ordered = sorted(values)
    if len(ordered) >= 5:
        ordered = ordered[1:-1]
    return sum(ordered) / len(ordered) if ordered else 0.0


def _profile(days: Sequence[LocalDay]) -> list[float]:
    """Typical spend per local hour of day: a trimmed mean across days (plain mean when trimming leaves nothing)."""
    rows = [d.hourly for d in days]
    profile = [_trimmed_mean([r[h] for r in rows]) for h in range(24)]
    if sum(profile) <= 0:
        profile = [sum(r[h] for r in rows) / len(rows) for h in range(24)]
    return profile


def _basis(past: Sequence[LocalDay], weekend: bool) -> list[LocalDay]:
    """The past days with spend that shape today: those of the same kind when there are enough of them."""
    active = [d for d in past if d.total > 0]
    same = [d for d in active if d.weekend == weekend]
    return same if len(same) >= MIN_HISTORY_DAYS else active


def _hours(delta: timedelta) -> float:
    return delta.total_seconds() / 3600


def _decay(now: datetime, interval: Interval) -> tuple[float, float]:
    """(duration in hours so far, decay weight) of an interval; weight 0 outside the trailing window."""
    end = min(interval.end, now)
    duration = _hours(end - interval.start)
    if duration <= 0 or _hours(now - interval.end) >= WINDOW_H:
        return duration, 0.0
    age = _hours(now - (interval.start + (end - interval.start) / 2))
    return duration, 0.5 ** (age / HALF_LIFE_H)


def _trailing(today: Sequence[Interval], now: datetime, steps: Sequence[tuple[datetime, datetime, int]],
              day_start: datetime) -> Prediction:
    samples = [(i.micros, *_decay(now, i)) for i in today]
    samples = [(a, d, w) for a, d, w in samples if w > 0]
    # Today's mean rate without its largest hour: a longer view for sparse spend that one burst cannot lift.
    amounts = sorted(i.micros for i in today)
    elapsed = _hours(now - day_start) - 1
    mean_rate = sum(amounts[:-1]) / elapsed if elapsed > 0 else 0.0
    rate = 0.0
    if samples:
        reference = max(statistics.median(a / d for a, d, _ in samples), mean_rate)
        weight = sum(w * d for _, d, w in samples)
        rate = sum(w * min(a, BURST_MULT * reference * d) for a, d, w in samples) / weight
    segments = [(max(s, now), e, rate * _hours(e - max(s, now))) for s, e, _ in steps if e > now]
    return Prediction(sum(a for *_, a in segments), rate, 'trailing_rate', segments)


def _blend(today: Sequence[Interval], now: datetime, steps: Sequence[tuple[datetime, datetime, int]],
           profile: Sequence[float]) -> Prediction:
    mean_hour = sum(profile) / 24
    whole = [i for i in today if i.end <= now and profile[i.hour] > 0]
    ratios = [i.micros / profile[i.hour] for i in whole]
    level = max(1.0, statistics.median(ratios)) if ratios else 1.0
    actual = expected = recent = recent_expected = 0.0
    for interval in today:
        duration, weight = _decay(now, interval)
        if duration <= 0:
            continue
        capped = min(interval.micros, BURST_MULT * level * max(profile[interval.hour], mean_hour))
        share = profile[interval.hour] * duration
        actual += capped
        expected += share
        recent += weight * capped
        recent_expected += weight * share
    prior = PRIOR_WEIGHT * sum(profile)
    k_today = (actual + prior) / (expected + prior)
    k_recent = (recent + k_today * mean_hour) / (recent_expected + mean_hour)
    k = RECENT_WEIGHT * k_recent + (1 - RECENT_WEIGHT) * k_today
    segments = [(max(s, now), e, k * profile[h] * _hours(e - max(s, now))) for s, e, h in steps if e > now]
    current = next((h for s, e, h in steps if s <= now < e), None)
    rate = k * profile[current] if current is not None else 0.0
    return Prediction(sum(a for *_, a in segments), rate, 'profile_blend', segments)


def predict_day(today: LocalDay, past: Sequence[LocalDay], now: datetime, zone: ZoneInfo) -> Prediction:
    """The projected spend of the rest of `today` from `now`."""
    steps = _steps(today.start, today.end, zone)
    intervals = [i for i in today.intervals if i.start < now]
    basis = _basis(past, today.weekend)
    if len(basis) >= MIN_HISTORY_DAYS:
        return _blend(intervals, now, steps, _profile(basis))
    if sum(i.micros for i in intervals) > 0:
        return _trailing(intervals, now, steps, today.start)
    return Prediction(0.0, 0.0, 'none', [])


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _band_from(ratios: Sequence[float]) -> tuple[float, float]:
    if len(ratios) < MIN_BAND_SAMPLES:
        return FALLBACK_BAND
    low, high = (_quantile(ratios, q) for q in BAND_QUANTILES)
    return min(low, 1.0), max(high, 1.0)


def day_band(today: LocalDay, past: Sequence[LocalDay], now: datetime, zone: ZoneInfo) -> tuple[float, float]:
    """Low and high multipliers of the projected rest of today: how far the method missed on the past days of
    the same kind, replayed at the same time of day with each day left out of its own history."""
    elapsed = timedelta(hours=math.floor(_hours(now - today.start)))
    ratios = []
    for day in _basis(past, today.weekend):
        at = day.start + elapsed
        others = [d for d in past if d is not day]
        predicted = predict_day(day, others, at, zone).rest
        if predicted > 0:
            ratios.append(sum(i.micros for i in day.intervals if i.start >= at) / predicted)
    return _band_from(ratios)


def _daily_levels(past: Sequence[LocalDay], fallback: float) -> dict[bool, float]:
    """Typical day total for weekdays and weekend days, from the first past day with spend on."""
    first = next((n for n, d in enumerate(past) if d.total > 0), None)
    if first is None:
        return {False: fallback, True: fallback}
    days = past[first:]
    every = _trimmed_mean([d.total for d in days])
    levels = {}
    for weekend in (False, True):
        same = [d.total for d in days if d.weekend == weekend]
        levels[weekend] = _trimmed_mean(same) if len(same) >= 2 else every
    return levels


def _future_days(after: datetime, end: datetime, zone: ZoneInfo, past: Sequence[LocalDay],
                 today_total: float) -> tuple[list[Segment], tuple[float, float]]:
    """Segments for each whole local day in [after, end), and the band multipliers of their sum."""
    levels = _daily_levels(past, today_total)
    shapes = {}
    for weekend in (False, True):
        basis = _basis(past, weekend)
        profile = _profile(basis) if basis else [1.0] * 24
        total = sum(profile) or 1.0
        shapes[weekend] = [p / total for p in profile]
    segments: list[Segment] = []
    days = 0
    start = after
    while start < end:
        local = start.astimezone(zone).date()
        day_end = period_containing('day', start, zone).end
        steps = _steps(start, min(day_end, end), zone)
        weekend = local.weekday() >= 5
        shape = shapes[weekend]
        scale = sum(shape[h] for *_, h in steps) or 1.0  # a 23- or 25-hour day still sums to the day's level
        segments += [(s, e, levels[weekend] * shape[h] / scale) for s, e, h in steps]
        days += 1
        start = day_end
    ratios = []
    first = next((n for n, d in enumerate(past) if d.total > 0), None)
    if first is not None:
        ratios = [d.total / levels[d.weekend] for d in past[first:] if levels[d.weekend] > 0]
    low, high = _band_from(ratios)
    if days:
        low, high = 1 - (1 - low) / math.sqrt(days), 1 + (high - 1) / math.sqrt(days)
    return segments, (low, high)


def _walk(spent: int, limit: int, segments: Sequence[Segment]) -> datetime | None:
    """The moment the cumulative projected spend reaches the limit, interpolated within its segment."""
    total = float(spent)
    for start, end, amount in segments:
        if amount > 0 and total + amount >= limit:
            return start + timedelta(seconds=round((end - start).total_seconds() * (limit - total) / amount))
        total += amount
    return None


def recent_rate(intervals: Iterable[Interval], now: datetime, window: timedelta = RECENT_WINDOW,
                slices: Sequence[Slice] = ()) -> float:
    """Micro-USD an hour over the last `window`. The sub-hour slices count for the part of the window they cover,
    the hourly intervals for any part before the first slice. Each one's spend counts as even over its span so far:
    the current (partial) hour by the minutes it has run, the hour before by the part of it inside the window."""
    since = now - window
    fine_from = min((start for start, *_ in slices), default=now)
    total = 0.0
    for start, micros, _ in slices:
        total += _share(start, min(start + RECENT_STEP, now), micros, since, now)
    for interval in intervals:
        total += _share(interval.start, min(interval.end, now), interval.micros, since, fine_from)
    return total / _hours(window)


def _share(start: datetime, end: datetime, micros: int, low: datetime, high: datetime) -> float:
    """The part of `micros`, spread evenly over [start, end), that falls within [low, high)."""
    first, last = max(start, low), min(end, high)
    return micros * ((last - first) / (end - start)) if last > first else 0.0  # a ratio first: no huge timedelta


def watch_rate(intervals: Sequence[Interval], now: datetime, slices: Sequence[Slice]) -> tuple[float, timedelta]:
    """The recent rate and the window it was read over. With sub-hour totals: the highest rate over those of
    RECENT_WINDOWS that the slices cover and that hold at least RECENT_MIN_CALLS calls, so a change shows in the
    short windows within minutes instead of being diluted over the long one. Otherwise (no slices, or too few
    calls): the last RECENT_WINDOW, read from the hours."""
    rates = []
    fine_from = min((start for start, *_ in slices), default=now)
    for window in reversed(RECENT_WINDOWS):  # a tie reads over the longer window
        calls = sum(n for start, _, n in slices if start >= now - window)
        if now - window >= fine_from and calls >= RECENT_MIN_CALLS:
            rates.append((recent_rate(intervals, now, window, slices), window))
    return max(rates, key=lambda rate_window: rate_window[0], default=(recent_rate(intervals, now), RECENT_WINDOW))


def _at_recent_rate(segments: Sequence[Segment], now: datetime, rate: float) -> list[Segment]:
    """The projection with its first RECENT_HORIZON at `rate`, the usual projection after it."""
    cutoff = now + RECENT_HORIZON
    result: list[Segment] = []
    for start, end, amount in segments:
        if start >= cutoff:
            result.append((start, end, amount))
            continue
        middle = min(end, cutoff)
        result.append((start, middle, rate * _hours(middle - start)))
        if end > cutoff:
            result.append((cutoff, end, amount * ((end - cutoff) / (end - start))))
    return result


@dataclass(frozen=True)
class Crossing:
    """Where the period's spend reached its limit: within [start, end), after `before` micro-USD of the period."""

    start: datetime
    end: datetime
    before: int

    @property
    def exact(self) -> bool:
        return self.end - self.start <= timedelta(minutes=1)


def find_crossing(intervals: Iterable[Interval], span: Period, limit: int, covered_from: datetime,
                  now: datetime) -> Crossing | None:
    """The interval (up to now) in which the spend since the period's start reached `limit`; None when the hourly
    totals start after the period does or never reach the limit (the reconciled spend can run ahead of the
    recorded calls)."""
    if covered_from > span.start:
        return None
    total = 0
    for interval in sorted((i for i in intervals if span.start <= i.start < span.end), key=lambda i: i.start):
        if total + interval.micros >= limit:
            return Crossing(interval.start, min(interval.end, now), total)
        total += interval.micros
    return None


@dataclass
class PeriodForecast:
    period: str
    span: Period
    spent: int
    limit: int | None
    projected: int
    low: int
    high: int
    eta: datetime | None
    state: State
    method: str
    rate_per_hour: float = 0.0
    crossing: Crossing | None = None  # exceeded: when the limit was crossed, where known
    recent_window: timedelta = RECENT_WINDOW  # method recent_rate: the window its rate was read over

    def as_dict(self, zone: ZoneInfo) -> ForecastOut:
        limit, rate = self.limit, round(self.rate_per_hour)
        return {'period': self.period, 'start': self.span.start.isoformat(), 'end': self.span.end.isoformat(),
                'spent_micros': self.spent, 'spent_usd': micros_to_usd(self.spent),
                'limit_micros': limit, 'limit_usd': None if limit is None else micros_to_usd(limit),
                'projected_micros': self.projected, 'projected_usd': micros_to_usd(self.projected),
                'projected_low_micros': self.low, 'projected_low_usd': micros_to_usd(self.low),
                'projected_high_micros': self.high, 'projected_high_usd': micros_to_usd(self.high),
                'eta': self.eta.isoformat() if self.eta else None,
                'exceeded_at': self.crossing.start.isoformat() if self.crossing else None,
                'state': self.state, 'text': self.text(zone), 'method': self.method,
                'rate_per_hour_micros': rate, 'rate_per_hour_usd': micros_to_usd(rate)}

    def text(self, zone: ZoneInfo) -> str:
        projected, spent, limit = format_usd_all([self.projected, self.spent, self.limit or 0])
        by, name = {'day': ('midnight', 'Budget'), 'week': ('the end of the week', 'Week budget'),
                    'month': ('the end of the month', 'Month budget')}[self.period]
        if self.state == 'no_limit':
            return f'~{projected} projected by {by}'
        assert self.limit is not None
        if self.state == 'exceeded':
            limit_name = 'Limit' if self.period == 'day' else f'{self.period.capitalize()} limit'
            return f'{limit_name} exceeded{self._when_crossed(zone)}: {spent} of {limit}'
        if self.state == 'exhausts':
            assert self.eta is not None
            local = self.eta.astimezone(zone)
            when = f'{local:%H:%M}' if self.period == 'day' else f'{local:%a %d %b} ~{local:%H:%M}'
            text = f'{name} exhausted at ~{when}' if self.period == 'day' else f'{name} exhausted on {when}'
            if self.method.startswith(RECENT_METHOD):
                return f'{text} if the pace of the last {self.recent_window.seconds // 60} min goes on'
            return text
        return f'Holds until {by}: ~{projected} of {limit} projected'

    def _when_crossed(self, zone: ZoneInfo) -> str:
        """' at 17:38' (the crossing call), ' between 17:00 and 18:00' (only its hour known), or ''."""
        if self.crossing is None:
            return ''
        start, end = self.crossing.start.astimezone(zone), self.crossing.end.astimezone(zone)
        on = '' if self.period == 'day' else f' on {start:%a %d %b}'
        return f'{on} at {start:%H:%M}' if self.crossing.exact else f'{on} between {start:%H:%M} and {end:%H:%M}'


def _period(name: str, span: Period, spent: int, limit: int | None, segments: Sequence[Segment],
            band: tuple[float, float], method: str, rate: float = 0.0) -> PeriodForecast:
    rest = sum(a for *_, a in segments)
    projected = spent + round(rest)
    low, high = spent + round(rest * band[0]), spent + round(rest * band[1])
    low, high = min(low, projected), max(high, projected)
    eta = None
    state: State
    if limit is None:
        state = 'no_limit'
    elif spent >= limit:
        state = 'exceeded'
    else:
        eta = _walk(spent, limit, segments)
        if eta is not None and eta >= span.end:
            eta = None
        state = 'exhausts' if eta is not None else 'holds'
    return PeriodForecast(name, span, spent, limit, projected, low, high, eta, state, method, rate)


def _sooner(usual: PeriodForecast, recent: PeriodForecast) -> PeriodForecast:
    """The recent-rate forecast when it runs the period out before the usual one does (or the usual one holds)."""
    if recent.eta is not None and (usual.eta is None or recent.eta < usual.eta):
        return recent
    return usual


def project(hours: Iterable[tuple[datetime, int]], now: datetime, zone: ZoneInfo, spent: dict[str, int],
            limits: dict[str, int | None], periods: Sequence[str] = PERIODS, watch_recent: bool = True,
            recent: Iterable[Slice] = ()) -> dict[str, PeriodForecast]:
    """The forecast for each period from hourly spend (today so far and the HISTORY_DAYS days before), what was
    spent in each period so far (the reconciled totals) and the limits. `recent`: RECENT_STEP totals of the last
    RECENT_SPAN (`read_recent`), which the recent-rate watch reads instead of the hours where they reach.
    `watch_recent=False` leaves out the recent-rate watch (the forecast as it was before it, for the backtest's
    comparison)."""
    now = as_utc(now)
    today, past = split_days(hours, zone, now)
    intervals = [i for day in (*past, today) for i in day.intervals]
    prediction = predict_day(today, past, now, zone)
    band = day_band(today, past, now, zone) if prediction.method == 'profile_blend' else FALLBACK_BAND
    slices = [(as_utc(start), micros, calls) for start, micros, calls in recent if as_utc(start) < now]
    recent_hours = [i for i in intervals if i.end > now - RECENT_WINDOW]  # the longest window reads no further back
    rate, window = watch_rate(recent_hours, now, slices) if watch_recent else (0.0, RECENT_WINDOW)
    result = {}
    for name in periods:
        span = period_containing(name, now, zone)
        segments, period_band, method = prediction.segments, band, prediction.method
        if name != 'day':
            segments, period_band, method = _with_future_days(today, past, now, zone, prediction, band, span,
                                                              spent.get('day', today.total))
        forecast = _period(name, span, spent[name], limits[name], segments, period_band, method,
                           prediction.rate_per_hour if name == 'day' else 0.0)
        if rate > 0 and forecast.state in ('exhausts', 'holds'):
            recent_method = method.replace(prediction.method, RECENT_METHOD, 1)
            paced = _period(name, span, spent[name], limits[name], _at_recent_rate(segments, now, rate),
                            period_band, recent_method, rate if name == 'day' else 0.0)
            paced.recent_window = window
            forecast = _sooner(forecast, paced)
        if forecast.state == 'exceeded':
            assert forecast.limit is not None
            covered_from = past[0].start if past else today.start
            forecast.crossing = find_crossing(intervals, span, forecast.limit, covered_from, now)
        result[name] = forecast
    return result


def _with_future_days(today: LocalDay, past: Sequence[LocalDay], now: datetime, zone: ZoneInfo,
                      prediction: Prediction, band: tuple[float, float], span: Period,
                      spent_today: int) -> tuple[list[Segment], tuple[float, float], str]:
    """A week's or month's projection: today's rest, then the usual level for each day left; its band and method."""
    future, future_band = _future_days(today.end, span.end, zone, past, spent_today + prediction.rest)
    today_rest = prediction.rest
    future_rest = sum(a for *_, a in future)
    rest = today_rest + future_rest
    combined = ((today_rest * band[0] + future_rest * future_band[0]) / rest,
                (today_rest * band[1] + future_rest * future_band[1]) / rest) if rest > 0 else band
    method = prediction.method if future_rest == 0 else f'{prediction.method}+daily_level'
    return [*prediction.segments, *future], combined, method


# --- the database layer -----------------------------------------------------------------------------------------

def read_hours(conn: Connection, now: datetime, zone: ZoneInfo) -> list[tuple[datetime, int]]:
    """Hourly spend from the start of the history window to the end of the current hour, in one rollup query.
    Today's start is an edge too (a half-hour zone splits that one hour, read from its events)."""
    today = period_containing('day', now, zone)
    first = hour_floor(local_days(now.astimezone(zone).date(), HISTORY_DAYS + 1, zone)[0][1])
    edges = [first + HOUR * n for n in range(int(_hours(hour_floor(now) - first)) + 2)]
    if today.start not in edges:
        edges = sorted([*edges, today.start])
    buckets = totals_between(conn, edges)
    return [(edges[n], sum(t.cost_micros for t in buckets.groups[n].values())) for n in range(len(edges) - 1)]


def read_recent(conn: Connection, now: datetime) -> list[Slice]:
    """Spend and calls in each RECENT_STEP of the last RECENT_SPAN, ending at `now` (the rollups are hourly): one
    range of the (ts, id, cost) index per slice, summed from the index alone, in one query. (A CASE that names each
    event's slice cost SQLite more than the sums themselves: a comparison of stored text with each bound.)"""
    starts = [now - RECENT_SPAN + RECENT_STEP * n for n in range(RECENT_SLICES)]
    bounds = {f'b{n}': bound for n, bound in enumerate([*starts, now])}
    spent = {int(n): (int(micros or 0), int(calls)) for n, micros, calls in conn.execute(_recent_slices(), bounds)}
    return [(start, *spent.get(n, (0, 0))) for n, start in enumerate(starts)]


@cache
def _recent_slices() -> CompoundSelect:
    """read_recent's statement, built once: slice n is [:b<n>, :b<n+1>)."""
    ts = EVENTS.c.ts
    return union_all(*(select(literal(n).label('slice'), func.sum(EVENTS.c.cost_micros), func.count())
                       .where(ts >= bindparam(f'b{n}', type_=ts.type), ts < bindparam(f'b{n + 1}', type_=ts.type))
                       for n in range(RECENT_SLICES)))


def budget_forecast(conn: Connection, budget: BudgetContext, now: datetime | None = None) -> BudgetForecast:
    """Day, week and month: spent (reconciled, as `period_summary` reports it), projected, band, ETA, state."""
    now = as_utc(now or datetime.now(UTC))
    zone = budget.zone
    summaries = {p: period_summary(conn, budget, p, now) for p in PERIODS}
    spent: dict[str, int] = {p: s['spent_micros'] for p, s in summaries.items()}
    caps: dict[str, int | None] = {p: s['limit_micros'] for p, s in summaries.items()}
    forecasts = project(read_hours(conn, now, zone), now, zone, spent, caps, recent=read_recent(conn, now))
    for forecast in forecasts.values():
        pin_crossing(conn, forecast)
    return {'at': now.isoformat(), 'timezone': zone.key, 'day': forecasts['day'].as_dict(zone),
            'week': forecasts['week'].as_dict(zone), 'month': forecasts['month'].as_dict(zone)}


def day_forecast(conn: Connection, spent_micros: int, limit_micros: int | None, zone: ZoneInfo,
                 now: datetime | None = None) -> ForecastOut:
    """Today only, from a spent figure the caller already has (the dashboard's summary): ETA at which the spend
    reaches the limit, or the projected end-of-day spend when it holds, with its band."""
    now = as_utc(now or datetime.now(UTC))
    forecast = project(read_hours(conn, now, zone), now, zone, {'day': spent_micros}, {'day': limit_micros},
                       ('day',), recent=read_recent(conn, now))['day']
    pin_crossing(conn, forecast)
    return forecast.as_dict(zone)


def pin_crossing(conn: Connection, forecast: PeriodForecast) -> None:
    """Narrow an exceeded period's crossing from its hour to the recorded call that took the spend to the limit
    (a running total over that interval's events alone)."""
    crossing = forecast.crossing
    if crossing is None or crossing.exact or forecast.limit is None:
        return
    running = func.sum(EVENTS.c.cost_micros).over(order_by=(EVENTS.c.ts, EVENTS.c.id)).label('running')
    calls = (select(EVENTS.c.ts, running)
             .where(EVENTS.c.ts >= crossing.start, EVENTS.c.ts < crossing.end).subquery())
    ts = conn.scalar(select(calls.c.ts).where(calls.c.running >= forecast.limit - crossing.before)
                     .order_by(calls.c.ts).limit(1))
    if ts is not None:
        ts = as_utc(ts)
        forecast.crossing = Crossing(ts, ts, crossing.before)


# --- the forecast_exhaustion alert ------------------------------------------------------------------------------

def check_exhaustion(conn: Connection, budget: BudgetContext,
                     now: datetime | None = None) -> list[tuple[AlertOut | None, bool]]:
    """Raise `forecast_exhaustion` for each period whose projected spend reaches its limit before the period ends.

    One alert per period: the dedupe key holds the period start, an open alert is updated in place (count, ETA in
    the message), and the cooldown is the period's length, so an alert resolved within the period (by hand, or here
    when the forecast holds again) does not reopen before the next one. Once the limit is crossed the warning has
    done its work: it is resolved, saying when, and the budget checker's `limit_exceeded` alert takes over. Alerts of
    periods that have ended are resolved. Returns what raise_alert returned for each exhausting period."""
    now = as_utc(now or datetime.now(UTC))
    for alert in alerts.list_alerts(conn, 'open', 'forecast_exhaustion'):
        end = alert['data'].get('end')
        if end and datetime.fromisoformat(end) <= now:
            alerts.resolve(conn, alert['id'], now)
    forecast = budget_forecast(conn, budget, now)
    raised = []
    for period in PERIODS:
        item = forecast[period]
        key = f'forecast_exhaustion:{period}:{item["start"]}'
        if item['state'] == 'holds':
            alerts.resolve_key(conn, key, now)
        if item['state'] == 'exceeded':
            _resolve_as_exceeded(conn, key, item, now)
        if item['state'] != 'exhausts':
            continue
        assert item['limit_micros'] is not None  # only a period with a limit exhausts
        start, end = datetime.fromisoformat(item['start']), datetime.fromisoformat(item['end'])
        spent, projected, limit = format_usd_all([item['spent_micros'], item['projected_micros'], item['limit_micros']])
        message = (f'{item["text"]}: {spent} spent, ~{projected} of {limit} projected this {period} '
                   f'(method {item["method"]})')
        data = {name: item[name] for name in ('period', 'start', 'end', 'eta', 'spent_micros', 'limit_micros',
                                           'projected_micros', 'projected_low_micros', 'projected_high_micros',
                                           'method')}
        raised.append(alerts.raise_alert(conn, 'forecast_exhaustion', 'warning', message, key, data,
                                         cooldown=end - start, now=now))
    return raised


def _resolve_as_exceeded(conn: Connection, key: str, item: ForecastOut, now: datetime) -> None:
    message = (f'{item["text"]}. The {item["period"]} limit is crossed: the limit_exceeded alert takes over from '
               'this forecast')
    data = {'state': 'exceeded', 'exceeded_at': item['exceeded_at'], 'spent_micros': item['spent_micros'],
            'limit_micros': item['limit_micros']}
    alerts.resolve_key(conn, key, now, message=message, data=data)


def run_exhaustion_check(engine: Engine, hub: EventHub, budget: BudgetContext,
                         now: datetime | None = None) -> list[AlertOut]:
    """The scheduled job (a worker thread): check, commit, then publish each newly opened alert so notifications
    and toasts follow."""
    with engine.begin() as conn:
        raised = check_exhaustion(conn, budget, now)
    new = alerts.publish_new(hub, raised)
    if raised:
        hub.publish(AlertsChanged(reason='forecast_exhaustion'))
    return new
