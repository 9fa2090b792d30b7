"""Re-pricing stored events: a few thousand events over days, agents, sessions, tasks, users, projects and tags are
priced again with new genai-prices data; reported events stay byte for byte, every rollup equals the events after,
the budget checker's counters equal the database, an audit row says what changed, and a dry run changes nothing."""
from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Connection, Engine, func, select

from services.budget.checker import Checker
from services.commands import CommandContext, Commands
from services.core.access import SYSTEM, Actor, Role
from services.core.errors import Forbidden, Invalid
from services.core.periods import as_utc
from services.core.tables import EVENTS, POLICIES, PRICE_AUDITS
from services.live.hub import EventHub
from services.live.topics import LiveEvent, Topic, UsageChanged
from services.usage import repricing
from services.usage.ledger import TOKEN_COLUMNS, Ledger
from services.usage.pricing import OverrideRates, Pricer, TokenCounts, parse_price_data
from services.usage.repricing import Recalculation
from tests.support import rollups
from tests.support.policies import create_every_kind_of_policy
from tests.support.price_data import published

ZONE = ZoneInfo('UTC')
NEW_PRICES = {('openai', 'gpt-4o'): {'input_mtok': 5, 'cache_read_mtok': 2.5, 'output_mtok': 20},
              ('anthropic', 'claude-sonnet-4-5'): {'input_mtok': 2, 'cache_read_mtok': 0.2, 'cache_write_mtok': 2.5,
                                                   'output_mtok': 10},
              ('anthropic', 'claude-3-haiku'): None}  # no price any more: its events keep theirs
MODELS = [('openai', 'gpt-4o'), ('openai', 'gpt-4o-mini'), ('anthropic', 'claude-sonnet-4-5'),
          ('anthropic', 'claude-3-haiku'), ('openai', 'house-model')]  # house-model: unpriced until an override
HOUSE = OverrideRates(input=1_000_000, output=2_000_000)


