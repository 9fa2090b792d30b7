"""`spendgauge mcp`: the MCP budget tools over stdio for a local agent. Every tool calls the running server's REST
API (SPENDGAUGE_URL / SPENDGAUGE_TOKEN, as the other commands): the budget counters live in that process."""
from __future__ import annotations

import argparse
from typing import Any

from app.cli.args import api_token, server_options, server_url


def register(sub: Any) -> None:
    mcp = sub.add_parser('mcp', help='serve the MCP budget tools over stdio (for a local agent; needs a running '
                                     'server)',
                         description='An MCP server on stdin/stdout with the tools get_budget, check_call, '
                                     'record_usage, get_forecast and suggest_cheaper_model. Each calls the REST API '
                                     'of the server at --url with --token (the token needs the role the REST route '
                                     'needs). Over HTTP, the server itself answers MCP at /mcp.')
    server_options(mcp)
    mcp.set_defaults(run_alone=cmd_mcp)


def cmd_mcp(args: argparse.Namespace) -> int:
    import anyio

    from app.mcp_server.remote import RemoteBackend
    from app.mcp_server.tools import build_server

    backend = RemoteBackend(server_url(args.url), api_token(args.token))
    server = build_server(lambda _ctx: backend)

    async def serve() -> None:
        try:
            await server.run_stdio_async()
        finally:
            await backend.aclose()

    anyio.run(serve)
    return 0
