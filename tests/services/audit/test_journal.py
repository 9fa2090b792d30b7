"""The JSONL audit log: state changes and raw usage events written one a line, a file per UTC day (a settable clock,
no waiting for midnight), raw events exactly as received, secrets masked, and a disk that fails never failing the
change or the ingest (counted and logged instead)."""
from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from services.audit.journal import Journal, file_for
from services.commands import CommandContext, Commands
from services.core.access import Actor, Role
from services.core.settings import NotifySettings, Settings
from services.core.tables import AUDIT_LOG, EVENTS
from services.live.hub import EventHub
from services.usage.ledger import Ledger
from services.usage.pricing import Pricer

OPS = Actor('token ops', Role.ADMIN)
DAY_ONE = datetime(2026, 12, 4, 23, 59, 58, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def wired(engine: Engine, journal: Journal, **settings: Any) -> Commands:
    hub, pricer = EventHub(), Pricer()
    ledger = Ledger(engine, pricer, hub)
    ledger.journal = journal
    return Commands(CommandContext(engine, hub, pricer=pricer, ledger=ledger, journal=journal,
                                   settings=Settings.load(**settings) if settings else None))


def test_changes_and_raw_events_go_to_the_file_of_their_utc_day(engine: Engine, tmp_path: Path) -> None:
    clock = Clock(DAY_ONE)
    journal = Journal(tmp_path / 'audit', clock=clock)
    commands = wired(engine, journal)
    assert commands.ctx.ledger is not None
    try:
        odd = {'model': 'gpt-4o', 'provider': 'openai', 'input_tokens': 12, 'metadata': {'ünïcode': '✓', 'n': 1.50},
               'agent_id': 'coder', 'extra_field_we_ignore': [1, 2]}
        rejected = {'model': 'gpt-4o', 'input_tokens': -5}
        commands.ctx.ledger.record_batch([odd, rejected])
        commands.eco.switch(OPS, True, 'cheap week')
        journal.flush()
        clock.now = DAY_ONE + timedelta(seconds=5)  # past midnight UTC: the next file
        commands.eco.switch(OPS, False)
        journal.flush()
    finally:
        journal.close()
    first, second = file_for(tmp_path / 'audit', DAY_ONE.date()), tmp_path / 'audit' / 'audit-2026-12-05.jsonl'
    assert first.name == 'audit-2026-12-04.jsonl'
    day_one, day_two = lines(first), lines(second)
    assert [r['kind'] for r in day_one] == ['event', 'event', 'change']
    assert day_one[0]['event'] == odd and day_one[1]['event'] == rejected  # as received, the rejected one too
    assert day_one[0]['at'] == DAY_ONE.isoformat()
    change = day_one[2]
    assert (change['actor'], change['action'], change['target']) == ('token ops', 'eco.switch', 'eco_mode')
    assert change['before']['eco_mode'] is False and change['after'] == {**change['after'], 'eco_mode': True}
    with engine.connect() as conn:  # the same change, the same row id, in the database
        assert conn.execute(select(AUDIT_LOG.c.id).where(AUDIT_LOG.c.action == 'eco.switch')).scalars().all()[0] \
            == change['id']
    assert [(r['kind'], r['after']['eco_mode']) for r in day_two] == [('change', False)]
    assert journal.written == 4 and journal.failed == 0


def test_a_path_ending_in_jsonl_is_rotated_beside_it(tmp_path: Path) -> None:
    assert file_for(tmp_path / 'trail.jsonl', DAY_ONE.date()) == tmp_path / 'trail-2026-12-04.jsonl'
    journal = Journal(tmp_path / 'logs' / 'trail.jsonl', clock=Clock(DAY_ONE))
    journal.events([{'model': 'm'}])
    journal.close()  # what is queued is written before the thread ends
    assert lines(tmp_path / 'logs' / 'trail-2026-12-04.jsonl')[0]['event'] == {'model': 'm'}


def test_secrets_never_reach_the_file(engine: Engine, tmp_path: Path) -> None:
    hook = 'https://hooks.example/T000/very-secret-path'
    journal = Journal(tmp_path, secrets=(hook,), clock=Clock(DAY_ONE))
    commands = wired(engine, journal, notify=NotifySettings.load(webhook_url=hook))
    assert commands.ctx.ledger is not None
    try:
        created = commands.accounts.create_token(OPS, Role.READ, 'grafana')
        commands.accounts.create_user(OPS, 'alice', 'correct horse battery', Role.READ)
        commands.ctx.ledger.record({'model': 'gpt-4o', 'provider': 'openai', 'input_tokens': 1,
                                    'metadata': {'note': f'posted to {hook}', 'api_key': 'sk-live-abcdefghijkl'}})
        journal.flush()
    finally:
        journal.close()
    text = (tmp_path / 'audit-2026-12-04.jsonl').read_text()
    for secret in (created['token'], 'correct horse battery', hook, 'sk-live-abcdefghijkl'):
        assert secret not in text
    assert lines(tmp_path / 'audit-2026-12-04.jsonl')[0]['after']['token'] == '***'


def test_an_unwritable_path_fails_neither_the_change_nor_the_ingest(engine: Engine, tmp_path: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / 'not-a-directory'
    blocker.write_text('a file where the directory should be')
    journal = Journal(blocker / 'audit', clock=Clock(DAY_ONE))
    commands = wired(engine, journal)
    assert commands.ctx.ledger is not None
    with caplog.at_level(logging.WARNING, logger='services.audit.journal'):
        try:
            status, _ = commands.ctx.ledger.record({'model': 'gpt-4o', 'provider': 'openai', 'input_tokens': 3})
            state = commands.eco.switch(OPS, True)
            journal.flush()
        finally:
            journal.close()
    assert status == 'stored' and state['eco_mode'] is True
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(EVENTS)).scalar_one() == 1
        assert conn.execute(select(func.count()).select_from(AUDIT_LOG)).scalar_one() == 1  # the row is kept
    assert journal.failed == 2 and journal.written == 0
    assert 'audit log: 1 lines not written' in caplog.text


def test_a_full_queue_drops_and_counts_instead_of_blocking(tmp_path: Path) -> None:
    journal = Journal(tmp_path, clock=Clock(DAY_ONE), max_waiting=1)
    for _ in range(200):  # far faster than the writer: most find the queue full
        journal.events([{'model': 'm'}])
    journal.close()
    assert journal.dropped > 0 and journal.written + journal.dropped == 200


def test_spendgauge_audit_log_turns_it_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from app import runtime

    monkeypatch.setenv('SPENDGAUGE_AUDIT_LOG', str(tmp_path / 'trail'))
    rt = runtime.start()
    journal = rt.ledger.journal
    assert journal is not None and rt.commands.ctx.journal is journal
    rt.ledger.record({'model': 'gpt-4o', 'provider': 'openai', 'input_tokens': 7, 'event_id': 'e-1'})
    rt.commands.limits.set(OPS, 'week', 9_000_000)
    journal.flush()
    written = lines(file_for(tmp_path / 'trail', datetime.now(UTC).date()))
    assert [r['kind'] for r in written] == ['event', 'change'] and written[0]['event']['event_id'] == 'e-1'
    runtime.stop()
    assert not journal._thread.is_alive()  # closed with the runtime
