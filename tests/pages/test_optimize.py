"""The Optimise page through NiceGUI's simulated user: the optimiser's table for a period or one agent, the note
that it is about cost only, and what the context-window fit rests on."""
from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from nicegui import ui
from nicegui.elements.mixins.value_element import ValueElement
from nicegui.testing import User

from app import runtime


def record(agent: str, model: str, input_tokens: int, output_tokens: int) -> None:
    runtime.current().ledger.record({'provider': 'openai', 'model': model, 'agent_id': agent,
                                     'ts': datetime.now(UTC).isoformat(), 'input_tokens': input_tokens,
                                     'output_tokens': output_tokens})


def rows(user: User) -> list[dict]:
    return user.find(kind=ui.table, marker='optimize-table').elements.pop().rows


async def test_the_table_re_prices_each_agent_and_says_it_is_about_cost_only(user: User) -> None:
    record('planner', 'gpt-4o', 20_000, 1_000)  # $0.06
    record('coder', 'gpt-4o-mini', 10_000, 500)
    await user.open('/optimize')
    await user.should_see('Cost only')
    await user.should_see('Context-window fit from the newest 2 calls of the period')
    table = rows(user)
    what = [row['what'] for row in table]
    assert what[0] == 'planner: all models' and '\u00a0\u00a0openai/gpt-4o' in what and 'coder: all models' in what
    assert table[0]['cost'] == '$0.060000'
    first = table[1]  # the planner's cheapest candidate on all of its calls
    assert first['what'].startswith('\u00a0\u00a0→ ') and first['saving'].startswith('$0.0')
    assert first['fit'] == '100.0% of 1'
    user.find(kind=ValueElement, marker='optimize-agent').elements.pop().value = 'coder'
    user.find(marker='optimize-agent').trigger('change')
    await user.should_see('Context-window fit from the newest 1 call of the period')
    assert rows(user)[0]['what'] == 'coder: all models'
    user.find(kind=ValueElement, marker='optimize-period').elements.pop().value = 'month'
    await user.should_see('Context-window fit from the newest 1 call of the period')
    assert rows(user)[0]['cost'] != ''


async def test_new_calls_show_without_reloading_the_page(user: User) -> None:
    record('planner', 'gpt-4o', 20_000, 1_000)
    await user.open('/optimize')
    await user.should_see('Cost only')
    assert 'latecomer: all models' not in [row['what'] for row in rows(user)]
    record('latecomer', 'gpt-4o', 50_000, 2_000)  # the dearest now: first
    for _ in range(50):
        if rows(user)[0]['what'] == 'latecomer: all models':
            break
        await asyncio.sleep(0.1)
    assert rows(user)[0]['what'] == 'latecomer: all models'
