"""The daily digest through the delivery queue, against real receivers on 127.0.0.1 (the webhook and SMTP servers of
test_notify.py): the generic JSON, Slack blocks, a multipart e-mail, retries that resend the stored rendering, the
once-per-day rule of the scheduled send, the admin role, and the cron job on the scheduler."""
from __future__ import annotations

import email
from datetime import UTC, date, datetime, timedelta
from email.message import Message
from typing import Any

import pytest
from sqlalchemy import Engine

from services.alerting.notify import Backoff, DeliveryOut, Notifier, list_deliveries
from services.commands import CommandContext, Commands
from services.core.access import SYSTEM, Actor, Role
from services.core.errors import Forbidden
from services.core.settings import NotifySettings, Settings
from services.live.hub import EventHub
from services.live.topics import DigestQueued
from services.sources.jobs import SyncJobs
from services.sources.sync import SyncService
from services.usage.ledger import Ledger
from services.usage.pricing import Pricer
from tests.services.alerting.test_notify import NO_WAIT, Mailbox, receiver, smtp_server  # noqa: F401 (fixtures)
from tests.support.fake_api import FakeAPI, Reply

TZ = 'Europe/Berlin'
NOW = datetime(2026, 3, 11, 7, 0, tzinfo=UTC)  # 08:00 in Berlin
DAY = date(2026, 3, 10)
KEY = 20260310
NASTY = '<script>alert(1)</script>'


def commands(engine: Engine, hub: EventHub, **notify: Any) -> Commands:
    settings = Settings.load(tz=TZ, notify=NotifySettings.load(**notify))
    return Commands(CommandContext(engine, hub, pricer=Pricer(), settings=settings))


def notifier(engine: Engine, hub: EventHub, backoff: Backoff = NO_WAIT, **notify: Any) -> Notifier:
    started = Notifier(engine, NotifySettings.load(**notify), hub, Settings.load(tz=TZ).budget, backoff, 3600)
    started.start()
    return started


def spend(engine: Engine, hub: EventHub) -> None:
    Ledger(engine, Pricer(), hub).record({'event_id': 'd1', 'agent_id': NASTY, 'provider': 'openai',
                                          'model': 'gpt-4o', 'ts': '2026-03-10T12:00:00+01:00',
                                          'input_tokens': 100_000, 'output_tokens': 2_000})


def digest_rows(engine: Engine) -> dict[str, DeliveryOut]:
    with engine.connect() as conn:
        return {r['channel']: r for r in list_deliveries(conn, 'digest')}


async def test_the_generic_webhook_gets_the_digest_json(engine: Engine, hub: EventHub,
                                                        receiver: tuple[FakeAPI, list[Any]]) -> None:  # noqa: F811
    api, bodies = receiver
    api.route('/hook', {'ok': True}, method='POST')
    url = f'{api.url}/hook?token=s3cret'
    spend(engine, hub)
    sender = notifier(engine, hub, webhook_url=url)
    try:
        queued = commands(engine, hub, webhook_url=url).digest.send_now(SYSTEM, DAY, NOW)
        await sender.idle()
    finally:
        await sender.stop()
    assert [(r['channel'], r['kind'], r['ref_id'], r['status']) for r in queued] == \
        [('log', 'digest', KEY, 'pending'), ('webhook', 'digest', KEY, 'pending')]
    [body] = bodies
    assert (body['source'], body['kind'], body['digest']['day']) == ('spendgauge', 'digest', '2026-03-10')
    assert body['digest']['top_agents'][0]['name'] == NASTY and body['digest']['spent_micros'] > 0
    rows = digest_rows(engine)
    assert {c: (r['status'], r['attempts']) for c, r in rows.items()} == {'log': ('delivered', 1),
                                                                         'webhook': ('delivered', 1)}
    assert rows['webhook']['target'] == f'{api.url}/…' and 's3cret' not in str(rows['webhook'])
    assert rows['webhook']['payload']['body'] == body  # what was sent is what is stored


