"""The planner: which pending tasks run now within the remaining budget, and why the others wait.

The core (`plan`) is pure: tasks with a priority and a cost in, a `Plan` out. It maximises the total priority of
the tasks run now under the budget exactly (0/1 knapsack) whenever the search stays within `EXACT_WORK` states, and
falls back to a greedy by priority per dollar that is guaranteed at least half of the optimum beyond that.

Costs are rounded UP to whole cents and the budget DOWN, so a plan never spends more than the budget, whatever
the micro-dollars add up to. Priorities are scaled to integers (six decimal places at most), so all of it is exact
integer arithmetic. The exact search is a sparse dynamic programme over Pareto-optimal (cost, priority) states,
items taken in order of priority per dollar: a state is dropped when a cheaper one is worth at least as much
(dominance), or when even the fractional relaxation of the tasks still to come cannot lift it above the best plan
found so far (bound); it stops early when a plan reaches the fractional optimum of the whole instance, and does
not start when the greedy already does. Its frontier never holds more than min(capacity, total priority) + 1
states, so an instance with `tasks x (that + 1) <= EXACT_WORK` ("cells") is always solved exactly; larger ones are
tried with the same work budget (the bound usually keeps the frontier tiny) and fall back to the greedy only when it
runs out.

The database layer (`estimate_missing`, `open_tasks`, `plan_open_tasks`) fills missing estimates from the median
actual cost of the agent's finished tasks and reads the pending tasks for the dashboard.
"""
from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any, Literal, NotRequired

from sqlalchemy import Connection, select
from typing_extensions import TypedDict

from services.core.display import format_usd
from services.core.errors import Invalid
from services.core.money import micros_to_usd
from services.core.tables import TASK_SPEND, TASKS

MICROS_PER_CENT = 10_000
EXACT_WORK = 2_000_000  # Pareto states the exact search may visit; ~1-2 s of pure Python at worst
DASHBOARD_WORK = 200_000  # the dashboard replans on every reload: a tenth of that at most
MAX_TASKS = 5_000
MAX_PRIORITY = 1_000_000
PRIORITY_PLACES = 6  # priorities are ranks: finer than a millionth means nothing
HISTORY_ROWS = 5_000  # finished tasks read for estimates, newest first
HISTORY_PER_AGENT = 50  # an agent's estimate is the median of its newest finished tasks
OPEN_TASKS = 1_000  # pending tasks the dashboard plans for, highest priority first
GREEDY_BOUND = Fraction(1, 2)
REASONS = ('over_budget', 'lower_value', 'after_deadline', 'no_estimate')
Priority = int | Decimal
Reason = Literal['over_budget', 'lower_value', 'after_deadline', 'no_estimate']


class PlanItem(TypedDict):
    id: str
    priority: int | float
    cost_micros: int | None  # None: no estimate given and no history to estimate from
    cost_usd: str | None
    estimated: bool  # the cost is an estimate from history, not given
    estimate_basis: Literal['agent', 'all_agents'] | None  # whose finished tasks it was estimated from
    agent_id: str | None
    deadline: str | None
    title: NotRequired[str]  # tasks from the tasks table (the dashboard's plan)


class DeferredItem(PlanItem):
    reason: Reason
    detail: str  # the reason in words


class PlanOut(TypedDict):
    run_now: list[PlanItem]  # free tasks first, then by priority per dollar
    defer: list[DeferredItem]  # by reason, then priority
    budget_micros: int
    budget_usd: str
    scheduled_cost_micros: int  # what run_now costs
    scheduled_cost_usd: str
    remaining_after_micros: int
    remaining_after_usd: str
    total_priority: int | float  # of run_now
    method: Literal['exact', 'greedy']
    bound: float  # the plan is worth at least this share of the best possible one (rounded down)
    bound_note: str
    cells: int  # tasks x (capacity + 1) of the knapsack actually searched
    exact_limit_cells: int  # up to this many cells the plan is always exact


class ScheduleOut(PlanOut):
    budget_source: Literal['given', 'today']  # remaining_usd as given, or what is left of today's limit


@dataclass(frozen=True)
class PlanTask:
    """A task to plan: `cost_micros` None means no estimate could be made; `estimate_basis` says where an estimate
    that was not given came from ('agent': that agent's history, 'all_agents': everyone's)."""

    id: str
    priority: Priority
    cost_micros: int | None
    deadline: datetime | None = None
    agent_id: str | None = None
    title: str | None = None
    estimate_basis: Literal['agent', 'all_agents'] | None = None

    @property
    def estimated(self) -> bool:
        return self.estimate_basis is not None

    def as_dict(self) -> PlanItem:
        cost = self.cost_micros
        item: PlanItem = {'id': self.id, 'priority': _number(self.priority), 'cost_micros': cost,
                          'cost_usd': None if cost is None else micros_to_usd(cost), 'estimated': self.estimated,
                          'estimate_basis': self.estimate_basis, 'agent_id': self.agent_id,
                          'deadline': self.deadline.isoformat() if self.deadline else None}
        if self.title is not None:
            item['title'] = self.title
        return item


