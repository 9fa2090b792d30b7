"""The Python client against a real server: check before, record after, block before the money is spent."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from services.integrations.sdk import BudgetBlocked, SpendGauge
from tests.support.servers import Server, free_port, start_server


@pytest.fixture(scope='module')
def policed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server where agent 'sdk-agent' may spend $1 a day, then is blocked (and no global limit)."""
    srv = start_server(tmp_path_factory.mktemp('sdk'), SPENDGAUGE_DAILY_LIMIT_USD='none')
    with srv.client() as api:
        response = api.post('/policies', json={'name': 'sdk agent daily', 'scope': 'agent', 'scope_value': 'sdk-agent',
                                               'limit_usd': '1.00', 'action': 'block'})
        assert response.status_code == 201, response.text
    yield srv
    srv.stop()


def test_guard_checks_records_and_then_blocks(policed: Server) -> None:
    sg = SpendGauge(policed.url)
    with sg.guard(agent_id='sdk-agent', session_id='s1', model='gpt-4o', provider='openai',
                  estimated_cost_usd='0.50') as call:
        assert call.decision['decision'] == 'allow'
        call.usage(input_tokens=1000, output_tokens=100, cost_usd='0.90')
    assert call.recorded is not None and call.recorded['cost_micros'] == 900_000
    assert call.recorded['agent_id'] == 'sdk-agent' and call.recorded['source'] == 'sdk'

    ran = []
    with pytest.raises(BudgetBlocked, match='would cross the limit'):
        with sg.guard(agent_id='sdk-agent', model='gpt-4o', estimated_cost_usd='0.20'):
            ran.append(True)
    assert ran == [], 'a blocked call is never made'
    assert sg.check(agent_id='sdk-agent', estimated_cost_usd='0.05')['decision'] in ('throttle', 'warn')
    assert sg.check(agent_id='other-agent', estimated_cost_usd='5')['decision'] == 'allow'
    sg.close()


def test_decorator_records_the_usage_of_the_result(policed: Server) -> None:
    sg = SpendGauge(policed.url)

    @sg.guarded(agent_id='decorated', model='gpt-4o', provider='openai',
                usage=lambda r: {'input_tokens': r.usage.prompt_tokens, 'output_tokens': r.usage.completion_tokens})
    def ask(prompt: str) -> SimpleNamespace:
        return SimpleNamespace(text=prompt.upper(), usage=SimpleNamespace(prompt_tokens=1000, completion_tokens=500))

    assert ask('hi').text == 'HI'
    with policed.client() as api:
        events = api.get('/usage', params={'agent_id': 'decorated'}).json()['items']
    assert [(e['input_tokens'], e['output_tokens'], e['cost_micros']) for e in events] == [(1000, 500, 7500)]
    sg.close()


def test_an_unreachable_server_fails_open_unless_asked_not_to(tmp_path: Path) -> None:
    url = f'http://127.0.0.1:{free_port()}'
    with SpendGauge(url, timeout=1) as sg:
        decision = sg.check(agent_id='a', estimated_cost_usd='1')
        assert decision['decision'] == 'allow' and 'unreachable' in decision['reasons'][0]
        assert sg.record(model='gpt-4o', input_tokens=1) is None
    with SpendGauge(url, timeout=1, fail_open=False) as strict, pytest.raises(httpx.TransportError):
        strict.check(agent_id='a', estimated_cost_usd='1')


def test_bad_requests_are_errors_not_silent_allows(policed: Server) -> None:
    with SpendGauge(policed.url) as sg:
        with pytest.raises(ValueError, match='estimated'):
            sg.check(agent_id='a', estimated_cost_usd='1', estimated_input_tokens=5, model='gpt-4o')
        with pytest.raises(ValueError, match='input_tokens'):
            sg.record(model='gpt-4o', input_tokens=-1)


def test_guards_at_once_count_each_others_reservations(policed: Server) -> None:
    """A guard holds its estimate until its usage is recorded: a second guard opened meanwhile sees it; a guard left
    by an exception without usage lets its hold go."""
    sg = SpendGauge(policed.url)
    agent = 'sdk-reserving'
    with policed.client() as api:
        assert api.post('/policies', json={'name': 'reserving', 'scope': 'agent', 'scope_value': agent,
                                           'limit_usd': '1.00', 'action': 'block'}).status_code == 201
    with sg.guard(agent_id=agent, model='gpt-4o', estimated_cost_usd='0.60') as first:
        assert first.decision['reservation']['event_id'] == first.event_id
        with pytest.raises(BudgetBlocked, match=r'\$0.60 held'):
            with sg.guard(agent_id=agent, model='gpt-4o', estimated_cost_usd='0.50'):
                pass
        first.usage(input_tokens=10, cost_usd='0.55')
    with pytest.raises(RuntimeError, match='the LLM call failed'):
        with sg.guard(agent_id=agent, model='gpt-4o', estimated_cost_usd='0.30'):
            raise RuntimeError('the LLM call failed')
    after = sg.check(agent_id=agent)['policies'][0]
    assert (after['spent_micros'], after['held_micros']) == (550_000, 0)
    sg.close()
