"""The Budget Settings panel's agent thresholds: two policies of origin 'panel' over every agent.

- per session: an agent's spend within its current session;
- per agent: an agent's spend today.

Crossing one raises `limit_exceeded` naming the agent, its spend and the threshold (an in-app toast on every open
page, and the configured channels); with `pause` the agent is paused as well, so its next check is blocked.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from sqlalchemy import Connection, select
from typing_extensions import TypedDict

from services.budget.policies import PolicyInvalid, PolicyRule, sync_origin, validate
from services.core.display import format_usd
from services.core.money import optional_usd
from services.core.tables import POLICIES

ORIGIN: Final = 'panel'
SESSION_NAME = 'Agent session threshold'
DAY_NAME = 'Agent daily threshold'


class ThresholdsOut(TypedDict):
    session_threshold_micros: int | None  # per agent and session; None: no threshold
    session_threshold_usd: str | None
    day_threshold_micros: int | None  # per agent and day
    day_threshold_usd: str | None
    pause: bool  # an agent that crosses one is paused


@dataclass(frozen=True)
class Thresholds:
    session_micros: int | None = None
    day_micros: int | None = None
    pause: bool = False

    def as_dict(self) -> ThresholdsOut:
        return {'session_threshold_micros': self.session_micros,
                'session_threshold_usd': optional_usd(self.session_micros),
                'day_threshold_micros': self.day_micros, 'day_threshold_usd': optional_usd(self.day_micros),
                'pause': self.pause}


def get_thresholds(conn: Connection) -> Thresholds:
    rows = {r.name: PolicyRule.from_row(r) for r in conn.execute(select(POLICIES).where(POLICIES.c.origin == ORIGIN))}
    session, day = rows.get(SESSION_NAME), rows.get(DAY_NAME)
    return Thresholds(session.limit_micros if session else None, day.limit_micros if day else None,
                      any(p.auto_pause for p in rows.values()))


def set_thresholds(conn: Connection, session_usd: Decimal | None, day_usd: Decimal | None,
                   pause: bool) -> Thresholds:
    """Store the thresholds (None removes one); the caller rebuilds the checker after the commit."""
    wanted = []
    for name, period, usd in ((SESSION_NAME, 'session', session_usd), (DAY_NAME, 'day', day_usd)):
        if usd is None:
            continue
        field = 'session_threshold_usd' if period == 'session' else 'day_threshold_usd'
        if usd <= 0:
            raise PolicyInvalid(f'{field}: must be more than $0 (leave it empty for none)')
        try:
            wanted.append(validate({'name': name, 'scope': 'agent', 'period': period, 'limit_usd': str(usd),
                                    'soft_percent': 100, 'critical_percent': 100, 'action': 'warn',
                                    'auto_pause': pause}))
        except PolicyInvalid as exc:
            raise PolicyInvalid(f'{field}: {exc}') from None
    sync_origin(conn, ORIGIN, wanted)
    return get_thresholds(conn)


def describe(thresholds: Thresholds) -> str:
    parts = []
    if thresholds.session_micros is not None:
        parts.append(f'{format_usd(thresholds.session_micros)} per agent and session')
    if thresholds.day_micros is not None:
        parts.append(f'{format_usd(thresholds.day_micros)} per agent and day')
    if not parts:
        return 'No agent thresholds'
    return ', '.join(parts) + ('; agents are paused when they cross one' if thresholds.pause else '')
