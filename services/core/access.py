"""Who changes state: every command is given an actor and checks its role before it writes."""
from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from services.core.errors import Forbidden


class Role(StrEnum):
    INGEST = 'ingest'  # record usage, ask for a check
    READ = 'read'  # dashboards, reports, every GET
    ADMIN = 'admin'  # everything: policies, limits, thresholds, prices, eco mode, pause, sync, alerts, tasks


@dataclass(frozen=True)
class Actor:
    name: str  # shown in logs and in who acknowledged an alert
    role: Role

    def may(self, role: Role) -> bool:
        return self.role is Role.ADMIN or self.role is role


def require(actor: Actor, role: Role, action: str) -> None:
    if not actor.may(role):
        raise Forbidden(f'{action} needs the {role} role; {actor.name} has {actor.role}')


SYSTEM = Actor('spendgauge', Role.ADMIN)  # automatic actions: policies pausing agents, switching eco mode
