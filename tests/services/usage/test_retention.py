"""Retention: pruning deletes the raw events older than a cutoff (a local midnight of the rollups' day zone) and
nothing else, so every total the product shows is the same before and after: budget summaries, breakdowns, the
history, reports, reconciliation, sessions, agents, tasks and the budget counters after a recount. The usage
listing says from when on events are kept."""
from __future__ import annotations

import random
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, event, select

from services.budget import policies
from services.budget.checker import Checker
from services.commands import CommandContext, Commands
from services.core.access import SYSTEM, Actor, Role
from services.core.context import BudgetContext
from services.core.errors import Forbidden, Invalid
from services.core.periods import as_utc, midnight_on_or_after
from services.core.settings import Settings, SettingsError
from services.core.tables import AGENTS, DAILY, EVENTS, ROLLUPS, SCOPE_ROLLUPS, SESSION_AGENTS, SESSIONS, TASK_SPEND
from services.insights import report_formats, reports
from services.live.hub import EventHub
from services.live.topics import EventsPruned, LiveEvent
from services.sources.base import PullResult, SnapshotRow
from services.sources.snapshots import store_snapshots
from services.spend import agents, budget, sessions, tasks
from services.spend.day_zone import rekey_days
from services.spend.reconciliation import reconciliation
from services.usage import retention
from services.usage.ledger import Ledger
from services.usage.queries import UsageQuery, list_usage
from tests.support.queries import counting_queries

HISTORY_DAYS = 60
KEEP_DAYS = 25  # the older part goes: 35 of the 60 days
AGENT_IDS = ('planner', 'coder', 'reviewer', None)
MODELS = (('openai', 'gpt-4o'), ('anthropic', 'claude-sonnet-4-5'), ('openai', 'gpt-4o-mini'))
TAGS = ('nightly', 'eval', 'prod')
TOTAL_TABLES = (DAILY, ROLLUPS, SCOPE_ROLLUPS, SESSIONS, SESSION_AGENTS, AGENTS, TASK_SPEND)


def record_history(ledger: Ledger, now: datetime, count: int, seed: int = 1) -> list[dict[str, Any]]:
    """`count` events over the last HISTORY_DAYS days, every dimension varied: sessions of four days (some cross
    the cutoff), a task a week, a few calls without a price."""
    rng = random.Random(seed)
    events = []
    for n in range(count):
        ts = now - timedelta(minutes=rng.randrange(1, HISTORY_DAYS * 24 * 60))
        age = (now - ts).days
        provider, model = rng.choice(MODELS)
        event = {'event_id': f'h{seed}-{n}', 'ts': ts.isoformat(), 'provider': provider, 'model': model,
                 'channel': rng.choice(('litellm', 'direct')), 'agent_id': rng.choice(AGENT_IDS),
                 'user_id': rng.choice(('ann', 'bob', None)), 'project': rng.choice(('alpha', 'beta', None)),
                 'session_id': f's{age // 4}', 'task_id': f'task-{age // 7}' if n % 3 else None,
                 'tags': rng.sample(TAGS, rng.randrange(3)), 'input_tokens': rng.randrange(1, 6000),
                 'output_tokens': rng.randrange(1, 900)}
        if n % 17 == 0:
            event['model'] = 'house-model-x'  # unpriced: counted, at $0
        else:
            event['cost_usd'] = f'0.{rng.randrange(1, 99999):05d}'
        events.append(event)
    for first in range(0, count, 500):
        ledger.record_batch(events[first:first + 500])
    return events


def add_policies(engine: Engine, today: date) -> None:
    with engine.begin() as conn:
        for fields in ({'scope': 'user', 'period': 'month'}, {'scope': 'tag', 'period': 'week'},
                       {'scope': 'agent', 'period': 'month'}, {'period': 'session'},
                       {'scope': 'tag', 'scope_value': 'eval', 'period': 'custom',
                        'period_start': str(today - timedelta(days=50)), 'period_end': str(today)},
                       {'scope': 'user', 'scope_value': 'ann', 'period': 'custom',
                        'period_start': str(today - timedelta(days=45)), 'period_end': str(today + timedelta(days=1))},
                       {'period': 'custom', 'period_start': str(today - timedelta(days=40)),
                        'period_end': str(today - timedelta(days=5))}):
            policies.create_policy(conn, policies.validate({'name': str(fields), 'limit_usd': '100000', **fields}))


