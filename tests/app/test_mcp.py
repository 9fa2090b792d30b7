"""The MCP budget server, driven by the MCP SDK's own clients against a real server process on each database:
streamable HTTP at /mcp (the tools run in the server) and `python -m app mcp` over stdio (every tool a REST call).
The answers are compared with the REST API's, the tokens and roles are the REST API's, and what record_usage stores
is read back from the ledger."""
from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import ClientSession

from tests.support.api import assert_money, uid
from tests.support.mcp import TOOLS, call, http_session, refused, stdio_session
from tests.support.servers import Server, start_server

ADMIN = 'admin-' + 'm' * 30


@dataclass
class Setup:
    server: Server
    tokens: dict[str, str]  # role -> token
    admin: httpx.Client
    workdir: Path


@pytest.fixture
def setup(database_url: str, tmp_path: Path) -> Iterator[Setup]:
    """A server with tokens (so every call needs one) on each database: SQLite and PostgreSQL."""
    server = start_server(tmp_path, database_url=database_url, token=ADMIN)
    try:
        with server.client() as admin:
            tokens = {'admin': ADMIN}
            for role in ('read', 'ingest'):
                created = admin.post('/tokens', json={'name': f'mcp {role}', 'role': role})
                assert created.status_code == 201, created.text
                tokens[role] = created.json()['token']
            yield Setup(server, tokens, admin, tmp_path)
    finally:
        server.stop()


def run(test: Callable[[], Awaitable[None]]) -> None:
    anyio.run(test)


def events_of(admin: httpx.Client, agent: str) -> list[dict[str, Any]]:
    page = admin.get('/usage', params={'agent_id': agent, 'limit': 100})
    assert page.status_code == 200, page.text
    return page.json()['items']


async def tools_answer_as_the_rest_api(session: ClientSession, admin: httpx.Client) -> None:
    """Every tool, called through `session` as admin, against the REST API's own answers."""
    listed = (await session.list_tools()).tools
    assert {t.name for t in listed} == TOOLS
    for tool in listed:
        assert tool.description and tool.input_schema['type'] == 'object', tool
    schema = {t.name: t.input_schema for t in listed}
    assert schema['record_usage']['required'] == ['model']  # POST /usage's schema: only the model is required
    assert {'model', 'estimated_input_tokens', 'estimated_cost_usd', 'reserve'} <= set(schema['check_call']
                                                                                       ['properties'])
    agent = uid('agent')

    planned = {'agent_id': agent, 'model': 'gpt-4o', 'estimated_input_tokens': 1000, 'estimated_output_tokens': 500}
    checked = await call(session, 'check_call', **planned)
    assert checked == admin.post('/check', json=planned).json()
    assert checked['decision'] == 'allow' and assert_money(checked, 'estimated_cost') > 0

    key = uid('ev')
    usage = {'event_id': key, 'model': 'gpt-4o', 'agent_id': agent, 'input_tokens': 1000, 'output_tokens': 500}
    first = await call(session, 'record_usage', **usage)
    again = await call(session, 'record_usage', **usage)
    assert (first['status'], again['status']) == ('stored', 'duplicate')
    assert first['cost_micros'] == again['cost_micros'] == checked['estimated_cost_micros']  # priced as estimated
    stored = events_of(admin, agent)
    assert [e['event_id'] for e in stored] == [key]  # once, however often it was sent

    budget = await call(session, 'get_budget', agent_id=agent)
    assert budget['day'] == admin.get('/budget/summary').json()
    assert budget['day']['spent_micros'] >= first['cost_micros'] and budget['decision'] == 'allow'
    assert budget['day']['limit_micros'] == 5_000_000  # the default daily limit
    assert budget == admin.get('/budget/remaining', params={'agent_id': agent}).json()

    forecast = await call(session, 'get_forecast')
    rest = admin.get('/budget/forecast').json()
    assert forecast['day']['limit_micros'] == rest['day']['limit_micros'] == 5_000_000
    assert forecast['day']['spent_micros'] == rest['day']['spent_micros'] == budget['day']['spent_micros']
    assert forecast['day']['state'] == rest['day']['state'] and 'text' in forecast['day']

    cheaper = await call(session, 'suggest_cheaper_model', agent_id=agent)
    assert cheaper == admin.get('/optimize', params={'agent_id': agent, 'period': 'day'}).json()
    [mine] = cheaper['agents']
    assert mine['agent_id'] == agent and mine['actual_cost_micros'] == first['cost_micros']
    assert mine['candidates'], 'gpt-4o has cheaper OpenAI models to suggest'
    by_model = await call(session, 'suggest_cheaper_model', agent_id=agent, model='gpt-4o')
    assert [m['model'] for a in by_model['agents'] for m in a['models']] == ['gpt-4o']
    other = await call(session, 'suggest_cheaper_model', agent_id=agent, model='claude-3-haiku')
    assert other['agents'] == [] and other['note'].startswith('no calls on claude-3-haiku')


async def blocks_once_spent(session: ClientSession, admin: httpx.Client) -> None:
    """check_call and get_budget turn to block when the day's budget is spent through record_usage."""
    assert admin.put('/budget/limits/day', json={'limit_usd': '1'}).status_code == 200
    agent = uid('agent')
    planned = {'agent_id': agent, 'estimated_cost_usd': '0.10'}
    assert (await call(session, 'check_call', **planned))['decision'] == 'allow'
    await call(session, 'record_usage', event_id=uid('ev'), model='gpt-4o', agent_id=agent, cost_usd='1.00')
    blocked = await call(session, 'check_call', **planned)
    assert blocked['decision'] == 'block' and blocked['allowed'] is False and blocked['reasons'], blocked
    assert blocked == admin.post('/check', json=planned).json()
    budget = await call(session, 'get_budget', agent_id=agent)
    assert budget['decision'] == 'block' and budget['day']['remaining_micros'] == 0


