"""The usage explorer at /usage (NiceGUI's simulated user): filters, keyset pages, an event's details, live new calls
and the downloads, for a logged-in user too (the API's export asks for a token a page does not hold)."""
from __future__ import annotations

import asyncio
import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from nicegui import ui
from nicegui.testing import User

from app import runtime
from services.core.access import Role
from tests.pages.test_login import add_user, log_in
from tests.support.pages import PATIENT


def record_many(count: int, prefix: str = 'ev', **fields: Any) -> None:
    """`count` events a second apart, the newest numbered 0, ending a minute ago (ids `prefix-n`)."""
    now = datetime.now(UTC) - timedelta(minutes=1)
    runtime.current().ledger.record_batch([
        {'model': 'gpt-4o', 'provider': 'openai', 'input_tokens': 100 + n, 'output_tokens': 10,
         'event_id': f'{prefix}-{n}', 'ts': (now - timedelta(seconds=n)).isoformat(), 'agent_id': f'agent-{n % 3}',
         **fields} for n in range(count)])


def table(user: User) -> ui.table:
    found = user.find(kind=ui.table, marker='usage-table').elements.pop()
    assert isinstance(found, ui.table)
    return found


def shown(user: User) -> list[str]:
    return [row['event_id'] for row in table(user).rows]


async def apply(user: User, **values: str) -> None:
    for marker, value in values.items():
        element = user.find(marker=f'usage-{marker}').elements.pop()
        element.value = value  # type: ignore[attr-defined]
    user.find(marker='usage-apply').click()
    await asyncio.sleep(0.2)


async def test_pages_of_fifty_newest_first_and_back(user: User) -> None:
    record_many(120)
    await user.open('/usage')
    await user.should_see('Page 1 · 50 events, newest first')
    assert shown(user) == [f'ev-{n}' for n in range(50)]
    user.find(marker='usage-older').click()
    await user.should_see('Page 2 · 50 events')
    assert shown(user) == [f'ev-{n}' for n in range(50, 100)]
    user.find(marker='usage-older').click()
    await user.should_see('Page 3 · 20 events')
    assert shown(user) == [f'ev-{n}' for n in range(100, 120)]
    assert not user.find(marker='usage-older').elements.pop().enabled  # type: ignore[attr-defined]
    user.find(marker='usage-newer').click()
    await user.should_see('Page 2 · 50 events')
    assert shown(user)[0] == 'ev-50'


async def test_filters_narrow_the_list(user: User) -> None:
    record_many(9)
    record_many(2, 'tagged', agent_id='lonely', tags=['eval'], cost_usd='0.5')
    await user.open('/usage')
    await user.should_see('Page 1 · 11 events')
    await apply(user, agent_id='agent-1')
    assert shown(user) == ['ev-1', 'ev-4', 'ev-7']
    await apply(user, agent_id='', tag='eval')
    assert [row['agent'] for row in table(user).rows] == ['lonely', 'lonely']
    assert {row['source'] for row in table(user).rows} == {'reported'}
    await apply(user, tag='', cost_source='reported')
    assert len(shown(user)) == 2
    tomorrow = (datetime.now(runtime.current().settings.zone) + timedelta(days=1)).date().isoformat()
    await apply(user, cost_source='', **{'from': tomorrow})
    assert shown(user) == []
    await user.should_see('Page 1 · 0 events')
    await apply(user, **{'from': '2026-13-40'})
    await user.should_see('from: not a date')


async def test_a_row_opens_the_event(user: User) -> None:
    runtime.current().ledger.record({'model': 'gpt-4o', 'provider': 'openai', 'input_tokens': 1200,
                                     'output_tokens': 300, 'cache_read_tokens': 800, 'agent_id': 'coder',
                                     'session_id': 's-9', 'tags': ['eval'], 'metadata': {'prompt': 'summarise'},
                                     'event_id': 'the-one'})
    await user.open('/usage')
    await user.should_see('Page 1 · 1 events')
    [row] = table(user).rows
    user.find(marker='usage-table').trigger('open', row['id'])  # what the row's click (or Enter) emits
    await user.should_see('Cache read tokens')
    await user.should_see('800')
    await user.should_see('priced by SpendGauge from the tokens')
    await user.should_see('"prompt": "summarise"')


