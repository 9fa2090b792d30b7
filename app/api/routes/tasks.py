"""Tasks with an estimated cost, and their actual cost from the usage events that name them."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import ConfigDict, Field, StringConstraints, model_validator

from app.api.deps import READ, Admin, ReadConn, RuntimeDep
from app.api.errors import refusals
from services.core.inputs import NO_NUL, Input, Label
from services.core.money import Usd, usd_to_micros
from services.spend import tasks
from services.spend.tasks import TaskList, TaskOut

router = APIRouter(prefix='/tasks', tags=['tasks'])
Status = Literal['pending', 'running', 'done', 'failed', 'cancelled']
Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500, pattern=NO_NUL)]
Priority = Annotated[int, Field(strict=True, ge=-tasks.MAX_PRIORITY, le=tasks.MAX_PRIORITY)]
EstimateUsd = Annotated[Usd, Field(le=tasks.MAX_ESTIMATE_MICROS // 1_000_000)]
NOT_NULL = ('title', 'status', 'priority')


class TaskIn(Input):
    model_config = ConfigDict(extra='forbid')

    id: Label | None = Field(default=None, description='generated when missing')
    title: Title
    agent_id: Label | None = None
    status: Status = 'pending'
    priority: Priority = 0
    estimated_cost_usd: EstimateUsd | None = None
    deadline: datetime | None = Field(default=None, description='ISO time (UTC when naive); the planner defers '
                                      'a pending task after it')


class TaskPatch(Input):
    """Only the fields given change; null clears agent_id, estimated_cost_usd and deadline."""

    model_config = ConfigDict(extra='forbid')

    title: Title | None = None
    agent_id: Label | None = None
    status: Status | None = None
    priority: Priority | None = None
    estimated_cost_usd: EstimateUsd | None = None
    deadline: datetime | None = None

    @model_validator(mode='after')
    def _required_not_null(self) -> TaskPatch:
        for name in NOT_NULL:
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f'{name}: cannot be null')
        return self


def _micros(usd: Decimal | None) -> int | None:
    return None if usd is None else usd_to_micros(usd)


@router.post('', status_code=201, responses=refusals(e409='A task with that id exists'))
def create_task(body: TaskIn, rt: RuntimeDep, actor: Admin) -> TaskOut:
    """Register a task; 409 when the id is taken."""
    return rt.commands.tasks.create(actor, body.title, body.id, body.agent_id, body.status, body.priority,
                                    _micros(body.estimated_cost_usd), body.deadline)


@router.get('', dependencies=READ)
def list_tasks(conn: ReadConn, status: Status | None = None, agent_id: str | None = None,
               limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> TaskList:
    """Tasks, most recently updated first, with estimated and actual cost."""
    items = tasks.list_tasks(conn, status, agent_id, limit)
    return {'items': items, 'count': len(items)}


@router.get('/{task_id:path}', dependencies=READ)
def get_task(task_id: str, conn: ReadConn) -> TaskOut:
    """One task with its estimated and actual cost."""
    return tasks.get_task(conn, task_id)


@router.patch('/{task_id:path}')
def update_task(task_id: str, body: TaskPatch, rt: RuntimeDep, actor: Admin) -> TaskOut:
    """Change any of title, agent_id, status, priority, estimated_cost_usd, deadline."""
    changes = body.model_dump(include=body.model_fields_set)
    if 'estimated_cost_usd' in changes:
        changes['estimated_cost_micros'] = _micros(changes.pop('estimated_cost_usd'))
    return rt.commands.tasks.update(actor, task_id, changes)
