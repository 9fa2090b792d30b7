"""The MCP budget server for agents: one set of tools (tools.py) over one interface (backend.py), served in the
server process over streamable HTTP at /mcp (http.py, local.py) and over stdio by `spendgauge mcp`, which calls a
running server's REST API (remote.py)."""