def history(now: datetime, count: int, seed: int = 7) -> list[dict[str, Any]]:
    """`count` events over the last six days: a tenth reported (a cost given), the rest priced or unpriced."""
    rnd = random.Random(seed)
    events = []
    for n in range(count):
        provider, model = rnd.choice(MODELS)
        input_tokens = rnd.randrange(0, 40_000)
        event: dict[str, Any] = {
            'event_id': f'e{n}', 'provider': provider, 'model': model,
            'ts': (now - timedelta(minutes=rnd.randrange(1, 6 * 24 * 60))).isoformat(),
            'channel': rnd.choice(['litellm', 'direct']), 'agent_id': rnd.choice([None, 'planner', 'coder', 'critic']),
            'session_id': rnd.choice([None, 's1', 's2', 's3', 's4']), 'task_id': rnd.choice([None, 't1', 't2']),
            'user_id': rnd.choice([None, 'ann', 'bob']), 'project': rnd.choice([None, 'alpha', 'beta']),
            'tags': rnd.choice([[], ['eval'], ['eval', 'prod'], ['prod', 'prod']]),
            'input_tokens': input_tokens, 'output_tokens': rnd.randrange(0, 4000),
            'cache_read_tokens': rnd.randrange(0, input_tokens // 2 + 1) if provider != 'openai' or rnd.random() < .5
            else 0}
        if n % 10 == 0:
            event['cost_usd'] = f'0.{rnd.randrange(1, 999_999):06d}'
        events.append(event)
    return events


@pytest.fixture
def setup(engine: Engine) -> tuple[Commands, Checker, datetime]:
    hub, pricer = EventHub(), Pricer()
    ledger = Ledger(engine, pricer, hub)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        create_every_kind_of_policy(conn, now.date())
    context = CommandContext(engine, hub, pricer=pricer, ledger=ledger)
    checker = Checker(engine, hub, ZONE, Commands(context))
    context.counters = checker
    checker.start()
    ledger.record_batch(history(now, 3000))
    return checker.commands, checker, now


def new_prices(pricer: Pricer) -> None:
    """What a price update and an override leave: new data, and a price for the model that had none."""
    pricer.use_data(parse_price_data(json.dumps(published(NEW_PRICES)), 'test data'))
    pricer.set_overrides({('openai', 'house-model'): HOUSE})


def everything(conn: Connection) -> dict[str, list[tuple]]:
    """Every row the ledger writes, and the audit."""
    tables = [EVENTS, PRICE_AUDITS, *rollups.TABLES]
    return {t.name: sorted(tuple(map(str, row)) for row in conn.execute(select(t))) for t in tables}


def test_recalculate_reprices_priced_events_and_every_total_follows(setup: tuple[Commands, Checker, datetime],
                                                                    engine: Engine) -> None:
    commands, checker, now = setup
    ledger, pricer = commands.ctx.ledger, commands.ctx.pricer
    assert ledger is not None and pricer is not None
    start = datetime.combine((now - timedelta(days=3)).date(), datetime.min.time(), tzinfo=UTC)
    with engine.connect() as conn:
        before = {r.id: r for r in conn.execute(select(EVENTS))}
        rollups.assert_exact(conn)
        counters_before = checker.counters.snapshot()
    new_prices(pricer)
    heard: list[LiveEvent] = []
    ledger.hub.subscribe(heard.append)

    with engine.connect() as conn:
        untouched = everything(conn)
    end = (now + timedelta(minutes=1)).isoformat()
    dry = commands.prices.recalculate(SYSTEM, start.date().isoformat(), end, dry_run=True)
    with engine.connect() as conn:
        assert everything(conn) == untouched, 'a dry run changed something'
    assert heard == [] and checker.counters.snapshot() == counters_before

    recounts = checker.recounts
    done = commands.prices.recalculate(SYSTEM, start.date().isoformat(), end)
    assert [type(e) for e in heard] == [UsageChanged] and heard[0].topic == Topic.USAGE
    assert checker.recounts == recounts + 1  # the correction: the checker recounted once, before the command returned
    assert {k: v for k, v in done.items() if k not in ('dry_run', 'audit_id')} == \
        {k: v for k, v in dry.items() if k not in ('dry_run', 'audit_id')}
    assert done['start'] == start.isoformat() and done['end'] == end

    # each event as it must be now
    expected: dict[str, int] = {'changed': 0, 'newly': 0, 'kept': 0, 'examined': 0, 'delta': 0}
    with engine.connect() as conn:
        after = {r.id: r for r in conn.execute(select(EVENTS))}
        for pk, old in before.items():
            new = after[pk]
            inside = start <= as_utc(old.ts)
            if old.cost_source == 'reported' or not inside:
                assert tuple(new) == tuple(old), 'a reported event or one outside the range changed'
                continue
            expected['examined'] += 1
            tokens = TokenCounts(*(getattr(old, c) for c in TOKEN_COLUMNS))
            quote = pricer.quote(old.provider, old.model, tokens, old.ts)
            if quote.cost_source != 'priced':
                assert (new.cost_micros, new.cost_source) == (old.cost_micros, old.cost_source)
                expected['kept'] += old.cost_source == 'priced'
                continue
            assert (new.cost_micros, new.cost_source) == (quote.cost_micros, 'priced')
            if (new.cost_micros, new.cost_source) != (old.cost_micros, old.cost_source):
                expected['changed'] += 1
                expected['newly'] += old.cost_source == 'unpriced'
                expected['delta'] += new.cost_micros - old.cost_micros
        assert (done['events_examined'], done['events_changed'], done['events_newly_priced'], done['events_kept'],
                done['delta_micros']) == (expected['examined'], expected['changed'], expected['newly'],
                                          expected['kept'], expected['delta'])
        assert expected['changed'] > 500 and expected['newly'] > 50 and expected['kept'] > 50 and expected['delta'] > 0
        assert {(m['provider'], m['model']) for m in done['by_model']} == {
            ('openai', 'gpt-4o'), ('anthropic', 'claude-sonnet-4-5'), ('openai', 'house-model')}
        assert sum(m['delta_micros'] for m in done['by_model']) == done['delta_micros']

        compared = rollups.assert_exact(conn)
        assert compared > 500
        audit = repricing.list_audits(conn)[0]
        assert audit['audit_id'] == done['audit_id'] and audit['status'] == 'done' and audit['actor'] == SYSTEM.name
        assert {k: audit[k] for k in done if k not in ('dry_run',)} == {k: v for k, v in done.items()  # type: ignore
                                                                         if k != 'dry_run'}
        # the checker counts what the database holds now: the same as a recount from scratch, and for the global
        # custom policy (today - 3 .. today + 3) the events' own sum
        fresh = Checker(engine, EventHub(), ZONE)
        fresh.rebuild()
        assert checker.counters.snapshot() == fresh.counters.snapshot() != counters_before
        policy = conn.scalar(select(POLICIES.c.id).where(POLICIES.c.scope == 'global', POLICIES.c.period == 'custom'))
        custom = next(key for key in checker.counters.snapshot() if key[0] == policy)
        assert checker.counters.snapshot()[custom] == conn.scalar(
            select(func.sum(EVENTS.c.cost_micros)).where(EVENTS.c.ts >= start))

    again = commands.prices.recalculate(SYSTEM, start.date().isoformat())
    assert again['events_changed'] == 0 and again['events_examined'] == done['events_examined']


def test_batches_by_keyset_cover_every_event_once_even_on_equal_times(engine: Engine) -> None:
    """Small batches across many events that share one timestamp: each event is priced once, none is skipped."""
    hub, pricer = EventHub(), Pricer()
    ledger = Ledger(engine, pricer, hub)
    ts = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
    ledger.record_batch([{'event_id': f'same{n}', 'model': 'gpt-4o', 'provider': 'openai', 'ts': ts.isoformat(),
                          'input_tokens': 1000 + n, 'output_tokens': 10, 'session_id': f's{n % 3}',
                          'tags': ['a', 'b'][: n % 3]} for n in range(250)])
    ledger.record_batch(history(ts, 400, seed=3))
    new_prices(pricer)
    run = Recalculation(ledger, ts - timedelta(days=7), ts + timedelta(seconds=1), 'test', batch=37)
    result = run.apply()
    with engine.connect() as conn:
        priced = conn.scalar(select(func.count()).select_from(EVENTS).where(
            EVENTS.c.cost_source.in_(('priced', 'unpriced')), EVENTS.c.ts <= ts))
        assert result['events_examined'] == priced
        rollups.assert_exact(conn)
        for row in conn.execute(select(EVENTS).where(EVENTS.c.event_id.like('same%'))):
            tokens = TokenCounts(*(getattr(row, c) for c in TOKEN_COLUMNS))
            assert row.cost_micros == pricer.quote('openai', 'gpt-4o', tokens, ts).cost_micros
    assert result['events_changed'] >= 250


@pytest.mark.parametrize(('start', 'end', 'message'), [
    ('yesterday', None, 'from: not an ISO date'),
    ('2026-05-04', '2026-05-01', 'to must be after from'),
    ('2000-01-01', '2026-01-01', 'at most ten years'),
    ('1999-01-01', None, 'must be between'),
])
def test_bad_ranges_are_refused_and_change_nothing(setup: tuple[Commands, Checker, datetime], engine: Engine,
                                                   start: str, end: str | None, message: str) -> None:
    commands = setup[0]
    with engine.connect() as conn:
        untouched = everything(conn)
    with pytest.raises(Invalid, match=message):
        commands.prices.recalculate(SYSTEM, start, end)
    with engine.connect() as conn:
        assert everything(conn) == untouched


def test_only_an_admin_recalculates(setup: tuple[Commands, Checker, datetime]) -> None:
    for role in (Role.READ, Role.INGEST):
        with pytest.raises(Forbidden, match='needs the admin role'):
            setup[0].prices.recalculate(Actor('someone', role), '2026-01-01', dry_run=True)


def test_events_are_re_priced_with_the_units_they_were_stored_with(engine: Engine) -> None:
    """Audio tokens (priced at their own rate), a transcription by its seconds and an image override's images: the
    same prices give the same costs, so nothing changes; without the stored units they would all come out wrong."""
    pricer = Pricer({('openai', 'dall-e-3'): OverrideRates(0, 0, images={('1024x1024', 'standard'): 40_000})})
    ledger = Ledger(engine, pricer, EventHub())
    ts = datetime(2026, 5, 4, 12, tzinfo=UTC)
    results = ledger.record_batch([
        {'event_id': 'audio', 'provider': 'openai', 'model': 'gpt-audio', 'ts': ts.isoformat(), 'input_tokens': 12_345,
         'audio_input_tokens': 10_000, 'output_tokens': 7_000, 'audio_output_tokens': 6_000},
        {'event_id': 'whisper', 'provider': 'openai', 'model': 'whisper-1', 'ts': ts.isoformat(), 'kind':
         'audio_transcription', 'audio_seconds': 61.234},
        {'event_id': 'image', 'provider': 'openai', 'model': 'dall-e-3', 'ts': ts.isoformat(), 'kind': 'image',
         'images': {'count': 2, 'size': '1024x1024', 'quality': 'standard'}},
    ])
    assert [(r.status, r.cost_source) for r in results] == [('stored', 'priced')] * 3
    assert results[2].cost_micros == 80_000
    with engine.connect() as conn:
        before = everything(conn)
    result = Recalculation(ledger, ts - timedelta(hours=1), ts + timedelta(hours=1), 'test').apply()
    assert (result['events_examined'], result['events_changed'], result['events_kept']) == (3, 0, 0)
    with engine.connect() as conn:
        after = everything(conn)
    assert len(after.pop(PRICE_AUDITS.name)) == 1 + len(before.pop(PRICE_AUDITS.name))  # the run's audit row
    assert after == before
