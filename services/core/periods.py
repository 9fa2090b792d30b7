"""Budget periods (day, week from Monday, month) in the configured time zone, as UTC half-open ranges."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal, get_args
from zoneinfo import ZoneInfo

from services.core.errors import Invalid

PeriodName = Literal['day', 'week', 'month']
PERIODS: tuple[PeriodName, ...] = get_args(PeriodName)


@dataclass(frozen=True)
class Period:
    name: str
    start: datetime  # aware UTC, inclusive
    end: datetime  # aware UTC, exclusive

    def seconds_left(self, now: datetime) -> int:
        return max(0, int((self.end - now).total_seconds()))


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """The local midnight that starts `day` in `zone`, in UTC."""
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def period_containing(name: str, now: datetime, zone: ZoneInfo) -> Period:
    """The day, week or month (in `zone`) that contains `now`."""
    local = now.astimezone(zone).date()
    if name == 'day':
        first, after = local, local + timedelta(days=1)
    elif name == 'week':
        first = local - timedelta(days=local.weekday())
        after = first + timedelta(days=7)
    elif name == 'month':
        first = local.replace(day=1)
        after = (first + timedelta(days=32)).replace(day=1)
    else:
        raise Invalid(f'period must be one of {", ".join(PERIODS)}, got {name!r}')
    return Period(name, local_midnight(first, zone), local_midnight(after, zone))


def local_days(last_day: date, days: int, zone: ZoneInfo) -> list[tuple[date, datetime, datetime]]:
    """`days` consecutive local days ending with `last_day`, each with its UTC range."""
    first = last_day - timedelta(days=days - 1)
    result = []
    for offset in range(days):
        day = first + timedelta(days=offset)
        result.append((day, local_midnight(day, zone), local_midnight(day + timedelta(days=1), zone)))
    return result


def midnight_on_or_after(ts: datetime, zone: ZoneInfo) -> datetime:
    """The first local midnight at or after `ts` (aware), in UTC."""
    day = ts.astimezone(zone).date()
    midnight = local_midnight(day, zone)
    return midnight if midnight >= ts else local_midnight(day + timedelta(days=1), zone)


def midnight_on_or_before(ts: datetime, zone: ZoneInfo) -> datetime:
    """The last local midnight at or before `ts` (aware), in UTC."""
    return local_midnight(ts.astimezone(zone).date(), zone)


def hour_floor(ts: datetime) -> datetime:
    return ts.replace(minute=0, second=0, microsecond=0)


def hour_ceil(ts: datetime) -> datetime:
    floor = hour_floor(ts)
    return floor if floor == ts else floor + timedelta(hours=1)


def format_duration(seconds: int) -> str:
    """`18720` -> `'5 h 12 min'`."""
    hours, rest = divmod(max(0, seconds), 3600)
    minutes = rest // 60
    if hours and minutes:
        return f'{hours} h {minutes} min'
    if hours:
        return f'{hours} h'
    return f'{minutes} min'


EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
FIRST_DAY = EARLIEST.date()  # the first and last day any date input may name
LAST_DAY = LATEST.date() - timedelta(days=1)
MAX_SPAN_DAYS = 3653  # ten years, leap days included: the longest custom period, report or range
MAX_SPAN = timedelta(days=MAX_SPAN_DAYS, hours=1)  # as a UTC duration (a daylight-saving hour of slack)


def as_utc(ts: datetime) -> datetime:
    """Aware UTC; a naive timestamp is taken to be UTC already."""
    try:
        return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    except OverflowError:
        raise Invalid(f'{ts.isoformat()} is out of range') from None


def checked_utc(ts: datetime, name: str) -> datetime:
    """`as_utc`, refusing times outside 2000-2099 (they are typos, and their hours would overflow)."""
    try:
        value = as_utc(ts)
    except Invalid:  # so early or late that it has no UTC time
        value = EARLIEST - timedelta(days=1)
    if not EARLIEST <= value < LATEST:
        raise Invalid(f'{name}: must be between {EARLIEST.date()} and {LATEST.date()} (UTC)')
    return value


def checked_day(value: date, name: str) -> date:
    """A date within 2000-2099 (earlier or later ones are typos, and their times overflow)."""
    if not FIRST_DAY <= value <= LAST_DAY:
        raise Invalid(f'{name}: must be between {FIRST_DAY} and {LAST_DAY}, got {value}')
    return value


def checked_span(first: datetime | date, after: datetime | date, name: str) -> None:
    """Refuse a range longer than MAX_SPAN_DAYS (`after` exclusive for times, inclusive for dates): every query
    over it then takes bounded time."""
    if isinstance(first, datetime) or isinstance(after, datetime):
        assert isinstance(first, datetime) and isinstance(after, datetime)
        too_long = after - first > MAX_SPAN
    else:
        too_long = (after - first).days + 1 > MAX_SPAN_DAYS
    if too_long:
        raise Invalid(f'{name}: a range is at most ten years ({MAX_SPAN_DAYS} days)')


def clamp_days(first: date, last: date) -> tuple[date, date]:
    """The part of [first, last] that a range may cover: within 2000-2099 and the last MAX_SPAN_DAYS days. For
    rows stored before these bounds were checked (they must not take the service down)."""
    last = min(max(last, FIRST_DAY), LAST_DAY)
    first = min(max(first, FIRST_DAY, last - timedelta(days=MAX_SPAN_DAYS - 1)), last)
    return first, last


def consecutive_runs(intervals: Sequence[tuple[datetime, datetime]]) -> list[list[tuple[datetime, datetime]]]:
    """Intervals, in the order given, in runs where each starts where the one before ends."""
    runs: list[list[tuple[datetime, datetime]]] = []
    for interval in intervals:
        if runs and runs[-1][-1][1] == interval[0]:
            runs[-1].append(interval)
        else:
            runs.append([interval])
    return runs
