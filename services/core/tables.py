"""SQLAlchemy Core handles of the tables, declared once: queries use these, the SQLModel classes define them."""
from __future__ import annotations

from typing import cast

from sqlalchemy import Table
from sqlmodel import SQLModel

from services.core import models


def _table(model: type[SQLModel]) -> Table:
    return cast(Table, model.__table__)  # type: ignore[attr-defined]  # SQLModel sets it on table=True classes


EVENTS = _table(models.UsageEvent)
ROLLUPS = _table(models.SpendRollup)
HOURLY = _table(models.SpendHourly)
DAILY = _table(models.SpendDaily)
SCOPE_ROLLUPS = _table(models.ScopeRollup)
SESSIONS = _table(models.SpendSession)
SESSION_AGENTS = _table(models.SessionAgent)
SESSION_SCOPES = _table(models.SessionScopeSpend)
AGENTS = _table(models.Agent)
TASK_SPEND = _table(models.TaskSpend)
TASKS = _table(models.Task)
SETTINGS = _table(models.AppSetting)
PRICE_OVERRIDES = _table(models.PriceOverride)
SNAPSHOTS = _table(models.BudgetSnapshot)
SYNC_RUNS = _table(models.SyncRun)
ALERTS = _table(models.Alert)
POLICIES = _table(models.Policy)
ALLOCATIONS = _table(models.Allocation)
ALLOCATION_SHARES = _table(models.AllocationShare)
DELIVERIES = _table(models.Delivery)
NOTICES = _table(models.Notice)
API_TOKENS = _table(models.ApiToken)
USERS = _table(models.User)
PRICE_DATA = _table(models.PriceDataFile)
PRICE_AUDITS = _table(models.PriceAudit)
AUDIT_LOG = _table(models.AuditRecord)