async def test_slack_hooks_get_blocks(sqlite_engine: Engine, hub: EventHub, receiver: tuple[FakeAPI, list[Any]],  # noqa: F811
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A hooks.slack.com URL, reached through the fake API acting as a plain-HTTP proxy (as test_notify does)."""
    api, bodies = receiver
    api.route('/services/T000/B000/XXXSECRET', 'ok', method='POST')
    for name in ('NO_PROXY', 'no_proxy', 'ALL_PROXY', 'all_proxy'):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv('HTTP_PROXY', api.url)
    url = 'http://hooks.slack.com/services/T000/B000/XXXSECRET'
    spend(sqlite_engine, hub)
    sender = notifier(sqlite_engine, hub, webhook_url=url)
    try:
        commands(sqlite_engine, hub, webhook_url=url).digest.send_now(SYSTEM, DAY, NOW)
        await sender.idle()
    finally:
        await sender.stop()
    [body] = bodies
    assert body['text'].startswith('[SpendGauge] Daily digest 2026-03-10')
    assert [b['type'] for b in body['blocks']] == ['header', 'section', 'section', 'section', 'context']
    assert '&lt;script&gt;' in body['blocks'][1]['fields'][2]['text']
    slack = digest_rows(sqlite_engine)['slack']
    assert (slack['status'], slack['target']) == ('delivered', 'http://hooks.slack.com/…')


def parts(message: Message) -> dict[str, str]:
    found = {}
    for part in message.walk():
        if not part.is_multipart():
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            found[part.get_content_type()] = payload.decode(part.get_content_charset() or 'utf-8')
    return found


async def test_the_email_has_a_text_and_an_html_part(engine: Engine, hub: EventHub,
                                                     smtp_server: tuple[int, Mailbox]) -> None:  # noqa: F811
    port, box = smtp_server
    smtp: dict[str, Any] = {'smtp_host': '127.0.0.1', 'smtp_port': port, 'smtp_from': 'spendgauge@test',
            'smtp_to': ('ops@test',), 'smtp_starttls': False}
    spend(engine, hub)
    sender = notifier(engine, hub, **smtp)
    try:
        commands(engine, hub, **smtp).digest.send_now(SYSTEM, DAY, NOW)
        await sender.idle()
    finally:
        await sender.stop()
    [raw] = box.messages
    message = email.message_from_string(raw)
    assert message['Subject'].startswith('[SpendGauge] Daily digest 2026-03-10: $')
    assert message.get_content_type() == 'multipart/alternative' and message['To'] == 'ops@test'
    found = parts(message)
    assert set(found) == {'text/plain', 'text/html'}
    assert f'{NASTY}' in found['text/plain'] and 'Top agents:' in found['text/plain']
    assert '&lt;script&gt;alert(1)&lt;/script&gt;' in found['text/html'] and '<script>' not in found['text/html']
    mail = digest_rows(engine)['email']
    assert (mail['status'], mail['attempts'], mail['target']) == ('delivered', 1, 'ops@test')


async def test_a_failure_is_retried_with_what_was_rendered_first(engine: Engine, hub: EventHub,
                                                                 receiver: tuple[FakeAPI, list[Any]]) -> None:  # noqa: F811
    api, bodies = receiver
    api.route('/hook', Reply(status=503), {'ok': True}, method='POST')
    url = f'{api.url}/hook'
    spend(engine, hub)
    sender = notifier(engine, hub, Backoff(base_s=30, max_attempts=4), webhook_url=url)
    try:
        commands(engine, hub, webhook_url=url).digest.send_now(SYSTEM, DAY, NOW)
        await sender.idle()
        first = digest_rows(engine)['webhook']
        assert (first['status'], first['attempts'], first['last_error']) == ('pending', 1, 'HTTP 503')
        Ledger(engine, Pricer(), hub).record({'event_id': 'd2', 'agent_id': 'late', 'provider': 'openai',
                                              'model': 'gpt-4o', 'ts': '2026-03-10T13:00:00+01:00',
                                              'input_tokens': 5_000, 'output_tokens': 100})
        assert await sender.run_due(datetime.now(UTC) + timedelta(seconds=31)) == 1
    finally:
        await sender.stop()
    done = digest_rows(engine)['webhook']
    assert (done['status'], done['attempts']) == ('delivered', 2)
    assert len(bodies) == 2 and bodies[0] == bodies[1], 'the retry resends the stored rendering'
    assert [a['name'] for a in bodies[1]['digest']['top_agents']] == [NASTY]


def test_the_scheduled_send_goes_once_a_day_and_send_now_always(engine: Engine, hub: EventHub) -> None:
    heard: list[Any] = []
    hub.subscribe(heard.append)
    digest = commands(engine, hub).digest  # no webhook, no SMTP: built and logged all the same
    first = digest.send_scheduled(SYSTEM, NOW)
    assert [(r['channel'], r['ref_id']) for r in first] == [('log', KEY)]
    assert first[0]['payload']['text'].startswith('SpendGauge daily digest for 2026-03-10 (Europe/Berlin)')
    assert digest.send_scheduled(SYSTEM, NOW + timedelta(hours=2)) == [], 'a restart the same day sends nothing'
    again = digest.send_now(SYSTEM, DAY, NOW)
    assert len(again) == 1 and again[0]['id'] != first[0]['id'], 'send-now is forced'
    next_day = digest.send_scheduled(SYSTEM, NOW + timedelta(days=1))
    assert [r['ref_id'] for r in next_day] == [20260311]
    assert [e for e in heard if isinstance(e, DigestQueued)] == [
        DigestQueued('2026-03-10', (first[0]['id'],)), DigestQueued('2026-03-10', (again[0]['id'],)),
        DigestQueued('2026-03-11', (next_day[0]['id'],))]


def test_only_an_admin_sends(engine: Engine, hub: EventHub) -> None:
    digest = commands(engine, hub).digest
    for role in (Role.READ, Role.INGEST):
        with pytest.raises(Forbidden, match='sending the daily digest needs the admin role'):
            digest.send_now(Actor('reed', role), DAY, NOW)
        with pytest.raises(Forbidden):
            digest.send_scheduled(Actor('reed', role), NOW)
    assert digest_rows(engine) == {}


async def test_the_cron_job_fires_at_the_local_time_on_the_leader_only(sqlite_engine: Engine,
                                                                      hub: EventHub) -> None:
    """The job as app/server.py adds it (called directly, not waited for): 08:30 Berlin time, led like the pulls."""
    digest = commands(sqlite_engine, hub).digest
    leading = [False]
    jobs = SyncJobs(SyncService(sqlite_engine, {}, hub), 15, 60, is_leader=lambda: leading[0])
    jobs.add_daily('digest', lambda: digest.send_scheduled(SYSTEM), 8, 30, Settings.load(tz=TZ).zone)
    jobs.scheduler.start(paused=True)
    try:
        job = jobs.scheduler.get_job('digest')
        assert job is not None
        winter = job.trigger.get_next_fire_time(None, datetime(2026, 3, 11, 6, 0, tzinfo=UTC))
        summer = job.trigger.get_next_fire_time(None, datetime(2026, 7, 1, 6, 0, tzinfo=UTC))
        assert winter.astimezone(UTC) == datetime(2026, 3, 11, 7, 30, tzinfo=UTC)  # CET
        assert summer.astimezone(UTC) == datetime(2026, 7, 1, 6, 30, tzinfo=UTC)  # CEST
        assert await job.func() is None and digest_rows(sqlite_engine) == {}, 'not the leader: nothing sent'
        leading[0] = True
        sent = await job.func()
        assert [r['channel'] for r in sent] == ['log']
        assert await job.func() == [], 'once a day'
    finally:
        jobs.stop()
