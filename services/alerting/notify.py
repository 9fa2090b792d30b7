"""Alert and eco-mode notifications: log, webhook (generic JSON or Slack), e-mail, and the n8n eco webhook.

Listens on the hub for 'alert_raised' (new alerts only), 'eco' and 'digest' (the daily digest's deliveries, queued
by services/commands/digest.py with their rendered text, HTML and blocks: a retry sends what the first attempt did).
Every send is a `deliveries` row written before
the first attempt; attempts run as tasks on the app's event loop (SMTP in a worker thread), a failure is recorded
and retried with exponential backoff until MAX_ATTEMPTS, then kept with status 'failed'. Nothing is dropped
silently, and no URL secret, user name or password is stored in a row or written to the log.
"""
from __future__ import annotations

import asyncio
import logging
import re
import smtplib
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import Connection, Engine, insert, select, update
from typing_extensions import TypedDict

from services.budget import eco
from services.budget.eco import EcoState
from services.core.context import BudgetContext
from services.core.money import micros_to_usd
from services.core.scrub import scrub, secrets_of
from services.core.settings import NotifySettings
from services.core.tables import DELIVERIES, POLICIES
from services.live.hub import EventHub
from services.live.topics import AlertRaised, DeliveryChanged, DigestQueued, EcoChanged, LiveEvent
from services.spend import budget

ALERT_CHANNELS = ('log', 'webhook', 'email')
log = logging.getLogger(__name__)

MAX_ATTEMPTS = 6
BACKOFF_BASE_S = 30.0
BACKOFF_MAX_S = 3600.0
RETRY_INTERVAL_S = 15.0
LEASE = timedelta(minutes=2)  # a claimed row is not picked up again while its attempt runs
TIMEOUT = httpx.Timeout(10.0, connect=5.0)
MAX_ERROR = 500  # characters of an error kept in a delivery row, after scrubbing
SMTP_TIMEOUT_S = 15.0
SEVERITY_EMOJI = {'critical': ':rotating_light:', 'warning': ':warning:', 'info': ':information_source:'}


class DeliveryOut(TypedDict):
    """One notification sent (or being sent) through one channel."""

    id: int
    kind: str  # alert, eco, digest
    ref_id: int | None  # the alert's id; the digest's day as YYYYMMDD; None for eco-mode changes
    channel: str  # log, webhook, slack, email, n8n
    target: str  # where to, without secrets
    payload: dict[str, Any]  # what is sent: the alert, the eco-mode change, or the digest as rendered
    status: str  # pending, delivered, failed (gave up)
    attempts: int
    last_error: str | None
    next_attempt_at: str | None  # None once delivered or given up
    created_at: str | None
    updated_at: str | None


class DeliveryList(TypedDict):
    items: list[DeliveryOut]  # newest first
    count: int


@dataclass(frozen=True)
class Backoff:
    base_s: float = BACKOFF_BASE_S
    max_s: float = BACKOFF_MAX_S
    max_attempts: int = MAX_ATTEMPTS

    def delay(self, attempts: int) -> timedelta:
        return timedelta(seconds=min(self.max_s, self.base_s * 2 ** max(0, attempts - 1)))


