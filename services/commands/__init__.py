"""One command per state change. Each checks the actor's role, runs its transaction and commits, keeps the budget
counters in step, then publishes one typed event (services/live/topics.py). REST routes, pages, the CLI and the
checker's automatic actions all call these; none of them commits or publishes by itself.

Recording usage goes through the ledger (services/usage/ledger.py), which is the command for the hot path.
"""
from __future__ import annotations

from services.commands.accounts import AccountCommands
from services.commands.agents import AgentCommands
from services.commands.alerts import AlertCommands
from services.commands.allocations import AllocationCommands
from services.commands.base import BudgetCounters, CommandContext
from services.commands.digest import DigestCommands
from services.commands.eco import EcoCommands
from services.commands.limits import LimitCommands
from services.commands.policies import PolicyCommands
from services.commands.prices import PriceCommands
from services.commands.sessions import SessionCommands
from services.commands.sync import SyncCommands
from services.commands.tasks import TaskCommands
from services.commands.usage import UsageCommands

__all__ = ['BudgetCounters', 'CommandContext', 'Commands']


class Commands:
    def __init__(self, ctx: CommandContext) -> None:
        self.ctx = ctx
        self.accounts = AccountCommands(ctx)
        self.agents = AgentCommands(ctx)
        self.alerts = AlertCommands(ctx)
        self.allocations = AllocationCommands(ctx)
        self.digest = DigestCommands(ctx)
        self.eco = EcoCommands(ctx)
        self.limits = LimitCommands(ctx)
        self.policies = PolicyCommands(ctx)
        self.prices = PriceCommands(ctx)
        self.sessions = SessionCommands(ctx)
        self.sync = SyncCommands(ctx)
        self.tasks = TaskCommands(ctx)
        self.usage = UsageCommands(ctx)
