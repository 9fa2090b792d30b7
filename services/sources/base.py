"""What every spend source is: a puller that turns HTTP answers into per-day snapshot rows (no database here:
services/sources/snapshots.py stores them)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, Protocol

from services.core.money import usd_to_micros

SourceName = Literal['litellm', 'openai_direct', 'anthropic_direct', 'openrouter_direct']
FaultKind = Literal['unavailable', 'auth', 'rate_limited', 'server', 'timeout', 'connection', 'malformed',
                    'pagination']


@dataclass(frozen=True)
class SnapshotRow:
    source: str
    day: date  # UTC day
    provider: str
    model: str  # '' when the source has no model breakdown
    cost_micros: int
    input_tokens: int = 0
    output_tokens: int = 0
    requests: int = 0


@dataclass
class PullResult:
    """Rows for the days pulled. `days` lists every day covered, so a day with no spend replaces an old one."""

    rows: list[SnapshotRow]
    days: set[date]
    details: dict[str, Any] = field(default_factory=dict)  # e.g. {'endpoints': {'/spend/logs/v2': 'unavailable'}}


class SourceError(Exception):
    """A pull failed. The message never contains a key; `kind` says what went wrong."""

    def __init__(self, kind: FaultKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class Puller(Protocol):
    name: str

    async def pull(self, since: date, until: date) -> PullResult:
        """Spend for the UTC days since..until, both included."""
        ...

    async def aclose(self) -> None: ...


def usd_micros(value: Any, what: str, scale: Decimal = Decimal(1)) -> int:
    """A JSON number or numeric string of USD (times `scale`, e.g. 0.01 for cents) as micro-USD, never via float
    arithmetic: numbers are read through their decimal text. Raises SourceError('malformed')."""
    return usd_to_micros(usd_amount(value, what, scale))


def usd_amount(value: Any, what: str, scale: Decimal = Decimal(1)) -> Decimal:
    """Like `usd_micros`, but the exact Decimal USD, for sums that are rounded once (see `split_micros`)."""
    if isinstance(value, bool) or value is None:
        raise SourceError('malformed', f'{what}: expected a number, got {value!r}')
    try:
        amount = Decimal(str(value)) * scale
    except InvalidOperation:
        raise SourceError('malformed', f'{what}: expected a number, got {str(value)[:40]!r}') from None
    if not amount.is_finite():
        raise SourceError('malformed', f'{what}: not a finite number')
    return amount


def split_micros(amounts: Mapping[str, Decimal]) -> dict[str, int]:
    """Exact USD parts as micro-USD that add up to the rounded total: in key order, each part gets the rounded
    running sum minus the previous one, so none is off by more than a micro-USD and nothing is lost or doubled."""
    parts: dict[str, int] = {}
    running, before = Decimal(0), 0
    for key in sorted(amounts):
        running += amounts[key]
        parts[key] = usd_to_micros(running) - before
        before += parts[key]
    return parts


def required(obj: Any, key: str, what: str) -> Any:
    """`obj[key]`; a missing or null value is SourceError('malformed') naming it as `what.key`."""
    if not isinstance(obj, dict):
        raise SourceError('malformed', f'{what}: expected an object, got {type(obj).__name__}')
    value = obj.get(key)
    if value is None:
        raise SourceError('malformed', f'{what}.{key} is missing')
    return value


def whole(value: Any, what: str) -> int:
    """A token or request count: int, or a numeric string / float with no fraction."""
    if value is None:
        return 0
    if isinstance(value, bool):
        raise SourceError('malformed', f'{what}: expected a count, got {value!r}')
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise SourceError('malformed', f'{what}: expected a count, got {str(value)[:40]!r}') from None
    if not number.is_finite() or number < 0:
        raise SourceError('malformed', f'{what}: expected a non-negative count')
    return int(number)


def utc_day(value: Any, what: str) -> date:
    """A day from 'YYYY-MM-DD', an ISO datetime or unix seconds (UTC)."""
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return datetime.fromtimestamp(value, UTC).date()
        text = str(value)
        if len(text) == 10:
            return date.fromisoformat(text)
        return datetime.fromisoformat(text.replace('Z', '+00:00')).astimezone(UTC).date()
    except (ValueError, OverflowError, OSError):
        raise SourceError('malformed', f'{what}: not a date: {str(value)[:40]!r}') from None


def days_between(since: date, until: date) -> set[date]:
    return {since + timedelta(days=i) for i in range((until - since).days + 1)}

