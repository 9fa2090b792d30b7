"""What every command works with: the database, the hub, the in-memory budget counters it keeps in step, and the
audit trail every change is written to (`audited`: the row in the change's own transaction)."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

from sqlalchemy import Connection, Engine

from services.audit import trail
from services.audit.journal import Journal
from services.audit.trail import AuditEntry
from services.core.access import Actor
from services.core.scrub import secrets_of
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
    journal: Journal | None = None  # the JSONL audit log, when SPENDGAUGE_AUDIT_LOG is set

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """Commits on leaving the block, so what is published after it can be read back by every listener."""
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def audited(self, actor: Actor, action: str, target: str = '') -> Iterator[tuple[Connection, AuditEntry]]:
        """`transaction`, with the change's audit row written in it as the block leaves: the command sets the
        entry's `before`/`after` (or calls `unchanged()` when nothing changed: no row). Raising rolls both back."""
        with self.transaction() as conn:
            entry = AuditEntry(actor.name, action, target)
            yield conn, entry
            row = None if entry.skipped else trail.write(conn, entry, self.audit_secrets)
        if row is not None and self.journal is not None:
            self.journal.change(row)

    def audit(self, actor: Actor, action: str, target: str = '', before: Any = None, after: Any = None) -> None:
        """The audit row of a change committed in transactions of its own (the ledger's batches: pruning,
        re-pricing; a pull's sync runs), written once it is done."""
        with self.audited(actor, action, target) as (_, entry):
            entry.before, entry.after = before, after

    @cached_property
    def audit_secrets(self) -> tuple[str, ...]:
        """The configured secrets, masked wherever they would appear in an audit row."""
        return secrets_of(self.settings) if self.settings is not None else ()

    def publish(self, event: LiveEvent) -> None:
        self.hub.publish(event)
