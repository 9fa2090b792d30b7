"""What every command works with: the database, the hub, and the in-memory budget counters it keeps in step."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import Connection, Engine

from services.core.settings import Settings
from services.live.hub import EventHub
from services.live.topics import LiveEvent
from services.sources.sync import SyncService
from services.usage.ledger import Ledger
from services.usage.pricing import Pricer


class BudgetCounters(Protocol):
    """The budget checker as commands see it (services/budget/checker.py)."""

    def rebuild(self) -> None: ...
    def set_paused(self, agent_id: str, paused: bool) -> None: ...
    def set_eco(self, on: bool) -> None: ...
    def forget_session(self, session_id: str) -> None: ...


@dataclass
class CommandContext:
    engine: Engine
    hub: EventHub
    counters: BudgetCounters | None = None  # set once the checker runs
    pricer: Pricer | None = None
    ledger: Ledger | None = None
    sync: SyncService | None = None
    settings: Settings | None = None  # what commands that send read (the digest: zone, channels, substitutes)

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """Commits on leaving the block, so what is published after it can be read back by every listener."""
        with self.engine.begin() as conn:
            yield conn

    def publish(self, event: LiveEvent) -> None:
        self.hub.publish(event)
