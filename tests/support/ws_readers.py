"""Many live API clients in a process of their own, so that reading their messages does not compete with whoever
sends the burst they receive (the fan-out test and bench/ws_fanout.py):

    python -m tests.support.ws_readers WS_URL TOKEN CLIENTS AGENT EXPECTED

connects CLIENTS clients to `WS_URL?topics=usage`, prints `ready` once each has its hello, then counts the events
of AGENT each receives until each has EXPECTED (or 120 s pass) and prints the counts as a JSON list.
"""
from __future__ import annotations

import asyncio
import json
import sys

import orjson
from websockets.asyncio.client import ClientConnection, connect

TIMEOUT_S = 120.0


async def _client(url: str, token: str) -> ClientConnection:
    headers = {'Authorization': f'Bearer {token}'} if token else {}
    ws = await connect(f'{url}?topics=usage', additional_headers=headers, open_timeout=60, max_size=None)
    hello = json.loads(await ws.recv())
    assert hello['type'] == 'hello', hello
    return ws


async def _count(ws: ClientConnection, agent: str, expected: int) -> int:
    seen = 0
    while seen < expected:
        msg = orjson.loads(await ws.recv())  # the fastest parse: the readers share the CPU with the server
        if msg['type'] == 'usage' and msg['agents'] == [agent]:
            seen += msg['count']
    return seen


async def run(url: str, token: str, clients: int, agent: str, expected: int) -> list[int]:
    sockets = await asyncio.gather(*(_client(url, token) for _ in range(clients)))
    print('ready', flush=True)  # noqa: T201 (read by the parent process)
    tasks = [asyncio.create_task(_count(ws, agent, expected)) for ws in sockets]
    try:
        await asyncio.wait(tasks, timeout=TIMEOUT_S)
        return [t.result() if t.done() and not t.exception() else -1 for t in tasks]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*(ws.close() for ws in sockets))


if __name__ == '__main__':
    ws_url, bearer, count, who, total = sys.argv[1:6]
    print(json.dumps(asyncio.run(run(ws_url, bearer, int(count), who, int(total)))), flush=True)  # noqa: T201
