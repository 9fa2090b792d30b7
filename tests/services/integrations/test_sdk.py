"""The Python client against a real server: check before, record after, block before the money is spent."""
from __future__ import annotations

import itertools
import logging
import threading
import time
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
    with pytest.raises(ValueError, match='cannot be negative'):
        SpendGauge(url, busy_retries=-1)


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


def test_a_busy_server_gets_the_record_again_and_counts_it_once(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    """One ingest worker and no queue: while batches keep it busy, a record is answered 503; the SDK sends it again
    after the Retry-After, under the same event id, until it is taken."""
    server = start_server(tmp_path, SPENDGAUGE_DAILY_LIMIT_USD='none', SPENDGAUGE_INGEST_WORKERS='1',
                          SPENDGAUGE_INGEST_QUEUE='0')
    stop = threading.Event()
    busy_from = threading.Event()

    def keep_ingest_busy() -> None:  # back to back until told to stop, and for at least two seconds
        started = time.monotonic()
        with httpx.Client(base_url=server.api, timeout=60) as client:
            for n in itertools.count():
                events = [{'event_id': f'hog-{n}-{i}', 'model': 'gpt-4o-mini', 'cost_usd': '0.001'}
                          for i in range(5000)]
                busy_from.set()
                assert client.post('/usage/batch', json={'events': events}).status_code in (200, 503)
                if stop.is_set() and time.monotonic() - started > 2:
                    return

    hog = threading.Thread(target=keep_ingest_busy)
    hog.start()
    try:
        busy_from.wait(10)
        time.sleep(0.2)  # the first batch is being stored
        caplog.set_level(logging.INFO, logger='services.integrations.sdk')
        with SpendGauge(server.url, busy_retries=30, max_retry_wait_s=0.5) as sg:
            stop.set()
            recorded = sg.record(model='gpt-4o', agent_id='patient', input_tokens=10, cost_usd='0.25')
        hog.join(60)
        assert recorded is not None and recorded['cost_micros'] == 250_000
        assert any('SpendGauge busy (HTTP 503)' in r.getMessage() for r in caplog.records), 'it was refused first'
        with server.client() as api:
            assert [e['cost_micros'] for e in api.get('/usage', params={'agent_id': 'patient'}).json()['items']] \
                == [250_000]
    finally:
        stop.set()
        hog.join(60)
        server.stop()


def test_calls_of_other_kinds_carry_their_units(policed: Server) -> None:
    with SpendGauge(policed.url) as sg:
        with sg.guard(agent_id='sdk-kinds', model='whisper-1', provider='openai') as call:
            call.usage(kind='audio_transcription', audio_seconds=12.5)
        assert call.recorded is not None
        # whisper-1 at $0.006 a minute (OpenAI's published price): 12.5 s = $0.00125
        assert (call.recorded['kind'], call.recorded['units'], call.recorded['cost_micros']) == \
            ('audio_transcription', {'audio_seconds': 12.5}, 1_250)
        # tts-1 at $15 per million characters
        spoken = sg.record(model='tts-1', provider='openai', agent_id='sdk-kinds', kind='audio_speech',
                           characters=1_234)
        assert spoken is not None and (spoken['units'], spoken['cost_micros']) == ({'characters': 1_234}, 18_510)
        with pytest.raises(ValueError, match=r'images\.count'):
            sg.record(model='dall-e-3', provider='openai', images={'count': 0})