def add_bills(engine: Engine, today: date) -> None:
    """Billed (OpenAI) and pulled (LiteLLM) spend on some days, before and after the cutoff: reconciliation takes the
    larger of the sources."""
    days = [today - timedelta(days=d) for d in (2, 10, 30, 41, 55)]
    with engine.begin() as conn:
        store_snapshots(conn, 'openai_direct', PullResult(
            [SnapshotRow('openai_direct', d, 'openai', 'gpt-4o', 9_000_000 + n) for n, d in enumerate(days)],
            set(days)))
        store_snapshots(conn, 'litellm', PullResult(
            [SnapshotRow('litellm', d, 'anthropic', 'claude-sonnet-4-5', 4_000_000 + n) for n, d in enumerate(days)],
            set(days)))


def everything_shown(engine: Engine, zone: ZoneInfo, now: datetime) -> dict[str, Any]:
    """Every total the product shows, as its read models build it."""
    context = BudgetContext(zone)
    today = now.astimezone(zone).date()
    straddling = (str(today - timedelta(days=45)), str(today - timedelta(days=16)))  # 30 days across the cutoff
    everything = (str(today - timedelta(days=HISTORY_DAYS)), str(today))
    shown: dict[str, Any] = {}
    with engine.connect() as conn:
        for period in ('day', 'week', 'month'):
            shown[f'summary {period}'] = budget.period_summary(conn, context, period, now)
        for start, end in (straddling, everything):
            span = budget.resolve_range(None, start, end, zone, now)
            for by in ('agent_id', 'provider', 'model', 'channel'):
                shown[f'by {by} {start}..{end}'] = budget.spend_breakdown(conn, by, span)
            for kind in ('summary', 'trend', 'comparison'):
                report = reports.build_report(conn, context, kind, None, start, end, None, now)
                shown[f'report {kind} {start}..{end}'] = report_formats.to_json(report)
        shown['report summary by agent'] = report_formats.to_json(
            reports.build_report(conn, context, 'summary', None, *straddling, 'agent', now))
        for days in (30, HISTORY_DAYS + 1):
            shown[f'history {days}'] = budget.history(conn, context, days, now)
            shown[f'reconciliation {days}'] = reconciliation(conn, days, zone, reports.Decimal('0.05'), now)
        listed = sessions.list_sessions(conn, limit=1000)
        shown['sessions'] = listed
        shown['session details'] = [sessions.get_session(conn, s['id']) for s in listed]
        shown['sessions.csv'] = sessions.sessions_csv(conn)
        shown['agents'] = agents.list_agents(conn)
        shown['tasks'] = tasks.list_tasks(conn, limit=1000)
        shown['tables'] = {table.name: sorted(map(tuple, conn.execute(select(table)))) for table in TOTAL_TABLES}
    checker = Checker(engine, EventHub(), zone)
    checker.rebuild(now=now)
    shown['counters'] = checker.counters.snapshot()
    return shown


def cut_by_a_midnight(ts: datetime, zone: ZoneInfo) -> bool:
    """Whether a local midnight falls inside the UTC hour of `ts` (not on its start): that hour's events are kept."""
    hour = ts.replace(minute=0, second=0, microsecond=0)
    return hour < midnight_on_or_after(hour, zone) < hour + timedelta(hours=1)


def listed_ids(engine: Engine, **filters: Any) -> tuple[set[str], str | None]:
    """Every event id the usage listing shows (page by page), and what it says of pruning."""
    ids: set[str] = set()
    cursor = None
    with engine.connect() as conn:
        while True:
            page = list_usage(conn, UsageQuery(limit=1000, cursor=cursor, **filters))
            ids.update(item['event_id'] for item in page['items'])
            if not (cursor := page['next_cursor']):
                return ids, page['pruned_before']


