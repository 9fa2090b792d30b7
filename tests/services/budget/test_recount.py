"""A recount (start-up, a policy or threshold change) counts every scope and period, sessions too, from the rollups:
the same numbers as the counters that followed the ledger, without reading a single event."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from services.budget.checker import Checker
from services.core.tables import EVENTS
from services.live.hub import EventHub
from services.spend.day_zone import rekey_days
from services.usage.ledger import Ledger
from tests.support.policies import create_every_kind_of_policy
from tests.support.queries import counting_queries

ZONE = ZoneInfo('Europe/Berlin')


def test_user_project_tag_session_and_custom_policies_recount_from_rollups(ledger: Ledger, engine: Engine) -> None:
    now = datetime.now(UTC)
    today = now.astimezone(ZONE).date()
    with engine.begin() as conn:
        rekey_days(conn, ZONE)
        create_every_kind_of_policy(conn, today)
    checker = Checker(engine, ledger.hub, ZONE)
    checker.start(now=now)
    for n in range(60):  # over the last five days, at odd minutes
        ts = now - timedelta(minutes=117 * n + 7)
        ledger.record({'model': 'gpt-4o', 'provider': 'openai', 'cost_usd': f'0.0{n % 9 + 1}', 'ts': ts.isoformat(),
                       'user_id': ('ann', 'bob')[n % 2], 'project': ('alpha', 'beta', None)[n % 3],
                       'tags': [['eval'], ['eval', 'prod'], []][n % 3], 'session_id': f's{n % 4}'})
    followed = checker.counters.snapshot()
    assert len({key[0] for key in followed}) == 9  # every policy counted something
    rebuilt = Checker(engine, EventHub(), ZONE)
    with counting_queries(engine, selects_only=True) as statements:
        rebuilt.rebuild(now=now)
    assert rebuilt.counters.snapshot() == followed
    assert not [s for s in statements if EVENTS.name in s]
