"""Eco mode: one persisted flag in the `settings` table, with when and why it last changed."""
from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Connection
from typing_extensions import TypedDict

from services.core.errors import Invalid
from services.core.stored import get_values, set_value

MODE_KEY, CHANGED_AT_KEY, REASON_KEY = 'eco.mode', 'eco.changed_at', 'eco.reason'
MAX_REASON = 500


class EcoState(TypedDict):
    eco_mode: bool
    changed_at: str | None  # ISO time of the last change
    reason: str | None  # why it last changed: 'manual', 'dashboard', 'policy <name>: ...'


def get_eco(conn: Connection) -> EcoState:
    """Off, with no changed_at or reason, until it is first switched on."""
    stored = get_values(conn, MODE_KEY, CHANGED_AT_KEY, REASON_KEY)
    return {'eco_mode': stored.get(MODE_KEY) == 'on', 'changed_at': stored.get(CHANGED_AT_KEY),
            'reason': stored.get(REASON_KEY)}


def set_eco(conn: Connection, on: bool, reason: str = 'manual', now: datetime | None = None) -> EcoState:
    """Switch eco mode. changed_at and reason describe the last change, so setting the current value again leaves
    both as they are."""
    reason = reason.strip()
    if not reason or len(reason) > MAX_REASON or '\x00' in reason:
        raise Invalid(f'reason: must be 1 to {MAX_REASON} characters without NUL')
    if get_eco(conn)['eco_mode'] != on:
        set_value(conn, MODE_KEY, 'on' if on else 'off')
        set_value(conn, CHANGED_AT_KEY, (now or datetime.now(UTC)).astimezone(UTC).isoformat())
        set_value(conn, REASON_KEY, reason)
    return get_eco(conn)
