"""API requests refused for their token (401, 403), counted per client and route, so that a LiteLLM callback or an
SDK sending with a wrong, revoked or under-privileged token shows on the server's side too: in `GET /sync/status`
and on the dashboard ("LiteLLM callback: token refused 12 times, last 17:02 UTC ...").

Cheap and bounded: in memory, no database write; one entry per (client, route, status, reason), at most
MAX_ENTRIES (the one refused longest ago makes room). The client is one of a few names read from the User-Agent, the
route is the matched route's template (never the raw path), the reason is the refusal's own fixed text: nothing a
caller sends is stored. The dashboard hears of it at most every PUBLISH_EVERY_S per client, and at once of a new
kind of refusal. Per process: each instance counts what it refused, from its start.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from typing_extensions import TypedDict

from services.integrations import CALLBACK_USER_AGENT, SDK_USER_AGENT
from services.live.hub import EventHub
from services.live.topics import RequestsRefused

MAX_ENTRIES = 64
PUBLISH_EVERY_S = 5.0
CLIENTS = ((CALLBACK_USER_AGENT, 'litellm_callback'), (SDK_USER_AGENT, 'sdk'))
OTHER_CLIENT = 'other'


class RefusedRequest(TypedDict):
    client: str  # litellm_callback, sdk (by their User-Agent) or other
    route: str  # e.g. 'POST /api/v1/usage/batch'
    status: int  # 401 or 403
    reason: str  # what the refusal said, e.g. 'the bearer token is not valid (revoked, or never issued)'
    count: int
    first_at: str
    last_at: str
    accepted_at: str | None  # the client's last accepted request, when it came after this entry's last refusal


def client_of(user_agent: str | None) -> str:
    agent = (user_agent or '').lower()
    return next((name for prefix, name in CLIENTS if agent.startswith(prefix)), OTHER_CLIENT)


@dataclass
class _Entry:
    count: int
    first_at: datetime
    last_at: datetime


Key = tuple[str, str, int, str]  # client, route, status, reason


class RefusalLog:
    def __init__(self, hub: EventHub | None = None, max_entries: int = MAX_ENTRIES,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC),
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._hub = hub
        self._max_entries = max_entries
        self._now = now
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._entries: OrderedDict[Key, _Entry] = OrderedDict()  # least recently refused first
        self._refused_at: dict[str, datetime] = {}  # per client: its last refusal
        self._accepted_at: dict[str, datetime] = {}  # per client, once it had a refusal: its last accepted request
        self._put_right: set[str] = set()  # clients accepted since their last refusal
        self._published_at: dict[str, float] = {}  # per client, time.monotonic()

    def refused(self, user_agent: str | None, route: str, status: int, reason: str) -> None:
        client, at = client_of(user_agent), self._now()
        key = (client, route, status, reason)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                if len(self._entries) >= self._max_entries:
                    self._entries.popitem(last=False)
                self._entries[key] = _Entry(1, at, at)
            else:
                entry.count += 1
                entry.last_at = at
                self._entries.move_to_end(key)
            self._refused_at[client] = at
            self._put_right.discard(client)
            publish = self._due(client, new=entry is None)
        if publish:
            self._publish(client)

    def accepted(self, user_agent: str | None) -> None:
        """A request of this client passed: cheap when nothing was ever refused (the usual case)."""
        if not self._refused_at:
            return
        client = client_of(user_agent)
        with self._lock:
            if client not in self._refused_at:
                return
            self._accepted_at[client] = self._now()
            first_since = client not in self._put_right
            self._put_right.add(client)
            publish = self._due(client, new=first_since)
        if publish:
            self._publish(client)

    def snapshot(self) -> list[RefusedRequest]:
        """Every entry, the most recently refused first."""
        with self._lock:
            items = list(self._entries.items())
            accepted = {client: self._accepted_at[client] for client in self._put_right}
        result: list[RefusedRequest] = []
        for (client, route, status, reason), entry in reversed(items):
            ok_at = accepted.get(client)
            result.append({'client': client, 'route': route, 'status': status, 'reason': reason,
                           'count': entry.count, 'first_at': entry.first_at.isoformat(),
                           'last_at': entry.last_at.isoformat(),
                           'accepted_at': ok_at.isoformat() if ok_at and ok_at >= entry.last_at else None})
        return result

    def _due(self, client: str, new: bool) -> bool:
        """Whether to tell the dashboard now (under the lock): news at once, more of the same now and then."""
        now, last = self._monotonic(), self._published_at.get(client)
        if new or last is None or now - last >= PUBLISH_EVERY_S:
            self._published_at[client] = now
            return True
        return False

    def _publish(self, client: str) -> None:
        if self._hub is not None:
            self._hub.publish(RequestsRefused(client))
