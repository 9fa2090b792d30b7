"""Alert and eco notifications against real receivers on 127.0.0.1: webhooks (tests/fake_api.py, Slack through an
HTTP proxy hop), e-mail (a small SMTP server run here), retries with backoff, permanent failures, no secrets."""
from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import socketserver
import ssl
import subprocess
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, insert

from services.alerting import alerts, notify
from services.alerting.notify import Backoff, DeliveryOut, Notifier, eco_delivery_text, list_deliveries, safe_target
from services.budget import eco, limits
from services.core.context import BudgetContext
from services.core.settings import NotifySettings
from services.core.tables import POLICIES
from services.live.hub import EventHub
from services.live.topics import AlertRaised, EcoChanged
from services.sources.openrouter import OpenRouterPuller
from services.sources.sync import SyncService
from tests.support import fake_api
from tests.support.fake_api import FakeAPI, Reply, closed_port_url
from tests.support.servers import start_server

UTC_ZONE = ZoneInfo('UTC')
NO_WAIT = Backoff(base_s=0.0, max_attempts=4)  # retries are due at once; tests drive them with run_due()
SECRET_TOKEN = 'tok-5ecret-abc'
USD_5 = 5_000_000
SMTP_PASSWORD = 'hunter2-smtp-pass'


# --- receivers ---------------------------------------------------------------------------------------------------

@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FakeAPI, list[Any]]]:
    """A FakeAPI that also keeps the JSON body of each request (FakeAPI itself reads and drops it)."""
    bodies: list[Any] = []
    original = fake_api._handler_class

    def capturing(api: FakeAPI) -> type:
        base = original(api)

        class Handler(base):  # type: ignore[misc, valid-type]  # a base made at run time by fake_api
            rfile: io.BufferedIOBase

            def _serve(self) -> None:
                length = int(self.headers.get('content-length') or 0)
                raw = self.rfile.read(length) if length else b''
                bodies.append(json.loads(raw) if raw else None)
                rfile, self.rfile = self.rfile, io.BytesIO(raw)
                try:
                    super()._serve()
                finally:
                    self.rfile = rfile

            do_POST = _serve
        return Handler

    monkeypatch.setattr(fake_api, '_handler_class', capturing)
    with FakeAPI() as api:
        monkeypatch.setattr(fake_api, '_handler_class', original)
        yield api, bodies


@dataclass
class Mailbox:
    messages: list[str] = field(default_factory=list)
    auth: list[str] = field(default_factory=list)
    fail_mail_from: int = 0  # answer 451 to this many MAIL FROM commands first
    tls: ssl.SSLContext | None = None  # offer STARTTLS with this server context
    auth_over_tls: list[bool] = field(default_factory=list)


class _SMTPHandler(socketserver.StreamRequestHandler):
    """Just enough SMTP for smtplib: EHLO (with AUTH PLAIN), AUTH, MAIL, RCPT, DATA, RSET, NOOP, QUIT."""

    def _reply(self, line: str) -> None:
        self.wfile.write((line + '\r\n').encode())

    def finish(self) -> None:
        super().finish()
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.close()

    def handle(self) -> None:
        assert isinstance(self.server, _SMTPServer)
        box = self.server.mailbox
        self._reply('220 test ESMTP')
        while True:
            line = self.rfile.readline().decode(errors='replace').rstrip('\r\n')
            if not line:
                return
            verb = line.split(' ', 1)[0].upper()
            if verb == 'EHLO':
                self._reply('250-test')
                if box.tls is not None and not isinstance(self.connection, ssl.SSLSocket):
                    self._reply('250-STARTTLS')
                self._reply('250 AUTH PLAIN')
            elif verb == 'STARTTLS' and box.tls is not None:
                self._reply('220 ready to start TLS')
                try:
                    self.connection = box.tls.wrap_socket(self.connection, server_side=True)
                except (ssl.SSLError, OSError):
                    return  # the client did not trust our certificate
                self.rfile = self.connection.makefile('rb')
                self.wfile = self.connection.makefile('wb', buffering=0)
            elif verb == 'AUTH':
                box.auth.append(base64.b64decode(line.split()[-1]).decode())
                box.auth_over_tls.append(isinstance(self.connection, ssl.SSLSocket))
                self._reply('235 ok')
            elif verb == 'MAIL':
                if box.fail_mail_from > 0:
                    box.fail_mail_from -= 1
                    self._reply('451 try again later')
                else:
                    self._reply('250 ok')
            elif verb == 'DATA':
                self._reply('354 go ahead')
                data = []
                while (chunk := self.rfile.readline().decode(errors='replace')) not in ('.\r\n', ''):
                    data.append(chunk)
                box.messages.append(''.join(data))
                self._reply('250 queued')
            elif verb == 'QUIT':
                self._reply('221 bye')
                return
            else:  # RCPT, RSET, NOOP, HELO
                self._reply('250 ok')