@pytest.mark.parametrize('zone_name', ['Europe/Berlin', 'Asia/Kolkata'])
def test_pruning_the_older_half_leaves_every_total_the_same(ledger: Ledger, engine: Engine, hub: EventHub,
                                                            zone_name: str) -> None:
    zone = ZoneInfo(zone_name)
    now = datetime.now(UTC)
    today = now.astimezone(zone).date()
    with engine.begin() as conn:
        rekey_days(conn, zone)  # the server keys the daily rollups by its own zone
    with engine.begin() as conn:
        for week in range(HISTORY_DAYS // 7 + 1):
            tasks.create_task(conn, f'week {week}', f'task-{week}', estimated_cost_micros=1_000_000)
    add_policies(engine, today)
    add_bills(engine, today)
    events = record_history(ledger, now, 1500)
    before = everything_shown(engine, zone, now)
    assert len({key[0] for key in before['counters']}) == 7  # every policy counts something
    assert len(before['sessions']) > 10 and len(before['agents']) == 3 and len(before['tasks']) > 5

    commands = Commands(CommandContext(engine, hub, ledger=ledger))
    published: list[LiveEvent] = []
    hub.subscribe(published.append)
    cutoff = datetime.combine(today - timedelta(days=KEEP_DAYS), time(0), zone)
    if cutoff > now - timedelta(days=KEEP_DAYS):
        cutoff -= timedelta(days=1)
    cutoff = cutoff.astimezone(UTC)
    old = {e['event_id'] for e in events if (ts := datetime.fromisoformat(e['ts'])) < cutoff
           and not cut_by_a_midnight(ts, zone)}
    assert 500 < len(old) < 1000

    dry = commands.usage.prune(SYSTEM, KEEP_DAYS, dry_run=True, now=now)
    assert (dry['events'], dry['cutoff'], dry['dry_run'], dry['pruned_before']) == (len(old), cutoff.isoformat(),
                                                                                    True, None)
    assert not published and listed_ids(engine)[0] == {e['event_id'] for e in events}

    done = commands.usage.prune(SYSTEM, KEEP_DAYS, now=now)
    assert done == {'older_than_days': KEEP_DAYS, 'cutoff': cutoff.isoformat(), 'day_zone': zone_name,
                    'dry_run': False, 'events': len(old), 'pruned_before': cutoff.isoformat()}
    assert published == [EventsPruned(cutoff, len(old))]

    after = everything_shown(engine, zone, now)
    for name, shown in before.items():
        assert after[name] == shown, name
    kept, pruned_before = listed_ids(engine)
    assert kept == {e['event_id'] for e in events} - old
    assert pruned_before == cutoff.isoformat()
    before_cutoff = {e['event_id'] for e in events if datetime.fromisoformat(e['ts']) < cutoff}
    # before the watermark, only the hours a local midnight cuts (none in whole-hour zones); the listing says why
    assert listed_ids(engine, end=cutoff) == (before_cutoff - old, cutoff.isoformat())
    assert bool(before_cutoff - old) == (zone_name == 'Asia/Kolkata')
    with engine.connect() as conn:
        stored = [as_utc(ts) for ts in conn.execute(select(EVENTS.c.ts)).scalars()]
    assert len(stored) == len(events) - len(old)
    assert all(ts >= cutoff or cut_by_a_midnight(ts, zone) for ts in stored)


def test_the_cutoff_is_a_local_midnight_and_the_watermark_never_moves_back(ledger: Ledger, engine: Engine,
                                                                           hub: EventHub) -> None:
    """In a zone whose midnights fall on the half hour, the events of the hour each midnight cuts stay: a read from
    or to that midnight takes the hour's halves from them."""
    zone = ZoneInfo('America/St_Johns')  # UTC-3:30 (or -2:30)
    now = datetime(2026, 11, 20, 2, 10, tzinfo=UTC)  # still the 19th in St. John's
    with engine.begin() as conn:
        rekey_days(conn, zone)
    stamps = [now - timedelta(minutes=37 * n) for n in range(2000)]  # 51 days back
    ledger.record_batch([{'event_id': f'm{n}', 'model': 'gpt-4o', 'provider': 'openai', 'cost_usd': '0.01',
                          'ts': ts.isoformat()} for n, ts in enumerate(stamps)])
    commands = Commands(CommandContext(engine, hub, ledger=ledger))
    published: list[LiveEvent] = []
    hub.subscribe(published.append)

    cutoff = datetime(2026, 10, 20, tzinfo=zone)  # 30 days before the 19th, 22:40 local: the 20th's midnight
    going = [ts for ts in stamps if ts < cutoff and not cut_by_a_midnight(ts, zone)]
    assert cutoff.astimezone(UTC).minute == 30 and 500 < len(going) < len([ts for ts in stamps if ts < cutoff])
    assert commands.usage.prune(SYSTEM, 30, dry_run=True, now=now)['events'] == len(going)

    first = commands.usage.prune(SYSTEM, 30, now=now)
    assert (datetime.fromisoformat(first['cutoff']), first['events']) == (cutoff, len(going))
    later = commands.usage.prune(SYSTEM, 40, now=now)  # an earlier cutoff: nothing left to go
    assert (later['events'], later['pruned_before']) == (0, first['cutoff'])
    assert published == [EventsPruned(cutoff, len(going))]  # a prune that deletes nothing says nothing
    with engine.connect() as conn:
        assert retention.pruned_before(conn) == cutoff
        assert retention.count_prunable(conn, cutoff) == 0
        left = {as_utc(ts) for ts in conn.execute(select(EVENTS.c.ts)).scalars()}
    assert left == set(stamps) - set(going)


def test_events_go_in_chunks_each_its_own_transaction(ledger: Ledger, engine: Engine) -> None:
    now = datetime.now(UTC)
    old = now - timedelta(days=10)
    ledger.record_batch([{'event_id': f'c{n}', 'model': 'gpt-4o', 'provider': 'openai', 'cost_usd': '0.01',
                          'ts': (old - timedelta(minutes=n)).isoformat()} for n in range(230)])
    ledger.record({'event_id': 'new', 'model': 'gpt-4o', 'provider': 'openai', 'cost_usd': '0.01'})
    commits: list[int] = []

    def committed(_conn: Any) -> None:
        commits.append(len(statements))

    event.listen(engine, 'commit', committed)
    try:
        with counting_queries(engine) as statements:
            _, count = ledger.prune_before(now - timedelta(days=2), chunk=50)
    finally:
        event.remove(engine, 'commit', committed)
    deletes = [n for n, s in enumerate(statements) if s.lstrip().upper().startswith('DELETE')]
    assert count == 230 and len(deletes) == 5  # 50, 50, 50, 50, then 30: the last chunk
    assert all(any(d < c for c in commits) for d in deletes) and len(commits) >= 5  # each committed on its own
    assert [sum(d < c for d in deletes) for c in commits[-5:]] == [1, 2, 3, 4, 5]
    assert all('LIMIT' in statements[d].upper() for d in deletes)
    assert not [s for s in statements if any(t.name in s for t in TOTAL_TABLES)]  # the totals are not touched
    with engine.connect() as conn:
        assert [r.event_id for r in conn.execute(select(EVENTS.c.event_id))] == ['new']


def test_only_an_admin_prunes_and_the_age_is_checked(ledger: Ledger, engine: Engine, hub: EventHub) -> None:
    commands = Commands(CommandContext(engine, hub, ledger=ledger))
    with pytest.raises(Forbidden, match='admin'):
        commands.usage.prune(Actor('grafana', Role.READ), 30)
    for days in (0, -3, 36_501):
        with pytest.raises(Invalid, match='older_than_days'):
            commands.usage.prune(SYSTEM, days)


def test_the_setting_takes_days_or_none() -> None:
    assert Settings.load().retention_days is None  # keep everything
    assert Settings.load(retention_days='180d').retention_days == 180
    assert Settings.load(retention_days='90').retention_days == 90
    assert Settings.load(retention_days='none').retention_days is None
    for bad in ('0', '6 months', '40000'):
        with pytest.raises(SettingsError, match='SPENDGAUGE_RETENTION_DAYS'):
            Settings.load(retention_days=bad)