@dataclass(frozen=True)
class Deferred:
    task: PlanTask
    reason: Reason
    detail: str

    def as_dict(self) -> DeferredItem:
        return {**self.task.as_dict(), 'reason': self.reason, 'detail': self.detail}


@dataclass(frozen=True)
class Plan:
    run_now: tuple[PlanTask, ...]
    defer: tuple[Deferred, ...]
    budget_micros: int
    used_micros: int
    total_priority: Priority
    method: Literal['exact', 'greedy']
    bound: Fraction  # the plan is worth at least this share of the best possible one
    cells: int  # tasks x (capacity + 1) of the knapsack actually searched, after reductions
    exact_work: int = EXACT_WORK  # up to this many cells the plan is always exact

    @property
    def remaining_after_micros(self) -> int:
        return self.budget_micros - self.used_micros

    def as_dict(self) -> PlanOut:
        return {
            'run_now': [t.as_dict() for t in self.run_now],
            'defer': [d.as_dict() for d in self.defer],
            'budget_micros': self.budget_micros,
            'budget_usd': micros_to_usd(self.budget_micros),
            'scheduled_cost_micros': self.used_micros,
            'scheduled_cost_usd': micros_to_usd(self.used_micros),
            'remaining_after_micros': self.remaining_after_micros,
            'remaining_after_usd': micros_to_usd(self.remaining_after_micros),
            'total_priority': _number(self.total_priority),
            'method': self.method,
            'bound': float(math.floor(self.bound * 1000) / 1000),  # rounded down: never claims more than it has
            'bound_note': 'optimal' if self.method == 'exact' else
            f'at least {math.floor(self.bound * 1000) / 10:.1f}% of the optimal total priority (greedy guarantees 50%)',
            'cells': self.cells,
            'exact_limit_cells': self.exact_work,
        }