class _SMTPServer(socketserver.ThreadingTCPServer):
    mailbox: Mailbox


@pytest.fixture
def smtp_server() -> Iterator[tuple[int, Mailbox]]:
    server = _SMTPServer(('127.0.0.1', 0), _SMTPHandler)
    server.daemon_threads = True
    server.mailbox = Mailbox()
    thread = threading.Thread(target=server.serve_forever, kwargs={'poll_interval': 0.05}, daemon=True)
    thread.start()
    yield server.server_address[1], server.mailbox
    server.shutdown()
    server.server_close()


@pytest.fixture
def tls_cert(tmp_path: Path) -> tuple[Path, ssl.SSLContext]:
    """A self-signed certificate for 127.0.0.1 (openssl), and a server context that presents it."""
    cert, key = tmp_path / 'cert.pem', tmp_path / 'key.pem'
    subprocess.run(['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1',
                    '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', str(key), '-out', str(cert)],
                   check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return cert, context


# --- helpers -----------------------------------------------------------------------------------------------------

def new_alert(engine: Engine, key: str = 'test:1', message: str = 'agent looped') -> alerts.AlertOut:
    with engine.begin() as conn:
        alert, is_new = alerts.raise_alert(conn, 'anomaly', 'critical', message, key, {'agent_id': 'looper'})
    assert alert is not None and is_new
    return alert


def started(engine: Engine, hub: EventHub, backoff: Backoff = NO_WAIT, retry_interval_s: float = 3600,
            **settings: Any) -> Notifier:
    notifier = Notifier(engine, NotifySettings(**settings), hub, BudgetContext(UTC_ZONE), backoff,
                        retry_interval_s)
    notifier.start()
    return notifier


def rows(engine: Engine, kind: str | None = None) -> list[DeliveryOut]:
    with engine.connect() as conn:
        return sorted(list_deliveries(conn, kind), key=lambda r: r['id'])


def by_channel(engine: Engine) -> dict[str, DeliveryOut]:
    return {r['channel']: r for r in rows(engine)}


# --- webhooks ----------------------------------------------------------------------------------------------------

async def test_a_new_alert_is_logged_and_posted_as_json(engine: Engine, hub: EventHub,
                                                        receiver: tuple[FakeAPI, list[Any]]) -> None:
    api, bodies = receiver
    api.route('/hook', {'ok': True}, method='POST')
    notifier = started(engine, hub, webhook_url=f'{api.url}/hook?token={SECRET_TOKEN}')
    try:
        alert = new_alert(engine)
        hub.publish(AlertRaised(alert))
        await notifier.idle()
    finally:
        await notifier.stop()
    assert bodies == [{'source': 'spendgauge', 'kind': 'alert', 'alert': alert}]
    assert api.hits('/hook')[0].param('token') == SECRET_TOKEN
    channels = by_channel(engine)
    assert set(channels) == {'log', 'webhook'}
    hook = channels['webhook']
    assert (hook['kind'], hook['ref_id'], hook['status'], hook['attempts']) == ('alert', alert['id'], 'delivered', 1)
    assert hook['target'] == f'{api.url}/…' and hook['payload'] == alert
    assert channels['log']['status'] == 'delivered'


async def test_slack_hooks_get_text(sqlite_engine: Engine, hub: EventHub, receiver: tuple[FakeAPI, list[Any]],
                                    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A hooks.slack.com URL, reached through the fake API acting as a plain-HTTP proxy."""
    caplog.set_level(logging.DEBUG)
    api, bodies = receiver
    api.route('/services/T000/B000/XXXSECRET', 'ok', method='POST')
    for name in ('NO_PROXY', 'no_proxy', 'ALL_PROXY', 'all_proxy'):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv('HTTP_PROXY', api.url)
    notifier = started(sqlite_engine, hub, webhook_url='http://hooks.slack.com/services/T000/B000/XXXSECRET')
    try:
        alert = new_alert(sqlite_engine, message='planner spent $12 in the last hour')
        hub.publish(AlertRaised(alert))
        await notifier.idle()
    finally:
        await notifier.stop()
    assert bodies == [{'text': ':rotating_light: SpendGauge critical anomaly: planner spent $12 in the last hour'}]
    slack = by_channel(sqlite_engine)['slack']
    assert slack['status'] == 'delivered'
    assert slack['target'] == 'http://hooks.slack.com/…'
    assert 'XXXSECRET' not in caplog.text


async def test_failures_are_recorded_and_retried_with_backoff_until_delivered(
        engine: Engine, hub: EventHub, receiver: tuple[FakeAPI, list[Any]]) -> None:
    api, bodies = receiver
    api.route('/hook', Reply(status=500), Reply(status=503), {'ok': True}, method='POST')
    notifier = started(engine, hub, Backoff(base_s=30, max_attempts=5), webhook_url=f'{api.url}/hook')
    try:
        alert = new_alert(engine)
        hub.publish(AlertRaised(alert))
        await notifier.idle()
        first = by_channel(engine)['webhook']
        assert (first['status'], first['attempts'], first['last_error']) == ('pending', 1, 'HTTP 500')
        assert first['next_attempt_at'] is not None
        due = datetime.fromisoformat(first['next_attempt_at'])
        assert timedelta(seconds=25) < due - datetime.now(UTC) <= timedelta(seconds=30)
        assert await notifier.run_due() == 0, 'not due yet'
        assert await notifier.run_due(datetime.now(UTC) + timedelta(seconds=31)) == 1
        second = by_channel(engine)['webhook']
        assert (second['status'], second['attempts'], second['last_error']) == ('pending', 2, 'HTTP 503')
        assert second['next_attempt_at'] is not None
        due = datetime.fromisoformat(second['next_attempt_at'])
        assert timedelta(seconds=55) < due - datetime.now(UTC) <= timedelta(seconds=60), 'the wait doubles'
        assert await notifier.run_due(datetime.now(UTC) + timedelta(seconds=61)) == 1
    finally:
        await notifier.stop()
    done = by_channel(engine)['webhook']
    assert (done['status'], done['attempts'], done['next_attempt_at']) == ('delivered', 3, None)
    assert len(api.hits('/hook')) == 3 and bodies[-1]['alert']['id'] == alert['id']


async def test_the_retry_loop_picks_up_due_deliveries_by_itself(sqlite_engine: Engine, hub: EventHub,
                                                                receiver: tuple[FakeAPI, list[Any]]) -> None:
    api, _ = receiver
    api.route('/hook', Reply(status=502), {'ok': True}, method='POST')
    notifier = started(sqlite_engine, hub, Backoff(base_s=0.05), retry_interval_s=0.05, webhook_url=f'{api.url}/hook')
    try:
        hub.publish(AlertRaised(new_alert(sqlite_engine)))
        for _ in range(100):
            await notifier.idle()
            hook = by_channel(sqlite_engine).get('webhook')
            if hook is not None and hook['status'] == 'delivered':
                break
            await asyncio.sleep(0.05)
    finally:
        await notifier.stop()
    hook = by_channel(sqlite_engine)['webhook']
    assert (hook['status'], hook['attempts'], hook['last_error']) == ('delivered', 2, 'HTTP 502')


async def test_a_permanent_failure_is_kept_as_failed(engine: Engine, hub: EventHub) -> None:
    notifier = started(engine, hub, Backoff(base_s=0.0, max_attempts=3), webhook_url=closed_port_url() + '/hook')
    try:
        hub.publish(AlertRaised(new_alert(engine)))
        await notifier.idle()
        assert await notifier.run_due() == 1
        assert await notifier.run_due() == 1
        assert await notifier.run_due() == 0, 'given up: not attempted again'
    finally:
        await notifier.stop()
    hook = by_channel(engine)['webhook']
    assert (hook['status'], hook['attempts'], hook['next_attempt_at']) == ('failed', 3, None)
    assert hook['last_error'] is not None and hook['last_error'].startswith('cannot connect')


# --- e-mail ------------------------------------------------------------------------------------------------------

async def test_alerts_are_mailed_with_login(sqlite_engine: Engine, hub: EventHub,
                                            smtp_server: tuple[int, Mailbox]) -> None:
    port, box = smtp_server
    notifier = started(sqlite_engine, hub, smtp_host='127.0.0.1', smtp_port=port, smtp_user='mailer',
                       smtp_password=SMTP_PASSWORD, smtp_from='spendgauge@test', smtp_to=('ops@test', 'cto@test'),
                       smtp_starttls=False)
    try:
        hub.publish(AlertRaised(new_alert(sqlite_engine, message='coder burns $40/h')))
        await notifier.idle()
    finally:
        await notifier.stop()
    mail = by_channel(sqlite_engine)['email']
    assert (mail['status'], mail['attempts'], mail['target']) == ('delivered', 1, 'ops@test, cto@test')
    assert len(box.messages) == 1
    assert 'Subject: [SpendGauge] critical anomaly' in box.messages[0] and 'coder burns $40/h' in box.messages[0]
    assert box.auth == [f'\x00mailer\x00{SMTP_PASSWORD}']


async def test_a_refused_mail_is_retried(sqlite_engine: Engine, hub: EventHub,
                                         smtp_server: tuple[int, Mailbox]) -> None:
    port, box = smtp_server
    box.fail_mail_from = 1
    notifier = started(sqlite_engine, hub, smtp_host='127.0.0.1', smtp_port=port, smtp_to=('ops@test',),
                       smtp_starttls=False)
    try:
        hub.publish(AlertRaised(new_alert(sqlite_engine)))
        await notifier.idle()
        first = by_channel(sqlite_engine)['email']
        assert (first['status'], first['attempts'], first['last_error']) == ('pending', 1, 'SMTP 451')
        assert await notifier.run_due() == 1
    finally:
        await notifier.stop()
    assert by_channel(sqlite_engine)['email']['status'] == 'delivered'
    assert len(box.messages) == 1


async def test_secrets_never_reach_rows_or_logs(sqlite_engine: Engine, hub: EventHub,
                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    url = f'http://user:{SECRET_TOKEN}@127.0.0.1:{closed_port_url().rsplit(":", 1)[1]}/hook?key={SECRET_TOKEN}'
    notifier = started(sqlite_engine, hub, Backoff(base_s=0.0, max_attempts=2), webhook_url=url,
                       n8n_webhook_url=url, smtp_host='127.0.0.1', smtp_port=int(closed_port_url().rsplit(':')[-1]),
                       smtp_user='mailer', smtp_password=SMTP_PASSWORD, smtp_to=('ops@test',), smtp_starttls=False)
    try:
        hub.publish(AlertRaised(new_alert(sqlite_engine)))
        with sqlite_engine.begin() as conn:
            eco.set_eco(conn, True, 'test')
        hub.publish(EcoChanged(True, 'manual'))
        await notifier.idle()
        await notifier.run_due()
    finally:
        await notifier.stop()
    stored = json.dumps(rows(sqlite_engine))
    assert {r['status'] for r in rows(sqlite_engine) if r['channel'] != 'log'} == {'failed'}
    for secret in (SECRET_TOKEN, SMTP_PASSWORD):
        assert secret not in stored
        assert secret not in caplog.text
    # the pydantic plugin knows webhook_url by its alias only; _Group._by_field_name takes the field name too
    shown = repr(NotifySettings(webhook_url=url, smtp_password=SMTP_PASSWORD))  # type: ignore[call-arg]
    assert shown.count(SECRET_TOKEN) == 0


def test_httpx_request_lines_are_redacted() -> None:
    slack = 'https://hooks.slack.com/services/T1/B2/XXXSECRET'
    redact = notify._RedactUrls((slack, f'https://n8n.test/webhook/eco?token={SECRET_TOKEN}'))
    for url, shown in ((slack, 'https://hooks.slack.com/…'),
                       (f'https://n8n.test/webhook/eco?token={SECRET_TOKEN}', 'https://n8n.test/…'),
                       ('https://api.openai.com/v1/organization/costs?limit=7', None)):
        record = logging.LogRecord('httpx', logging.INFO, __file__, 1, 'HTTP Request: %s %s "%s"',
                                   ('POST', url, 'HTTP/1.1 200 OK'), None)
        assert redact.filter(record)
        assert record.getMessage() == f'HTTP Request: POST {shown or url} "HTTP/1.1 200 OK"'


def test_safe_targets() -> None:
    # scheme, host and port only: webhooks carry their secrets in the path (Slack, n8n) and in the query
    assert safe_target('https://u:p@example.com:8443/hook?token=x') == 'https://example.com:8443/…'
    assert safe_target('https://hooks.slack.com/services/T1/B2/abc') == 'https://hooks.slack.com/…'
    assert safe_target('https://n8n.local/webhook/eco') == 'https://n8n.local/…'
    assert safe_target('https://n8n.local') == safe_target('https://n8n.local/') == 'https://n8n.local'
    assert safe_target('http://[::1]:9/x') == 'http://[::1]:9/…'
    assert safe_target('ops@test, cto@test') == 'ops@test, cto@test'
    assert safe_target('not a url/with/path') == '…'


# --- eco mode ----------------------------------------------------------------------------------------------------

async def test_an_eco_change_is_posted_once_and_recorded(engine: Engine, hub: EventHub,
                                                         receiver: tuple[FakeAPI, list[Any]]) -> None:
    api, bodies = receiver
    api.route('/webhook/eco', {'ok': True}, method='POST')
    notifier = started(engine, hub, n8n_webhook_url=f'{api.url}/webhook/eco')
    try:
        with engine.begin() as conn:
            limits.set_limit(conn, 'day', 5_000_000)
            state = eco.set_eco(conn, True, 'policy daily: 84% of $5.00')
        assert state['reason'] is not None
        hub.publish(EcoChanged(True, state['reason'], 4_200_000, 5_000_000))
        await notifier.idle()
        hub.publish(EcoChanged(True, 'again'))  # announced twice (another instance): sent once
        await notifier.idle()
        with engine.begin() as conn:
            off = eco.set_eco(conn, False, 'dashboard')
        hub.publish(EcoChanged(False, 'manual'))  # no spend in the event: the notifier reads today's
        await notifier.idle()
    finally:
        await notifier.stop()
    assert bodies == [
        {'eco_mode': True, 'reason': 'policy daily: 84% of $5.00', 'spent': '4.200000', 'spent_micros': 4_200_000,
         'limit': '5.000000', 'limit_micros': 5_000_000, 'at': state['changed_at']},
        {'eco_mode': False, 'reason': 'dashboard', 'spent': '0.000000', 'spent_micros': 0, 'limit': '5.000000',
         'limit_micros': 5_000_000, 'at': off['changed_at']}]
    recorded = rows(engine, 'eco')
    assert [(r['channel'], r['status'], r['target']) for r in recorded] == \
        [('n8n', 'delivered', f'{api.url}/…')] * 2
    assert recorded[0]['payload'] == bodies[0]
    assert eco_delivery_text(recorded[-1]).startswith('webhook delivered ')


async def test_a_failed_eco_delivery_shows_on_the_dashboard_data(sqlite_engine: Engine, hub: EventHub,
                                                                 receiver: tuple[FakeAPI, list[Any]]) -> None:
    api, _ = receiver
    api.route('/webhook/eco', Reply(status=500), method='POST')
    notifier = started(sqlite_engine, hub, Backoff(base_s=60), n8n_webhook_url=f'{api.url}/webhook/eco')
    try:
        with sqlite_engine.begin() as conn:
            eco.set_eco(conn, True, 'manual')
        hub.publish(EcoChanged(True, 'manual'))
        await notifier.idle()
    finally:
        await notifier.stop()
    from services.dashboard import DashboardConfig, load_dashboard

    with sqlite_engine.connect() as conn:
        data = load_dashboard(conn, DashboardConfig(BudgetContext(UTC_ZONE)))
    assert data.eco_delivery is not None
    assert data.eco_delivery['status'] == 'pending'
    assert eco_delivery_text(data.eco_delivery) == 'webhook failed: HTTP 500, retrying'
    assert eco_delivery_text({**data.eco_delivery, 'status': 'failed', 'attempts': 6}) == \
        'webhook failed: HTTP 500 (gave up after 6 attempts)'


async def test_no_eco_webhook_no_row(sqlite_engine: Engine, hub: EventHub) -> None:
    notifier = started(sqlite_engine, hub)
    try:
        with sqlite_engine.begin() as conn:
            eco.set_eco(conn, True, 'manual')
        hub.publish(EcoChanged(True, 'manual'))
        hub.publish(AlertRaised(new_alert(sqlite_engine)))
        await notifier.idle()
    finally:
        await notifier.stop()
    assert [(r['kind'], r['channel']) for r in rows(sqlite_engine)] == [('alert', 'log')]


def test_backoff_doubles_up_to_a_cap() -> None:
    backoff = notify.Backoff(base_s=30, max_s=100)
    assert [backoff.delay(n).total_seconds() for n in (1, 2, 3, 4)] == [30, 60, 100, 100]


# --- sources of alert_raised, and the whole path through a real server ----------------------------------------------

async def test_sync_publishes_alert_raised_once_when_a_failure_alert_opens(sqlite_engine: Engine) -> None:
    hub = EventHub()
    raised: list[Mapping[str, Any]] = []
    hub.subscribe(lambda e: raised.append(e.alert) if isinstance(e, AlertRaised) else None)
    with FakeAPI() as api:
        api.route('/api/v1/key', Reply({'error': {'message': 'down'}}, status=503))
        puller = OpenRouterPuller('sk-or-test', api.url, retries=0, backoff_s=0.01, timeout=2)
        sync = SyncService(sqlite_engine, {'openrouter_direct': puller}, hub, lookback_days=1)
        try:
            for _ in range(5):
                await sync.run('openrouter_direct')
        finally:
            await sync.aclose()
    assert [(a['type'], a['count']) for a in raised] == [('sync_failure', 1)], 'only the run that opened it'


def test_a_server_posts_eco_changes(tmp_path: Path, receiver: tuple[FakeAPI, list[Any]]) -> None:
    api, bodies = receiver
    api.route('/webhook/eco', {'ok': True}, method='POST')
    server = start_server(tmp_path, SPENDGAUGE_N8N_WEBHOOK_URL=f'{api.url}/webhook/eco?token={SECRET_TOKEN}')
    try:
        with server.client() as client:
            assert client.post('/eco', json={'eco_mode': True, 'reason': 'pipeline'}).status_code == 200
            deadline = datetime.now(UTC) + timedelta(seconds=10)
            while not client.get('/alerts/deliveries', params={'status': 'delivered'}).json()['items']:
                assert datetime.now(UTC) < deadline, 'the eco change was not delivered'
                threading.Event().wait(0.05)
            listed = client.get('/alerts/deliveries', params={'kind': 'eco'}).json()
            assert listed['count'] == 1 and listed['items'][0]['channel'] == 'n8n'
            assert listed['items'][0]['payload']['eco_mode'] is True
            assert SECRET_TOKEN not in str(listed), 'the recorded target has no secret'
            assert client.get('/alerts/deliveries', params={'kind': 'alert'}).json() == {'items': [], 'count': 0}
            assert client.get('/alerts/deliveries', params={'status': 'lost'}).status_code == 422
    finally:
        server.stop()
    assert len(bodies) == 1
    assert {k: bodies[0][k] for k in ('eco_mode', 'reason', 'spent', 'limit')} == \
        {'eco_mode': True, 'reason': 'pipeline', 'spent': '0.000000', 'limit': '5.000000'}
    assert f'{api.url}/… ' in server.log(), 'httpx logs the request, with the path and query redacted'
    assert SECRET_TOKEN not in server.log()


async def test_a_policy_alert_goes_only_to_the_policys_channels(sqlite_engine: Engine, hub: EventHub,
                                                                receiver: tuple[FakeAPI, list[Any]]) -> None:
    api, bodies = receiver
    api.route('/hook', {'ok': True}, method='POST')
    now = datetime.now(UTC)
    with sqlite_engine.begin() as conn:
        ids = []
        for name, channels in (('quiet', ['log']), ('default', [])):
            key = conn.execute(insert(POLICIES).values(
                name=name, scope='global', period='day', limit_micros=USD_5, soft_percent=80, critical_percent=95,
                action='warn', notify=channels, auto_eco=False, enabled=True, origin='api', created_at=now,
                updated_at=now)).inserted_primary_key
            assert key is not None
            ids.append(key[0])
        quiet, _ = alerts.raise_alert(conn, 'threshold_warning', 'warning', 'quiet at 80%', 'p:quiet',
                                      {'policy_id': ids[0]})
        loud, _ = alerts.raise_alert(conn, 'threshold_warning', 'warning', 'default at 80%', 'p:default',
                                     {'policy_id': ids[1]})
    assert quiet is not None and loud is not None
    notifier = started(sqlite_engine, hub, webhook_url=f'{api.url}/hook')
    try:
        hub.publish(AlertRaised(quiet))
        hub.publish(AlertRaised(loud))
        await notifier.idle()
    finally:
        await notifier.stop()
    sent = sorted((r['ref_id'], r['channel']) for r in rows(sqlite_engine))
    assert sent == [(quiet['id'], 'log'), (loud['id'], 'log'), (loud['id'], 'webhook')]
    assert [b['alert']['message'] for b in bodies] == ['default at 80%']



async def test_mail_goes_over_starttls_before_the_login(sqlite_engine: Engine, hub: EventHub,
                                                       smtp_server: tuple[int, Mailbox],
                                                       tls_cert: tuple[Path, ssl.SSLContext],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    port, box = smtp_server
    cert, box.tls = tls_cert
    monkeypatch.setenv('SSL_CERT_FILE', str(cert))  # trust the test certificate (OpenSSL reads it at each context)
    notifier = started(sqlite_engine, hub, smtp_host='127.0.0.1', smtp_port=port, smtp_user='mailer',
                       smtp_password=SMTP_PASSWORD, smtp_to=('ops@test',), smtp_starttls=True)
    try:
        hub.publish(AlertRaised(new_alert(sqlite_engine, message='over TLS')))
        await notifier.idle()
    finally:
        await notifier.stop()
    assert by_channel(sqlite_engine)['email']['status'] == 'delivered'
    assert len(box.messages) == 1 and 'over TLS' in box.messages[0]
    assert box.auth_over_tls == [True], 'the password is only sent once the connection is encrypted'


async def test_an_untrusted_certificate_is_a_recorded_failure(sqlite_engine: Engine, hub: EventHub,
                                                              smtp_server: tuple[int, Mailbox],
                                                              tls_cert: tuple[Path, ssl.SSLContext]) -> None:
    port, box = smtp_server
    _, box.tls = tls_cert
    notifier = started(sqlite_engine, hub, smtp_host='127.0.0.1', smtp_port=port, smtp_user='mailer',
                       smtp_password=SMTP_PASSWORD, smtp_to=('ops@test',), smtp_starttls=True)
    try:
        hub.publish(AlertRaised(new_alert(sqlite_engine)))
        await notifier.idle()
    finally:
        await notifier.stop()
    mail = by_channel(sqlite_engine)['email']
    assert (mail['status'], mail['attempts']) == ('pending', 1)
    error = mail['last_error']
    assert error is not None
    assert 'CERTIFICATE_VERIFY_FAILED' in error or 'certificate' in error.lower()
    assert box.auth == [] and box.messages == []