def safe_target(url: str) -> str:
    """A webhook URL fit to store, show and log: scheme, host and port only. The path and query are replaced by
    `…`, since webhooks carry their secret there (Slack's /services/T../B../<secret>, n8n's ids, `?token=`), and
    user info is dropped."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or '', parts.port
    except ValueError:  # not a URL we can read: show nothing of it
        return '…'
    if not parts.scheme or not host:
        return url if '/' not in url and '@' in url else '…'  # e-mail targets stay; anything else is hidden
    host = f'[{host}]' if ':' in host else host
    origin = f'{parts.scheme}://{host}{f":{port}" if port else ""}'
    return f'{origin}/…' if parts.path.strip('/') or parts.query or parts.fragment else origin


class _RedactUrls(logging.Filter):
    """httpx logs each request's full URL at INFO; webhook URLs carry secrets (Slack's path, tokens in the query)."""

    URL = re.compile(r'https?://[^\s"\']+')

    def __init__(self, urls: tuple[str, ...]) -> None:
        super().__init__()
        self.hosts = {urlsplit(u).hostname for u in urls if u}

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self.URL.sub(lambda m: safe_target(m.group()) if urlsplit(m.group()).hostname in self.hosts
                                else m.group(), message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def is_slack(url: str) -> bool:
    return (urlsplit(url).hostname or '').lower() == 'hooks.slack.com'


def slack_text(alert: dict[str, Any]) -> str:
    emoji = SEVERITY_EMOJI.get(alert.get('severity', ''), ':bell:')
    return f'{emoji} SpendGauge {alert.get("severity", "")} {alert.get("type", "alert")}: {alert.get("message", "")}'


def eco_payload(state: EcoState, spent_micros: int | None, limit_micros: int | None) -> dict[str, Any]:
    return {'eco_mode': bool(state['eco_mode']), 'reason': state.get('reason'),
            'spent': micros_to_usd(spent_micros) if spent_micros is not None else None, 'spent_micros': spent_micros,
            'limit': micros_to_usd(limit_micros) if limit_micros is not None else None, 'limit_micros': limit_micros,
            'at': state.get('changed_at')}


def configured_channels(settings: NotifySettings) -> list[tuple[str, str]]:
    """(channel, target) of every configured channel: the log always, the alert webhook (`slack` for
    hooks.slack.com) and e-mail when configured. Alerts go to those their policy allows, the digest to all."""
    channels = [('log', 'log')]
    if settings.webhook_url:
        channels.append(('slack' if is_slack(settings.webhook_url) else 'webhook', safe_target(settings.webhook_url)))
    if settings.email_enabled:
        channels.append(('email', ', '.join(settings.smtp_to)))
    return channels


def queue_digest(conn: Connection, settings: NotifySettings, day_key: int, payloads: dict[str, dict[str, Any]],
                 now: datetime | None = None) -> list[int]:
    """Write a pending `deliveries` row per digest channel, each with the payload it sends (`payloads` by channel:
    log, webhook, slack, email); the caller publishes DigestQueued after its commit."""
    now = now or datetime.now(UTC)
    return [Notifier._insert(conn, 'digest', day_key, channel, target, payloads[channel], now)
            for channel, target in configured_channels(settings)]


def digest_queued(conn: Connection, day_key: int) -> bool:
    """Whether the digest of this day (YYYYMMDD) has deliveries already (sent, being sent, or given up)."""
    return conn.execute(select(DELIVERIES.c.id).where(DELIVERIES.c.kind == 'digest', DELIVERIES.c.ref_id == day_key)
                        .limit(1)).first() is not None


def last_eco_delivery(conn: Connection) -> DeliveryOut | None:
    row = conn.execute(select(DELIVERIES).where(DELIVERIES.c.kind == 'eco')
                       .order_by(DELIVERIES.c.id.desc()).limit(1)).first()
    return public(row) if row is not None else None


def eco_delivery_text(delivery: DeliveryOut | None) -> str:
    """How the last eco-mode change reached the webhook: 'webhook delivered 10:32', '... failed: ..., retrying'."""
    if not delivery:
        return ''
    at = (delivery['updated_at'] or '')[11:16]
    if delivery['status'] == 'delivered':
        return f'webhook delivered {at}'
    if delivery['status'] == 'failed':
        return f'webhook failed: {delivery["last_error"]} (gave up after {delivery["attempts"]} attempts)'
    if delivery['last_error']:
        return f'webhook failed: {delivery["last_error"]}, retrying'
    return 'webhook sending…'


def list_deliveries(conn: Connection, kind: str | None = None, limit: int = 100, status: str | None = None,
                    ref_ids: list[int] | None = None) -> list[DeliveryOut]:
    """Deliveries, newest first: of one kind (alert, eco), in one status (pending, delivered, failed), or of
    the given alerts."""
    query = select(DELIVERIES).order_by(DELIVERIES.c.id.desc()).limit(limit)
    if kind:
        query = query.where(DELIVERIES.c.kind == kind)
    if status:
        query = query.where(DELIVERIES.c.status == status)
    if ref_ids is not None:
        query = query.where(DELIVERIES.c.ref_id.in_(ref_ids))
    return [public(r) for r in conn.execute(query)]


def get_deliveries(conn: Connection, ids: Iterable[int]) -> list[DeliveryOut]:
    """These deliveries, oldest first (one query)."""
    wanted = sorted(set(ids))
    if not wanted:
        return []
    return [public(r) for r in conn.execute(select(DELIVERIES).where(DELIVERIES.c.id.in_(wanted))
                                            .order_by(DELIVERIES.c.id))]


def public(row: Any) -> DeliveryOut:
    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    target = safe_target(row.target) if '://' in (row.target or '') else row.target  # rows stored before redaction
    return {'id': row.id, 'kind': row.kind, 'ref_id': row.ref_id, 'channel': row.channel, 'target': target,
            'payload': row.payload or {}, 'status': row.status, 'attempts': row.attempts,
            'last_error': row.last_error, 'next_attempt_at': iso(row.next_attempt_at),
            'created_at': iso(row.created_at), 'updated_at': iso(row.updated_at)}


class Notifier:
    def __init__(self, engine: Engine, settings: NotifySettings, hub: EventHub, budget: BudgetContext,
                 backoff: Backoff | None = None,
                 retry_interval_s: float = RETRY_INTERVAL_S, secrets: tuple[str, ...] = ()) -> None:
        """`secrets`: every other configured secret (the app passes all of its settings'), scrubbed from errors."""
        self.engine = engine
        self.settings = settings
        self.hub = hub
        self.budget = budget
        self.backoff = backoff or Backoff()
        self.retry_interval_s = retry_interval_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task] = set()
        self._retry: asyncio.Task | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._log_filter: logging.Filter | None = None
        self._secrets = (*secrets, *secrets_of(settings), settings.smtp_user)

    # --- lifecycle (event loop) -----------------------------------------------------------------------------

    def start(self) -> None:
        """Call on the running event loop (app start-up)."""
        self._loop = asyncio.get_running_loop()
        self._client = httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False)
        self._log_filter = _RedactUrls((self.settings.webhook_url, self.settings.n8n_webhook_url))
        logging.getLogger('httpx').addFilter(self._log_filter)
        self._unsubscribe = self.hub.subscribe(self._on_event)
        self._retry = self._loop.create_task(self._retry_loop())

    async def stop(self) -> None:
        if self._unsubscribe:
            self._unsubscribe()
        tasks = [t for t in (self._retry, *self._tasks) if t and not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
        if self._log_filter is not None:
            logging.getLogger('httpx').removeFilter(self._log_filter)
        self._loop = None

    async def idle(self, timeout: float = 10.0) -> None:
        """Wait until the attempts started so far are done (tests)."""
        for _ in range(3):
            await asyncio.sleep(0)  # let events handed over with call_soon_threadsafe start their tasks
        deadline = asyncio.get_running_loop().time() + timeout
        while self._tasks and asyncio.get_running_loop().time() < deadline:
            await asyncio.wait(set(self._tasks), timeout=max(0.0, deadline - asyncio.get_running_loop().time()))

    def _on_event(self, event: LiveEvent) -> None:  # any thread
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        if isinstance(event, AlertRaised):
            loop.call_soon_threadsafe(self._spawn, self.notify_alert(dict(event.alert)))
        elif isinstance(event, EcoChanged) and self.settings.n8n_webhook_url:
            loop.call_soon_threadsafe(self._spawn, self.notify_eco(event))
        elif isinstance(event, DigestQueued):
            loop.call_soon_threadsafe(self._spawn, self.attempt_all(event.delivery_ids))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _retry_loop(self) -> None:
        while True:
            await asyncio.sleep(self.retry_interval_s)
            try:
                await self.run_due()
            except Exception:
                log.exception('delivery retry pass failed')

    # --- queueing -------------------------------------------------------------------------------------------

    async def notify_alert(self, alert: dict[str, Any]) -> list[int]:
        ids = await asyncio.to_thread(self._queue_alert, alert)
        await asyncio.gather(*(self.attempt(i) for i in ids))
        return ids

    async def notify_eco(self, change: EcoChanged) -> list[int]:
        ids = await asyncio.to_thread(self._queue_eco, change)
        await asyncio.gather(*(self.attempt(i) for i in ids))
        return ids

    async def attempt_all(self, ids: tuple[int, ...] | list[int]) -> list[DeliveryOut | None]:
        """The first attempt of deliveries queued elsewhere (the digest command)."""
        return list(await asyncio.gather(*(self.attempt(i) for i in ids)))

    async def run_due(self, now: datetime | None = None) -> int:
        """Attempt every pending delivery whose time has come; returns how many were attempted."""
        now = now or datetime.now(UTC)

        def due() -> list[int]:
            with self.engine.connect() as conn:
                return list(conn.execute(select(DELIVERIES.c.id).where(
                    DELIVERIES.c.status == 'pending', DELIVERIES.c.next_attempt_at <= now)
                    .order_by(DELIVERIES.c.id).limit(100)).scalars())
        ids = await asyncio.to_thread(due)
        await asyncio.gather(*(self.attempt(i, now) for i in ids))
        return len(ids)

    def _alert_channels(self, conn: Connection, alert: dict[str, Any]) -> list[tuple[str, str]]:
        """Every configured channel; for a policy's alert, those among its `notify` list (when it has one)."""
        raw_data = alert.get('data')
        data: dict[str, Any] = raw_data if isinstance(raw_data, dict) else {}
        allowed = set(ALERT_CHANNELS)
        if data.get('policy_id') is not None:
            wanted = conn.execute(select(POLICIES.c.notify).where(POLICIES.c.id == data['policy_id'])).scalar()
            if wanted:
                allowed &= set(wanted)
        return [(channel, target) for channel, target in configured_channels(self.settings)
                if ('webhook' if channel == 'slack' else channel) in allowed]

    def _queue_alert(self, alert: dict[str, Any]) -> list[int]:
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            return [self._insert(conn, 'alert', alert.get('id'), channel, target, alert, now)
                    for channel, target in self._alert_channels(conn, alert)]

    def _queue_eco(self, change: EcoChanged) -> list[int]:
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            state = eco.get_eco(conn)
            if state['changed_at'] is None:
                return []
            last = last_eco_delivery(conn)
            if last and last['payload'].get('at') == state['changed_at'] \
                    and last['payload'].get('eco_mode') == state['eco_mode']:
                return []  # this change was already sent (by another instance, or before a restart)
            spent, limit = change.spent_micros, change.limit_micros
            if spent is None:
                summary = budget.period_summary(conn, self.budget, 'day', now)
                spent, limit = summary['spent_micros'], summary['limit_micros']
            payload = eco_payload(state, spent, limit)
            return [self._insert(conn, 'eco', None, 'n8n', safe_target(self.settings.n8n_webhook_url), payload, now)]

    @staticmethod
    def _insert(conn: Connection, kind: str, ref_id: int | None, channel: str, target: str, payload: dict[str, Any],
                now: datetime) -> int:
        return conn.execute(insert(DELIVERIES).values(
            kind=kind, ref_id=ref_id, channel=channel, target=target[:500], payload=payload, status='pending',
            attempts=0, next_attempt_at=now, created_at=now, updated_at=now).returning(DELIVERIES.c.id)).scalar_one()

    # --- attempts -------------------------------------------------------------------------------------------

    async def attempt(self, delivery_id: int, now: datetime | None = None) -> DeliveryOut | None:
        """One attempt, if this process can claim the row (pending and due); records the outcome."""
        row = await asyncio.to_thread(self._claim, delivery_id, now or datetime.now(UTC))
        if row is None:
            return None
        try:
            await self._send(row)
        except Exception as exc:
            error = self._scrub(_describe(exc))
            result = await asyncio.to_thread(self._finish, row, error)
            log.warning('delivery %s of %s via %s failed (attempt %s): %s', row['id'], row['kind'], row['channel'],
                        result['attempts'], error)
            return result
        return await asyncio.to_thread(self._finish, row, None)

    def _claim(self, delivery_id: int, now: datetime) -> DeliveryOut | None:
        with self.engine.begin() as conn:
            claimed = conn.execute(update(DELIVERIES).where(
                DELIVERIES.c.id == delivery_id, DELIVERIES.c.status == 'pending',
                DELIVERIES.c.next_attempt_at <= now).values(next_attempt_at=now + LEASE)).rowcount
            if not claimed:
                return None
            return public(conn.execute(select(DELIVERIES).where(DELIVERIES.c.id == delivery_id)).one())

    def _finish(self, row: DeliveryOut, error: str | None) -> DeliveryOut:
        now = datetime.now(UTC)
        attempts = row['attempts'] + 1
        if error is None:
            values: dict[str, Any] = {'status': 'delivered', 'next_attempt_at': None}
        elif attempts >= self.backoff.max_attempts:
            values = {'status': 'failed', 'next_attempt_at': None}
        else:
            values = {'status': 'pending', 'next_attempt_at': now + self.backoff.delay(attempts)}
        with self.engine.begin() as conn:
            conn.execute(update(DELIVERIES).where(DELIVERIES.c.id == row['id']).values(
                attempts=attempts, last_error=error or row['last_error'], updated_at=now,
                **values))
            result = public(conn.execute(select(DELIVERIES).where(DELIVERIES.c.id == row['id'])).one())
        if result['status'] == 'failed':
            log.error('gave up delivering %s %s via %s after %s attempts: %s', row['kind'], row['id'],
                      row['channel'], attempts, error)
        self.hub.publish(DeliveryChanged(row['id'], row['kind'], result['status']))
        return result

    async def _send(self, row: DeliveryOut) -> None:
        channel, payload = row['channel'], row['payload']
        if row['kind'] == 'digest':
            await self._send_digest(channel, payload)
        elif channel == 'log':
            log.warning('alert [%s] %s: %s', payload.get('severity'), payload.get('type'), payload.get('message'))
        elif channel == 'webhook':
            await self._post(self.settings.webhook_url, {'source': 'spendgauge', 'kind': 'alert', 'alert': payload})
        elif channel == 'slack':
            await self._post(self.settings.webhook_url, {'text': slack_text(payload)})
        elif channel == 'n8n':
            await self._post(self.settings.n8n_webhook_url, payload)
        elif channel == 'email':
            await asyncio.to_thread(self._send_mail, payload)
        else:
            raise DeliveryError(f'unknown channel {channel!r}')

    async def _post(self, url: str, body: dict[str, Any]) -> None:
        if not url:
            raise DeliveryError('no URL configured any more')
        assert self._client is not None, 'Notifier.start() was not called'
        response = await self._client.post(url, json=body)
        if response.status_code >= 300:
            raise DeliveryError(f'HTTP {response.status_code}')

    async def _send_digest(self, channel: str, payload: dict[str, Any]) -> None:
        """The digest as it was rendered when queued (services/insights/digest_render.py digest_payloads)."""
        if channel == 'log':
            log.info('%s\n%s', payload.get('subject'), payload.get('text'))
        elif channel in ('webhook', 'slack'):
            await self._post(self.settings.webhook_url, payload['body'])
        elif channel == 'email':
            message = EmailMessage()
            message['Subject'] = payload['subject']
            message.set_content(payload['text'])
            message.add_alternative(payload['html'], subtype='html')
            await asyncio.to_thread(self._mail, message)
        else:
            raise DeliveryError(f'unknown channel {channel!r}')

    def _send_mail(self, alert: dict[str, Any]) -> None:
        message = EmailMessage()
        message['Subject'] = f'[SpendGauge] {alert.get("severity", "")} {alert.get("type", "alert")}'
        message.set_content(f'{alert.get("message", "")}\n\nType: {alert.get("type")}\nSeverity: '
                            f'{alert.get("severity")}\nFirst seen: {alert.get("created_at")}\n'
                            f'Occurrences: {alert.get("count", 1)}\n')
        self._mail(message)

    def _mail(self, message: EmailMessage) -> None:
        """Send `message` from SMTP_FROM to SMTP_TO (a worker thread)."""
        s = self.settings
        if not s.email_enabled:
            raise DeliveryError('SMTP is not configured any more')
        message['From'] = s.smtp_from
        message['To'] = ', '.join(s.smtp_to)
        with smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=SMTP_TIMEOUT_S) as smtp:
            if s.smtp_starttls:
                smtp.starttls(context=ssl.create_default_context())
            if s.smtp_user:
                smtp.login(s.smtp_user, s.smtp_password)
            smtp.send_message(message)

    def _scrub(self, text: str) -> str:
        """Secrets out, then cut to what a row keeps."""
        return scrub(text, self._secrets, MAX_ERROR)


class DeliveryError(Exception):
    pass


def _describe(exc: BaseException) -> str:
    if isinstance(exc, DeliveryError):
        return str(exc)
    if isinstance(exc, httpx.TimeoutException):
        return f'timeout ({type(exc).__name__})'
    if isinstance(exc, httpx.TransportError):
        return f'cannot connect ({type(exc).__name__})'
    if isinstance(exc, smtplib.SMTPResponseException):
        return f'SMTP {exc.smtp_code}'
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return 'SMTP recipients refused'
    return f'{type(exc).__name__}: {exc}'  # uncut: scrubbed, then cut by the caller