def plan(tasks: Sequence[PlanTask], remaining_micros: int, now: datetime, exact_work: int = EXACT_WORK) -> Plan:
    """Choose the tasks to run now within `remaining_micros`, maximising their total priority; defer the rest."""
    _validate(tasks, remaining_micros)
    capacity = remaining_micros // MICROS_PER_CENT
    free: list[PlanTask] = []
    candidates: list[tuple[PlanTask, int]] = []  # (task, cost in cents)
    deferred: list[Deferred] = []
    for task in tasks:
        cents = None if task.cost_micros is None else -(-task.cost_micros // MICROS_PER_CENT)
        if task.deadline is not None and task.deadline <= now:
            deferred.append(Deferred(task, 'after_deadline', f'its deadline {task.deadline.isoformat()} has passed'))
        elif cents is None:
            deferred.append(Deferred(task, 'no_estimate', 'no estimate given and no history to estimate from'))
        elif task.priority < 0:
            deferred.append(Deferred(task, 'lower_value', 'a negative priority only lowers the total'))
        elif cents == 0:
            free.append(task)
        elif cents > capacity:
            deferred.append(Deferred(task, 'over_budget', f'costs {_usd(task.cost_micros)}, more than the '
                                     f'{_usd(capacity * MICROS_PER_CENT)} left (whole cents)'))
        elif task.priority == 0:
            deferred.append(Deferred(task, 'lower_value', 'priority 0 adds nothing for its cost'))
        else:
            candidates.append((task, cents))

    scale = 10 ** max((_places(t.priority) for t, _ in candidates), default=0)
    weights = [cents for _, cents in candidates]
    values = [int(t.priority * scale) for t, _ in candidates]
    chosen, method, bound, cells = _knapsack(weights, values, capacity, exact_work)
    picked = set(chosen)
    run_now = free + [t for i, (t, _) in enumerate(candidates) if i in picked]
    for i, (task, _) in enumerate(candidates):
        if i not in picked:
            deferred.append(Deferred(task, 'lower_value', 'fits alone, but the plan is worth more with other tasks'))
    run_now.sort(key=_run_order)
    deferred.sort(key=lambda d: (REASONS.index(d.reason), -d.task.priority, d.task.id))
    used = sum(t.cost_micros or 0 for t in run_now)
    return Plan(tuple(run_now), tuple(deferred), remaining_micros, used, sum((t.priority for t in run_now), 0),
                method, bound, cells, exact_work)


def _knapsack(weights: list[int], values: list[int], capacity: int,
              exact_work: int) -> tuple[list[int], Literal['exact', 'greedy'], Fraction, int]:
    """Indices chosen, method, bound and cells. Every weight is in 1..capacity and every value positive."""
    n = len(weights)
    if sum(weights) <= capacity:
        return list(range(n)), 'exact', Fraction(1), 0
    g = math.gcd(*weights)  # whole dollars, say: the same problem, a hundred times smaller
    weights, capacity = [w // g for w in weights], capacity // g
    gv = math.gcd(*values)
    values = [v // gv for v in values]
    cells = n * (min(capacity, sum(values)) + 1)
    order = sorted(range(n), key=lambda i: (-Fraction(values[i], weights[i]), -values[i]))
    greedy = _greedy(order, weights, values, capacity)
    value = sum(values[i] for i in greedy)
    upper = _fractional_bound(order, weights, values, capacity)
    if value == math.floor(upper):  # integer values: nothing can beat the greedy
        return greedy, 'exact', Fraction(1), cells
    exact = _pareto(order, weights, values, capacity, value, math.floor(upper), exact_work)
    if exact is not None:
        return exact or greedy, 'exact', Fraction(1), cells
    return greedy, 'greedy', max(GREEDY_BOUND, value / upper), cells


def _greedy(order: list[int], weights: list[int], values: list[int], capacity: int) -> list[int]:
    """By priority per dollar, skipping what no longer fits; or the single most valuable task if that is worth
    more. The better of the two is at least half the optimum (the fractional optimum is at most their sum)."""
    chosen, left = [], capacity
    for i in order:
        if weights[i] <= left:
            chosen.append(i)
            left -= weights[i]
    best = max(order, key=lambda i: values[i])
    return [best] if values[best] > sum(values[i] for i in chosen) else chosen


def _fractional_bound(order: list[int], weights: list[int], values: list[int], capacity: int) -> Fraction:
    total, left = Fraction(0), capacity
    for i in order:
        if weights[i] >= left:
            return total + Fraction(values[i] * left, weights[i])
        total += values[i]
        left -= weights[i]
    return total


def _pareto(order: list[int], weights: list[int], values: list[int], capacity: int, lower: int, upper: int,
            work_limit: int) -> list[int] | None:
    """The items of a most valuable set within capacity ([] when none beats `lower`, the greedy's value), or None
    when the frontier outgrew `work_limit` states. States are (cost, value, chain of items taken) with costs and
    values strictly increasing; a state survives only if the fractional relaxation of the items still to come
    could lift it above the best set found so far, and the search stops when that reaches `upper`."""
    ws = [weights[i] for i in order]
    vs = [values[i] for i in order]
    n = len(ws)
    pw, pv = [0] * (n + 1), [0] * (n + 1)
    for k in range(n):
        pw[k + 1], pv[k + 1] = pw[k] + ws[k], pv[k] + vs[k]
    costs: list[int] = [0]
    vals: list[int] = [0]
    chains: list[Any] = [None]
    best: Any = False  # the chain of the best set found by the search; False: none beat the greedy yet
    work = 0
    for k in range(n):
        w, v = ws[k], vs[k]
        shifted = bisect_right(costs, capacity - w)
        new_c: list[int] = []
        new_v: list[int] = []
        new_ch: list[Any] = []
        base_w, base_v = pw[k + 1], pv[k + 1]
        i = j = 0
        m = len(costs)
        last = -1
        while i < m or j < shifted:
            if j >= shifted or (i < m and (costs[i] < costs[j] + w or
                                           (costs[i] == costs[j] + w and vals[i] >= vals[j] + v))):
                c, val, chain = costs[i], vals[i], chains[i]
                i += 1
            else:
                c, val, chain = costs[j] + w, vals[j] + v, (k, chains[j])
                j += 1
            if val <= last:
                continue  # a cheaper state is worth at least as much
            last = val
            if val > lower:
                lower, best = val, chain
                if lower >= upper:
                    return _items(best, order)
            left = capacity - c  # what this state can still reach, at most: items k+1.., the last one in part
            t = bisect_right(pw, base_w + left, k + 1) - 1
            reach = val + pv[t] - base_v
            if t < n:
                reach += (left - (pw[t] - base_w)) * vs[t] // ws[t]
            if reach <= lower:
                continue
            new_c.append(c)
            new_v.append(val)
            new_ch.append(chain)
        if not new_c:
            break
        costs, vals, chains = new_c, new_v, new_ch
        work += len(costs)
        if work > work_limit:
            return None
    return [] if best is False else _items(best, order)


def _items(chain: Any, order: list[int]) -> list[int]:
    taken = []
    while chain is not None:
        taken.append(order[chain[0]])
        chain = chain[1]
    return taken


def _validate(tasks: Sequence[PlanTask], remaining_micros: int) -> None:
    if remaining_micros < 0:
        raise Invalid('remaining_usd: must not be negative')
    if len(tasks) > MAX_TASKS:
        raise Invalid(f'tasks: at most {MAX_TASKS:,} tasks, got {len(tasks):,}')
    seen: set[str] = set()
    for index, task in enumerate(tasks):
        if not task.id:
            raise Invalid(f'tasks.{index}.id: must not be empty')
        if task.id in seen:
            raise Invalid(f'tasks.{index}.id: duplicate id {task.id!r}')
        seen.add(task.id)
        if isinstance(task.priority, Decimal) and not task.priority.is_finite():
            raise Invalid(f'tasks.{index}.priority: must be a finite number')
        if task.cost_micros is not None and task.cost_micros < 0:
            raise Invalid(f'tasks.{index}.estimated_cost_usd: must not be negative')


def _places(priority: Priority) -> int:
    if isinstance(priority, int):
        return 0
    exponent = priority.as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def _run_order(task: PlanTask) -> tuple[Any, ...]:
    """Free tasks first, then priority per dollar, higher priority and earlier deadline breaking ties."""
    cost = task.cost_micros or 0
    ratio = Fraction(task.priority) / cost if cost else Fraction(0)
    deadline = task.deadline.timestamp() if task.deadline else math.inf
    return (cost > 0, -ratio, -task.priority, deadline, task.id)


def _number(value: Priority) -> int | float:
    if isinstance(value, int) or value == value.to_integral_value():
        return int(value)
    return float(value)


def _usd(micros: int | None) -> str:
    return format_usd(micros or 0)


# --- database layer ----------------------------------------------------------------------------------------------

def history_estimates(conn: Connection) -> tuple[dict[str, int], int | None]:
    """The median actual cost of each agent's newest finished tasks that have spend, and of everyone's."""
    spend = TASK_SPEND.c
    rows = conn.execute(select(TASKS.c.agent_id, spend.cost_micros)
                        .select_from(TASKS.join(TASK_SPEND, spend.task_id == TASKS.c.id))
                        .where(TASKS.c.status == 'done', spend.requests > 0)
                        .order_by(TASKS.c.updated_at.desc(), TASKS.c.id).limit(HISTORY_ROWS)).all()
    by_agent: dict[str, list[int]] = {}
    for agent_id, cost in rows:
        if agent_id is not None and len(by_agent.setdefault(agent_id, [])) < HISTORY_PER_AGENT:
            by_agent[agent_id].append(cost)
    overall = median_micros([cost for _, cost in rows])
    # every list holds a cost, so no median is None
    medians = {agent: m for agent, costs in by_agent.items() if (m := median_micros(costs)) is not None}
    return medians, overall


def median_micros(costs: Iterable[int]) -> int | None:
    """The median, rounded up to a whole micro-dollar (an estimate errs on the side of cost)."""
    ordered = sorted(costs)
    if not ordered:
        return None
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return -(-(ordered[middle - 1] + ordered[middle]) // 2)


def estimate_missing(conn: Connection, tasks: Sequence[PlanTask]) -> list[PlanTask]:
    """Tasks without a cost get the median of their agent's history, else of all agents'; else stay without."""
    if all(t.cost_micros is not None for t in tasks):
        return list(tasks)
    by_agent, overall = history_estimates(conn)
    filled = []
    for task in tasks:
        if task.cost_micros is None:
            if task.agent_id is not None and task.agent_id in by_agent:
                task = replace(task, cost_micros=by_agent[task.agent_id], estimate_basis='agent')
            elif overall is not None:
                task = replace(task, cost_micros=overall, estimate_basis='all_agents')
        filled.append(task)
    return filled


def open_tasks(conn: Connection, limit: int = OPEN_TASKS) -> list[PlanTask]:
    """Pending tasks from the tasks table, highest priority first."""
    columns = (TASKS.c.id, TASKS.c.title, TASKS.c.agent_id, TASKS.c.priority, TASKS.c.estimated_cost_micros,
               TASKS.c.deadline)
    rows = conn.execute(select(*columns).where(TASKS.c.status == 'pending')
                        .order_by(TASKS.c.priority.desc(), TASKS.c.id).limit(limit))
    return [PlanTask(r.id, r.priority, r.estimated_cost_micros, r.deadline, r.agent_id,
                     r.title) for r in rows]


def plan_open_tasks(conn: Connection, remaining_micros: int | None, now: datetime) -> PlanOut | None:
    """The dashboard's plan for the pending tasks within what is left today; None without a daily limit."""
    if remaining_micros is None:
        return None
    return plan(estimate_missing(conn, open_tasks(conn)), remaining_micros, now, DASHBOARD_WORK).as_dict()

