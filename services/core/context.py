"""What every budget read needs to know of the settings, in one value: the time zone its periods are counted in.
(The limits are policies in the database: services/budget/limits.py.)"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from services.core.periods import Period, period_containing


@dataclass(frozen=True)
class BudgetContext:
    zone: ZoneInfo

    def period(self, name: str, now: datetime) -> Period:
        """The day, week or month that contains `now`, in this time zone."""
        return period_containing(name, now, self.zone)
