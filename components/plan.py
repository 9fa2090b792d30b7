"""The planner panel: the plan for the open tasks as `services.insights.planner` answers it, or None."""
from __future__ import annotations

from collections.abc import Sequence

from nicegui import ui

from services.core.display import format_usd, format_usd_sum, plural
from services.insights.planner import PlanItem, PlanOut

SHOWN = 8  # items per list; the rest are counted
REASON_TEXT = {'over_budget': 'over budget', 'lower_value': 'lower value', 'after_deadline': 'after deadline',
               'no_estimate': 'no estimate'}
REASON_COLOURS = {'over_budget': 'red', 'lower_value': 'grey', 'after_deadline': 'orange', 'no_estimate': 'amber'}


def plan_amounts(plan: PlanOut) -> tuple[str, str, str]:
    """Scheduled, left after and the budget, the first two adding up to the budget as displayed."""
    (scheduled, left), budget = format_usd_sum([plan['scheduled_cost_micros'], plan['remaining_after_micros']])
    return scheduled, left, budget


def plan_summary_text(plan: PlanOut) -> str:
    method = 'optimal' if plan['method'] == 'exact' else f'greedy, ≥ {plan["bound"]:.0%} of optimal'
    scheduled, _, budget = plan_amounts(plan)
    return (f'Run now: {plural(len(plan["run_now"]), "task")} for {scheduled} of {budget} · '
            f'total priority {plan["total_priority"]:,} ({method})')


def plan_panel(plan: PlanOut | None) -> None:
    """Two lists, run now and deferred (with the reason), and the budget left after the plan."""
    if plan is None:
        ui.label('No daily limit is set: every pending task can run').classes('text-grey').mark('plan-empty')
        return
    if not plan['run_now'] and not plan['defer']:
        ui.label('No pending tasks to plan').classes('text-grey').mark('plan-empty')
        return
    ui.label(plan_summary_text(plan)).classes('text-body1').mark('plan-summary')
    ui.label(f'Left after: {plan_amounts(plan)[1]}').classes('text-subtitle1 font-medium') \
        .mark('plan-left')
    with ui.element('div').classes('grid grid-cols-1 md:grid-cols-2 gap-4 w-full'):
        with ui.column().classes('gap-1').mark('plan-run-now'):
            ui.label('Run now, by priority per dollar').classes('text-caption text-grey')
            for item in plan['run_now'][:SHOWN]:
                _item(item)
            _more(plan['run_now'], 'Nothing fits the budget')
        with ui.column().classes('gap-1').mark('plan-defer'):
            ui.label('Deferred').classes('text-caption text-grey')
            for item in plan['defer'][:SHOWN]:
                with _item(item) as row:
                    row.props['data-reason'] = item['reason']
                    ui.badge(REASON_TEXT.get(item['reason'], item['reason']),
                             color=REASON_COLOURS.get(item['reason'], 'grey')).props('outline')
                    ui.tooltip(item['detail'])
            _more(plan['defer'], 'Nothing deferred')


def _item(item: PlanItem) -> ui.row:
    with ui.row().classes('w-full items-center gap-2 no-wrap').mark('plan-item') as row:
        row.props['data-task'] = item['id']
        ui.label(item.get('title') or item['id']).classes('min-w-0 break-words')
        ui.label(f'{_cost(item)} · priority {item["priority"]:,}').classes('text-caption text-grey text-no-wrap')
    return row


def _cost(item: PlanItem) -> str:
    if item['cost_micros'] is None:
        return 'no estimate'
    return f'{format_usd(item["cost_micros"])}{" (est.)" if item["estimated"] else ""}'


def _more(items: Sequence[PlanItem], empty: str) -> None:
    if not items:
        ui.label(empty).classes('text-caption text-grey')
    elif len(items) > SHOWN:
        ui.label(f'and {len(items) - SHOWN} more').classes('text-caption text-grey')
