"""The MCP SDK's own clients against a real server: streamable HTTP at /mcp, and `python -m app mcp` over stdio."""
from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp_types import CallToolResult, TextContent

from tests.support.servers import NO_PRICE_DATA_URL, ROOT

TOOLS = {'get_budget', 'check_call', 'record_usage', 'get_forecast', 'suggest_cheaper_model'}


@asynccontextmanager
async def http_session(url: str, token: str | None) -> AsyncIterator[ClientSession]:
    headers = {'Authorization': f'Bearer {token}'} if token else {}
    async with create_mcp_http_client(headers=headers) as http, \
            streamable_http_client(url + '/mcp', http_client=http) as (read, write), \
            ClientSession(read, write) as session:
        await session.initialize()
        yield session


@asynccontextmanager
async def stdio_session(url: str, token: str | None, cwd: Path) -> AsyncIterator[ClientSession]:
    """`spendgauge mcp` as an agent's client launches it: this checkout's code, the server's URL and a token."""
    env = {'PYTHONPATH': str(ROOT), 'SPENDGAUGE_URL': url, 'SPENDGAUGE_ENV_FILE': '',
           'SPENDGAUGE_PRICE_DATA_URL': NO_PRICE_DATA_URL} | ({'SPENDGAUGE_API_TOKEN': token} if token else {})
    params = StdioServerParameters(command=sys.executable, args=['-m', 'app', 'mcp'], env=env, cwd=cwd)
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


async def call(session: ClientSession, tool: str, **arguments: Any) -> dict[str, Any]:
    """A tool's answer (its JSON text); fails the test when the tool answered an error."""
    result = await session.call_tool(tool, arguments)
    assert not result.is_error, result.content
    return json.loads(_text(result))


async def refused(session: ClientSession, tool: str, **arguments: Any) -> str:
    """The message of a tool error, after the SDK's `Error executing tool <name>: ` (the test fails when the tool
    answered)."""
    result = await session.call_tool(tool, arguments)
    assert result.is_error, result.content
    text = _text(result)
    prefix = f'Error executing tool {tool}: '
    assert text.startswith(prefix), text
    return text.removeprefix(prefix)


def _text(result: CallToolResult) -> str:
    [content] = result.content
    assert isinstance(content, TextContent), content
    return content.text
