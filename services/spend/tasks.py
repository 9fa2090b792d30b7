"""Tasks: units of work with an estimated cost, and their actual cost from the ledger's `task_spend` totals."""
from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, exists, insert, select, update
from sqlalchemy.exc import IntegrityError
from typing_extensions import TypedDict

from services.core.errors import Conflict, Invalid, NotFound
from services.core.money import micros_to_usd
from services.core.periods import checked_utc
from services.core.tables import TASK_SPEND, TASKS

STATUSES = ('pending', 'running', 'done', 'failed', 'cancelled')
MAX_ESTIMATE_MICROS = 10**15  # $1,000,000,000
MAX_PRIORITY = 1_000_000  # well inside the INTEGER column
EDITABLE = ('title', 'agent_id', 'status', 'priority', 'estimated_cost_micros', 'deadline')


class TaskOut(TypedDict):
    id: str
    title: str
    agent_id: str | None
    status: str  # pending, running, done, failed, cancelled
    priority: int
    created_at: str
    updated_at: str
    deadline: str | None
    estimated_cost_micros: int | None
    estimated_cost_usd: str | None
    actual_cost_micros: int
    actual_cost_usd: str
    over_estimate: bool | None  # None without an estimate
    requests: int
    input_tokens: int
    output_tokens: int
    tokens: int
    last_request_at: str | None


class TaskList(TypedDict):
    items: list[TaskOut]  # most recently updated first
    count: int


class TaskNotFound(NotFound):
    pass


class TaskExists(Conflict):
    pass


def create_task(conn: Connection, title: str, task_id: str | None = None, agent_id: str | None = None,
                status: str = 'pending', priority: int = 0, estimated_cost_micros: int | None = None,
                now: datetime | None = None, deadline: datetime | None = None) -> TaskOut:
    """Insert a task (the id is generated when missing); TaskExists when the id is taken."""
    task_id = task_id or f'task-{uuid.uuid4().hex}'
    values = {'title': title, 'agent_id': agent_id, 'status': status, 'priority': priority,
              'estimated_cost_micros': estimated_cost_micros, 'deadline': deadline}
    _check(values)
    if deadline is not None:
        values['deadline'] = checked_utc(deadline, 'deadline')
    if conn.execute(select(exists().where(TASKS.c.id == task_id))).scalar():
        raise TaskExists(f'id: a task {task_id!r} already exists')
    now = now or datetime.now(UTC)
    try:
        conn.execute(insert(TASKS).values(id=task_id, created_at=now, updated_at=now, **values))
    except IntegrityError:  # created by someone else since the check above; the transaction must be rolled back
        raise TaskExists(f'id: a task {task_id!r} already exists') from None
    return get_task(conn, task_id)


def get_task(conn: Connection, task_id: str) -> TaskOut:
    row = conn.execute(_query().where(TASKS.c.id == task_id)).first()
    if row is None:
        raise TaskNotFound(f'no task {task_id!r}')
    return _task(row)


def update_task(conn: Connection, task_id: str, changes: dict[str, Any],
                now: datetime | None = None) -> tuple[TaskOut, bool]:
    """Apply `changes` (keys from EDITABLE; None clears agent_id, the estimate and the deadline). Returns the task
    and whether anything changed; updated_at only moves when something did."""
    unknown = set(changes) - set(EDITABLE)
    if unknown:
        raise Invalid(f'{sorted(unknown)[0]}: cannot be changed')
    if changes.get('deadline') is not None:
        changes = {**changes, 'deadline': checked_utc(changes['deadline'], 'deadline').isoformat()}
    current = get_task(conn, task_id)
    fields: Mapping[str, Any] = current  # the keys of `changes` are checked against EDITABLE above
    changed = {k: v for k, v in changes.items() if fields[k] != v}
    if not changed:
        return current, False
    _check({**current, **changed})
    if changed.get('deadline') is not None:
        changed['deadline'] = datetime.fromisoformat(changed['deadline'])
    conn.execute(update(TASKS).where(TASKS.c.id == task_id).values(updated_at=now or datetime.now(UTC), **changed))
    return get_task(conn, task_id), True


def list_tasks(conn: Connection, status: str | None = None, agent_id: str | None = None,
               limit: int = 50) -> list[TaskOut]:
    """Tasks, most recently updated first, with their actual cost."""
    if status is not None and status not in STATUSES:
        raise Invalid(f'status: must be one of {", ".join(STATUSES)}, got {status!r}')
    query = _query()
    if status is not None:
        query = query.where(TASKS.c.status == status)
    if agent_id is not None:
        query = query.where(TASKS.c.agent_id == agent_id)
    rows = conn.execute(query.order_by(TASKS.c.updated_at.desc(), TASKS.c.id).limit(limit))
    return [_task(r) for r in rows]


def _check(values: dict[str, Any]) -> None:
    if not str(values['title']).strip():
        raise Invalid('title: must not be empty')
    if values['status'] not in STATUSES:
        raise Invalid(f'status: must be one of {", ".join(STATUSES)}, got {values["status"]!r}')
    if not -MAX_PRIORITY <= values['priority'] <= MAX_PRIORITY:
        raise Invalid(f'priority: must be between -{MAX_PRIORITY:,} and {MAX_PRIORITY:,}')
    estimate = values['estimated_cost_micros']
    if estimate is not None and not 0 <= estimate <= MAX_ESTIMATE_MICROS:
        raise Invalid(f'estimated_cost: must be between $0 and ${MAX_ESTIMATE_MICROS // 1_000_000:,}')


def _query() -> Any:
    spend = TASK_SPEND.c
    return select(TASKS, spend.cost_micros, spend.requests, spend.input_tokens, spend.output_tokens,
                  spend.last_ts).select_from(TASKS.outerjoin(TASK_SPEND, spend.task_id == TASKS.c.id))


def _task(row: Any) -> TaskOut:
    estimate, actual = row.estimated_cost_micros, row.cost_micros or 0
    input_tokens, output_tokens = row.input_tokens or 0, row.output_tokens or 0
    return {
        'id': row.id, 'title': row.title, 'agent_id': row.agent_id, 'status': row.status, 'priority': row.priority,
        'created_at': row.created_at.isoformat(), 'updated_at': row.updated_at.isoformat(),
        'deadline': row.deadline.isoformat() if row.deadline else None,
        'estimated_cost_micros': estimate,
        'estimated_cost_usd': micros_to_usd(estimate) if estimate is not None else None,
        'actual_cost_micros': actual, 'actual_cost_usd': micros_to_usd(actual),
        'over_estimate': actual > estimate if estimate is not None else None,
        'requests': row.requests or 0, 'input_tokens': input_tokens, 'output_tokens': output_tokens,
        'tokens': input_tokens + output_tokens,
        'last_request_at': row.last_ts.isoformat() if row.last_ts else None,
    }
