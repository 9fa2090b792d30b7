"""A real LiteLLM proxy process with SpendGaugeLogger as its callback, in front of a real SpendGauge server, driven
by the real OpenAI SDK: recording, enforcement, buffering while SpendGauge is down, and streaming.

The proxy runs offline: mock responses in its model list, LiteLLM's bundled price map, no telemetry, no database.
It takes 15-20 s to start, so one proxy (and one SpendGauge server) serves the whole module.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.api import uid, usage
from tests.support.servers import Server, clean_env, free_port, start_server
from tests.support.unavailable import unavailable

TOKEN = 'sg-proxy-test-token'
MASTER_KEY = 'sk-proxy-test-master-key'
MESSAGES = [{'role': 'user', 'content': 'hi'}]
READY_TIMEOUT_S = 180  # a cold start on a busy CI machine; it is about 16 s here
EVENT_TIMEOUT_S = 30
CONFIG = """\
model_list:
  - model_name: gpt-4o
    litellm_params: {model: openai/gpt-4o, api_key: sk-fake, mock_response: "Hello from the mock"}
litellm_settings:
  telemetry: false
  callbacks: services.integrations.litellm_logger.spendgauge_callback
"""
# The callback as a proxy runs it: from its environment. Short intervals so that events arrive within the test.
CALLBACK_ENV = {'SPENDGAUGE_API_TOKEN': TOKEN, 'SPENDGAUGE_ENFORCE': '1', 'SPENDGAUGE_CHECK_TIMEOUT_S': '5',
                'SPENDGAUGE_FLUSH_INTERVAL_S': '0.05', 'SPENDGAUGE_MAX_BACKOFF_S': '0.5',
                'SPENDGAUGE_EXIT_TIMEOUT_S': '1'}


def require_proxy() -> None:
    """The proxy extra is part of the dev extra; without it the test fails in CI and is skipped elsewhere."""
    try:
        import litellm.proxy.proxy_server  # noqa: F401
        import openai  # noqa: F401
    except ImportError as exc:
        unavailable(f"the LiteLLM proxy cannot start ({exc}): pip install -e '.[dev]' (litellm[proxy])")


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, f'timed out waiting for {what}'
        time.sleep(0.05)
    return result


@dataclass
class SpendGauge:
    """The SpendGauge server the proxy reports to; it can be stopped and started again on its port and database."""

    workdir: Path
    port: int
    server: Server | None = None

    def start(self) -> Server:
        database_url = self.server.database_url if self.server else None
        self.server = start_server(self.workdir, database_url, token=TOKEN, port=self.port)
        return self.server

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    def client(self) -> httpx.Client:
        assert self.server is not None
        return self.server.client()

    def events(self, agent: str) -> list[dict[str, Any]]:
        with self.client() as api:
            return usage(api, agent_id=agent)

    def wait_for_events(self, agent: str, count: int = 1) -> list[dict[str, Any]]:
        return wait_for(lambda: len(found := self.events(agent)) >= count and found, EVENT_TIMEOUT_S,
                        f'{count} event(s) of {agent}')


@dataclass
class Proxy:
    url: str
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors='replace')

    def answered(self, status: int) -> int:
        """Chat requests the proxy answered with `status` so far (uvicorn's access log)."""
        return self.log().count(f'"POST /v1/chat/completions HTTP/1.1" {status}')

    def stop(self) -> None:
        """SIGINT to the whole process group (the proxy may fork workers), SIGKILL when it does not go."""
        if self.process.poll() is not None:
            return
        for sig, grace in ((signal.SIGINT, 20), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.process.pid, sig)
                self.process.wait(grace)
                return
            except subprocess.TimeoutExpired:
                continue
            except ProcessLookupError:
                return


@pytest.fixture(scope='module')
def spendgauge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SpendGauge]:
    require_proxy()
    backend = SpendGauge(tmp_path_factory.mktemp('spendgauge'), free_port())
    backend.start()
    yield backend
    backend.stop()


