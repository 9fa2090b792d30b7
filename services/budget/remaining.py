"""What is left for one agent, session or project and for the whole day: the day's gauge beside the decision a call
would get now (each matched policy with its remaining). Reads only: nothing is held and no alert is raised."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection
from typing_extensions import TypedDict

from services.budget.checker import Checker, CheckRequest, PolicyDecision
from services.budget.rules import Decision
from services.core.context import BudgetContext
from services.core.errors import Unavailable
from services.spend.budget import PeriodSummary, period_summary


class RemainingOut(TypedDict):
    agent_id: str | None
    session_id: str | None
    project: str | None
    day: PeriodSummary  # the whole day: spent, limit, remaining, percent, resets
    decision: Decision  # what a check for this agent, session and project answers now (no estimate)
    allowed: bool
    reasons: list[str]
    policies: list[PolicyDecision]  # each matched policy: spent, held, remaining, resets_at
    eco_mode: bool


def remaining(conn: Connection, budget: BudgetContext, checker: Checker | None, agent_id: str | None = None,
              session_id: str | None = None, project: str | None = None,
              now: datetime | None = None) -> RemainingOut:
    if checker is None:
        raise Unavailable('budget checks are not running')
    # deferred=[] and dropped: a block found by a read raises no policy_violation alert (no call was refused)
    answer = checker.check(CheckRequest(agent_id, session_id, None, project), now, deferred=[])
    return {'agent_id': agent_id, 'session_id': session_id, 'project': project,
            'day': period_summary(conn, budget, 'day', now), 'decision': answer['decision'],
            'allowed': answer['allowed'], 'reasons': answer['reasons'], 'policies': answer['policies'],
            'eco_mode': answer['eco_mode']}