async def test_an_image_call_shows_what_it_used(user: User) -> None:
    runtime.current().ledger.record({'model': 'dall-e-3', 'provider': 'openai', 'kind': 'image', 'cost_usd': '0.24',
                                     'images': {'count': 2, 'size': '1024x1792', 'quality': 'hd'},
                                     'event_id': 'the-image'})
    await user.open('/usage')
    [row] = table(user).rows
    user.find(marker='usage-table').trigger('open', row['id'])
    await user.should_see('Used')
    await user.should_see('2 images (1024x1792, hd)')


async def test_the_first_page_shows_new_calls_live(user: User) -> None:
    record_many(3)
    await user.open('/usage')
    await user.should_see('Page 1 · 3 events')
    await asyncio.to_thread(runtime.current().ledger.record, {'model': 'gpt-4o', 'provider': 'openai',
                                                              'input_tokens': 5, 'event_id': 'fresh'})
    await user.should_see('Page 1 · 4 events', retries=PATIENT)
    assert shown(user)[0] == 'fresh'


async def test_export_downloads_the_filtered_set(user: User) -> None:
    record_many(5)
    record_many(1, 'formula', agent_id='=HYPERLINK(1)')
    await user.open('/usage')
    await user.should_see('Page 1 ·')
    await apply(user, agent_id='agent-0')
    user.find(marker='usage-export-csv').click()
    response = await user.download.next()
    assert response.status_code == 200, response.text
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [r['event_id'] for r in rows] == ['ev-0', 'ev-3']
    await apply(user, agent_id='=HYPERLINK(1)')
    user.find(marker='usage-export-jsonl').click()
    response = await user.download.next()
    assert response.headers['content-type'].startswith('application/x-ndjson')
    assert response.text.count('\n') == 1 and '"=HYPERLINK(1)"' in response.text


async def test_a_logged_in_user_downloads_and_a_stranger_does_not(user: User) -> None:
    add_user('reader', Role.READ)
    record_many(2)
    await log_in(user, 'reader')
    await user.open('/usage')
    await user.should_see('Page 1 · 2 events')
    user.find(marker='usage-export-csv').click()
    response = await user.download.next()
    assert response.status_code == 200 and 'ev-1' in response.text
    await user.open('/sessions')
    user.find(marker='export-csv').click()
    response = await user.download.next()
    assert response.status_code == 200 and response.text.startswith('session_id,')  # it was a 401 from the API
    await user.open('/reports')
    await user.should_see('Spend summary')
    user.find(marker='export-md').click()
    response = await user.download.next()
    assert response.status_code == 200 and response.text.startswith('# Spend summary')  # a 401 too
    transport = httpx.ASGITransport(app=user.http_client._transport.app)  # type: ignore[attr-defined]
    async with httpx.AsyncClient(transport=transport, base_url='http://127.0.0.1') as stranger:
        for path in ('/download/usage.csv', '/download/sessions.csv', '/download/reports/summary'):
            refused = await stranger.get(path)
            assert refused.status_code in (302, 303, 307) and refused.headers['location'].startswith('/login')


async def test_a_link_with_a_filter_opens_the_list_filtered(user: User) -> None:
    record_many(9)
    await user.open('/usage?agent_id=agent-2&channel=ignored')
    await user.should_see('Page 1 · 3 events')
    assert shown(user) == ['ev-2', 'ev-5', 'ev-8']
    assert user.find(marker='usage-agent_id').elements.pop().value == 'agent-2'  # type: ignore[attr-defined]


async def test_sorted_by_cost_the_dearest_calls_come_first(user: User) -> None:
    record_many(5)  # 100 to 104 input tokens: the oldest is the dearest
    record_many(1, 'big', cost_usd='2.50')
    await user.open('/usage')
    await apply(user, sort='cost')
    await user.should_see('Page 1 · 6 events, dearest first')
    assert shown(user) == ['big-0', 'ev-4', 'ev-3', 'ev-2', 'ev-1', 'ev-0']
    user.find(marker='usage-export-csv').click()
    response = await user.download.next()
    assert [row['event_id'] for row in csv.DictReader(io.StringIO(response.text))] == shown(user)