def start_proxy(workdir: Path, spendgauge_url: str) -> Proxy:
    (workdir / 'config.yaml').write_text(CONFIG)
    port = free_port()
    env = clean_env(LITELLM_LOCAL_MODEL_COST_MAP='True', LITELLM_TELEMETRY='False', LITELLM_MASTER_KEY=MASTER_KEY,
                    LITELLM_LOG='INFO', SPENDGAUGE_URL=spendgauge_url, **CALLBACK_ENV)
    log_path = workdir / 'proxy.log'
    with open(log_path, 'w') as log:
        process = subprocess.Popen([sys.executable, '-m', 'litellm.proxy.proxy_cli', '--config', 'config.yaml',
                                    '--host', '127.0.0.1', '--port', str(port)], cwd=workdir, env=env,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    proxy = Proxy(f'http://127.0.0.1:{port}', process, log_path)
    try:
        wait_for(lambda: _alive(proxy), READY_TIMEOUT_S, 'the LiteLLM proxy to answer')
    except BaseException:
        proxy.stop()
        raise
    return proxy


def _alive(proxy: Proxy) -> bool:
    if proxy.process.poll() is not None:
        raise RuntimeError(f'the LiteLLM proxy exited with {proxy.process.returncode}:\n{proxy.log()[-5000:]}')
    try:
        return httpx.get(proxy.url + '/health/liveliness', timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture(scope='module')
def proxy(spendgauge: SpendGauge, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    assert spendgauge.server is not None
    started = time.monotonic()
    running = start_proxy(tmp_path_factory.mktemp('proxy'), spendgauge.server.url)
    sys.stderr.write(f'LiteLLM proxy ready in {time.monotonic() - started:.1f} s\n')
    yield running
    running.stop()


@pytest.fixture
def sdk(proxy: Proxy) -> Iterator[tuple[Any, list[Any]]]:
    """The OpenAI SDK on the proxy, with its usual retries, and every HTTP request it sends."""
    import httpx2  # the HTTP client of the OpenAI SDK (a fork of httpx)
    import openai

    sent: list[httpx2.Request] = []
    http = httpx2.Client(event_hooks={'request': [sent.append]}, timeout=60)
    client = openai.OpenAI(base_url=proxy.url + '/v1', api_key=MASTER_KEY, max_retries=2, http_client=http)
    yield client, sent
    client.close()


def agent_header(agent: str) -> dict[str, str]:
    return {'x-spendgauge-agent-id': agent}


def test_a_call_through_the_proxy_is_recorded_once(sdk: Any, spendgauge: SpendGauge) -> None:
    client, _ = sdk
    agent = uid('agent')
    raw = client.chat.completions.with_raw_response.create(model='gpt-4o', messages=MESSAGES, user='alice',
                                                            extra_headers=agent_header(agent))
    completion = raw.parse()
    [event] = spendgauge.wait_for_events(agent)
    assert completion.usage is not None
    # the mock answers 10 prompt and 20 completion tokens: 10 x $2.50 + 20 x $10.00 per million = $0.000225
    assert (event['input_tokens'], event['output_tokens']) == \
        (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (10, 20)
    assert (event['cost_micros'], event['cost_source']) == (225, 'reported')
    assert raw.headers['x-litellm-response-cost'].startswith('0.000225')
    assert (event['provider'], event['model'], event['user_id']) == ('openai', 'gpt-4o', 'alice')
    assert (event['source'], event['channel'], event['event_id']) == \
        ('litellm_callback', 'litellm', raw.headers['x-litellm-call-id'])
    # a later call has arrived, so anything the first one would send twice would be there too (sent in order)
    later = uid('agent')
    client.chat.completions.create(model='gpt-4o', messages=MESSAGES, extra_headers=agent_header(later))
    spendgauge.wait_for_events(later)
    assert len(spendgauge.events(agent)) == 1


def test_the_proxy_refuses_a_call_the_budget_blocks_and_the_sdk_does_not_retry(sdk: Any, proxy: Proxy,
                                                                                spendgauge: SpendGauge) -> None:
    import openai

    client, sent = sdk
    agent = uid('agent')
    with spendgauge.client() as api:
        assert api.post('/usage', json={'agent_id': agent, 'model': 'gpt-4o', 'provider': 'openai',
                                        'cost_usd': '0.02'}).status_code == 201
        assert api.post('/policies', json={'name': uid('cap'), 'scope': 'agent', 'scope_value': agent,
                                           'limit_usd': '0.01', 'action': 'block'}).status_code == 201
    refused_before = proxy.answered(429)
    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(model='gpt-4o', messages=MESSAGES, extra_headers=agent_header(agent))
    response = refused.value.response
    assert response.status_code == 429
    assert response.headers['x-should-retry'] == 'false'
    assert 'SpendGauge block' in response.text and agent in response.text  # the policy's reason names the agent
    assert len(sent) == 1  # the SDK retries a 429 twice unless told not to
    assert wait_for(lambda: proxy.answered(429) - refused_before, 10, 'the access log') == 1
    other = uid('agent')  # the policy is the agent's own: another goes ahead
    client.chat.completions.create(model='gpt-4o', messages=MESSAGES, extra_headers=agent_header(other))
    spendgauge.wait_for_events(other)
    assert len(spendgauge.events(agent)) == 1  # only the usage recorded above


def test_spendgauge_down_the_proxy_serves_and_delivers_once_it_is_back(sdk: Any, spendgauge: SpendGauge) -> None:
    client, _ = sdk
    agent = uid('agent')
    spendgauge.stop()
    try:
        completion = client.chat.completions.create(model='gpt-4o', messages=MESSAGES,
                                                    extra_headers=agent_header(agent))
        assert completion.choices[0].message.content == 'Hello from the mock'  # the budget check failed open
    finally:
        spendgauge.start()
    [event] = spendgauge.wait_for_events(agent)  # kept by the callback and sent again
    assert (event['cost_micros'], event['input_tokens'], event['output_tokens']) == (225, 10, 20)


def test_a_streamed_call_is_recorded_with_its_usage_and_cost(sdk: Any, spendgauge: SpendGauge) -> None:
    client, _ = sdk
    agent = uid('agent')
    stream = client.chat.completions.create(model='gpt-4o', messages=MESSAGES, stream=True,
                                            stream_options={'include_usage': True}, extra_headers=agent_header(agent))
    chunks = list(stream)
    text = ''.join(c.choices[0].delta.content or '' for c in chunks if c.choices)
    assert text == 'Hello from the mock'
    usage_chunk = next(c.usage for c in reversed(chunks) if c.usage is not None)
    [event] = spendgauge.wait_for_events(agent)
    assert (event['input_tokens'], event['output_tokens']) == \
        (usage_chunk.prompt_tokens, usage_chunk.completion_tokens)
    assert event['input_tokens'] > 0 and event['output_tokens'] > 0
    # LiteLLM's cost of those tokens: $2.50 and $10.00 per million
    expected = round(event['input_tokens'] * 2.5 + event['output_tokens'] * 10)
    assert (event['cost_micros'], event['cost_source']) == (expected, 'reported')
