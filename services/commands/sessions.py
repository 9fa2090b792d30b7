"""Ending sessions: their session-period budget counters are dropped, and they show as ended."""
from __future__ import annotations

from contextlib import suppress
from datetime import datetime

from services.commands.base import CommandContext
from services.core.access import Actor, Role, require
from services.live.topics import SessionEnded
from services.spend import sessions
from services.spend.sessions import SessionDetail, SessionNotFound


class SessionCommands:
    def __init__(self, ctx: CommandContext) -> None:
        self.ctx = ctx

    def end(self, actor: Actor, session_id: str) -> SessionDetail:
        require(actor, Role.ADMIN, 'ending a session')
        with self.ctx.audited(actor, 'sessions.end', f'session:{session_id}') as (conn, entry):
            entry.before = sessions.get_session(conn, session_id)['ended_at']
            session = sessions.end_session(conn, session_id)
            entry.before, entry.after = {'ended_at': entry.before}, {'ended_at': session['ended_at']}
        self._ended((session_id,))
        return session

    def end_many(self, actor: Actor, ends: dict[str, datetime]) -> int:
        """End sessions at the given times in one transaction (the demo's history); sessions without a row (no
        calls yet) are skipped. Returns how many ended."""
        require(actor, Role.ADMIN, 'ending sessions')
        ended = []
        with self.ctx.audited(actor, 'sessions.end_many', f'sessions:{len(ends)}') as (conn, entry):
            for session_id, at in ends.items():
                with suppress(SessionNotFound):
                    sessions.end_session(conn, session_id, at)
                    ended.append(session_id)
            entry.after = {'ended': ended}
            if not ended:
                entry.unchanged()
        if ended:
            self._ended(tuple(ended))
        return len(ended)

    def _ended(self, session_ids: tuple[str, ...]) -> None:
        if self.ctx.counters is not None:
            for session_id in session_ids:
                self.ctx.counters.forget_session(session_id)
        self.ctx.publish(SessionEnded(session_ids))
