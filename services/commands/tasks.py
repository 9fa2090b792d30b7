"""Tasks with an estimated cost: registered and changed by agents, planned against what is left of the budget."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from services.commands.base import CommandContext
from services.core.access import Actor, Role, require
from services.live.topics import TaskChanged
from services.spend import tasks
from services.spend.tasks import TaskOut


class TaskCommands:
    def __init__(self, ctx: CommandContext) -> None:
        self.ctx = ctx

    def create(self, actor: Actor, title: str, task_id: str | None = None, agent_id: str | None = None,
               status: str = 'pending', priority: int = 0, estimated_cost_micros: int | None = None,
               deadline: datetime | None = None) -> TaskOut:
        require(actor, Role.ADMIN, 'adding a task')
        with self.ctx.audited(actor, 'tasks.create', f'task:{task_id or title}') as (conn, entry):
            task = entry.after = tasks.create_task(conn, title, task_id, agent_id, status, priority,
                                                   estimated_cost_micros, deadline=deadline)
            entry.target = f'task:{task["id"]}'
        self.ctx.publish(TaskChanged(task['id']))
        return task

    def update(self, actor: Actor, task_id: str, changes: dict[str, Any]) -> TaskOut:
        """Announced only when something changed."""
        require(actor, Role.ADMIN, 'changing a task')
        with self.ctx.audited(actor, 'tasks.update', f'task:{task_id}') as (conn, entry):
            entry.before = tasks.get_task(conn, task_id)
            task, changed = tasks.update_task(conn, task_id, changes)
            entry.after = task
            if not changed:
                entry.unchanged()
        if changed:
            self.ctx.publish(TaskChanged(task_id))
        return task