def test_http_tools_answer_as_the_rest_api(setup: Setup) -> None:
    async def test() -> None:
        async with http_session(setup.server.url, ADMIN) as session:
            await tools_answer_as_the_rest_api(session, setup.admin)
            await blocks_once_spent(session, setup.admin)
    run(test)


def test_stdio_tools_call_the_running_server(setup: Setup) -> None:
    async def test() -> None:
        async with stdio_session(setup.server.url, ADMIN, setup.workdir) as session:
            await tools_answer_as_the_rest_api(session, setup.admin)
            await blocks_once_spent(session, setup.admin)
    run(test)


def test_http_roles_and_tokens(setup: Setup) -> None:
    """The REST API's tokens and roles: no token or a bad one gets 401 before any MCP; each tool needs the role of
    its REST route, and a refused call stores nothing."""
    url = setup.server.url + '/mcp'
    for headers in ({}, {'Authorization': 'Bearer not-a-token'}):
        answer = httpx.post(url, headers=headers, json={'jsonrpc': '2.0', 'id': 1, 'method': 'tools/list'})
        assert answer.status_code == 401 and 'token' in answer.json()['detail'], answer.text
    # a browser GET is not sent to /login: the endpoint answers for itself
    assert httpx.get(url).status_code == 401

    async def test() -> None:
        agent = uid('agent')
        async with http_session(setup.server.url, setup.tokens['read']) as reader:
            message = await refused(reader, 'record_usage', event_id=uid('ev'), model='gpt-4o', agent_id=agent,
                                    input_tokens=10)
            assert message == 'record_usage needs the ingest role; the token has read'
            assert 'ingest' in await refused(reader, 'check_call', agent_id=agent)
            assert (await call(reader, 'get_forecast'))['day']['limit_micros'] == 5_000_000
            assert (await call(reader, 'get_budget', agent_id=agent))['decision'] == 'allow'
            await call(reader, 'suggest_cheaper_model')
        async with http_session(setup.server.url, setup.tokens['ingest']) as ingester:
            assert (await call(ingester, 'check_call', agent_id=agent))['decision'] == 'allow'
            assert (await call(ingester, 'get_budget', agent_id=agent))['decision'] == 'allow'
            assert 'needs the read role' in await refused(ingester, 'get_forecast')
            assert 'needs the read role' in await refused(ingester, 'suggest_cheaper_model')
            await call(ingester, 'record_usage', model='gpt-4o', agent_id=agent, input_tokens=10)
        assert len(events_of(setup.admin, agent)) == 1  # the ingest token's; nothing of the read token's
        refusals = setup.admin.get('/sync/status').json()
        assert 'MCP record_usage' in str(refusals), 'the refusal is counted where the REST API counts its own'
    run(test)


def test_bad_input_is_a_tool_error(setup: Setup) -> None:
    """Invalid arguments answer a tool error that says what is wrong, as the REST API would; nothing is stored and
    the server goes on answering."""
    async def test() -> None:
        agent = uid('agent')
        async with http_session(setup.server.url, ADMIN) as session:
            assert 'model: needed to price estimated tokens' in await refused(
                session, 'check_call', agent_id=agent, estimated_input_tokens=5)
            assert 'either estimated tokens or estimated_cost_usd' in await refused(
                session, 'check_call', model='gpt-4o', estimated_input_tokens=5, estimated_cost_usd='1')
            assert 'cannot exceed input_tokens' in await refused(
                session, 'record_usage', model='gpt-4o', agent_id=agent, input_tokens=10, cache_read_tokens=50)
            assert 'input_tokens' in await refused(session, 'record_usage', model='gpt-4o', agent_id=agent,
                                                   input_tokens=-1)
            assert 'model' in await refused(session, 'record_usage', agent_id=agent, input_tokens=1)
            assert 'period' in await refused(session, 'suggest_cheaper_model', period='year')
            assert 'estimated_cost_usd' in await refused(session, 'check_call', estimated_cost_usd='lots')
            assert (await call(session, 'get_budget', agent_id=agent))['decision'] == 'allow'
        assert events_of(setup.admin, agent) == []
    run(test)


def test_stdio_refusals_carry_the_servers_reason(setup: Setup, tmp_path: Path) -> None:
    """Over stdio the server decides: a read token's record_usage is refused with the REST API's reason, and a
    server that does not answer is a tool error naming the URL, not a crash of the stdio server."""
    async def test() -> None:
        agent = uid('agent')
        async with stdio_session(setup.server.url, setup.tokens['read'], setup.workdir) as reader:
            message = await refused(reader, 'record_usage', model='gpt-4o', agent_id=agent, input_tokens=10)
            assert message == 'server answered 403: this needs the ingest role; the token has read'
            assert (await call(reader, 'get_budget', agent_id=agent))['decision'] == 'allow'
        async with stdio_session(setup.server.url, None, setup.workdir) as anonymous:
            assert 'server answered 401' in await refused(anonymous, 'get_forecast')
        assert events_of(setup.admin, agent) == []
        gone = 'http://127.0.0.1:9'
        async with stdio_session(gone, ADMIN, tmp_path) as lost:
            assert f'cannot reach SpendGauge at {gone}' in await refused(lost, 'get_budget')
    run(test)
