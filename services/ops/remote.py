"""The doctor's checks of what SpendGauge talks to: each configured spend source with one cheap authenticated GET
(no retries; the upstream's reason when refused), the webhooks (a TCP and TLS connection, nothing sent), the SMTP
server (EHLO, STARTTLS and login as the notifier does them, no message sent), and the clock against a source's
`Date` header. Every check is bounded by `timeout_s`."""
from __future__ import annotations

import asyncio
import smtplib
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from services.core.scrub import scrub
from services.core.settings import NotifySettings, SourceSettings
from services.ops.findings import Finding, fail, ok, skip, warn
from services.sources import anthropic, litellm, openai, openrouter
from services.sources.http import json_reason

CLOCK_TOLERANCE_S = 5.0


@dataclass(frozen=True)
class SourceProbe:
    source: str
    base_url: str
    path: str
    headers: dict[str, str] = field(repr=False)
    params: dict[str, Any]
    key_variable: str  # what to fix when the key is refused


@dataclass(frozen=True)
class ProbeAnswer:
    finding: Finding
    skew_s: float | None  # the server's clock minus ours; None without a Date header


def source_probes(sources: SourceSettings, now: datetime | None = None) -> tuple[list[SourceProbe], list[Finding]]:
    """One request per configured source (the puller's own endpoint, one day, one row), and a finding for each
    source configured by halves (a URL without its key)."""
    now = now or datetime.now(UTC)
    names = SourceSettings.env_names()
    day = now.date()
    probes: list[SourceProbe] = []
    if sources.litellm_url and sources.litellm_key:
        probes.append(SourceProbe('litellm', sources.litellm_url, litellm.DAILY, _bearer(sources.litellm_key),
                                  {'start_date': day.isoformat(), 'end_date': day.isoformat(), 'page_size': 1},
                                  names['litellm_key']))
    if sources.openai_admin_key:
        start = int((now - timedelta(days=1)).timestamp())
        probes.append(SourceProbe('openai_direct', sources.openai_url, openai.COSTS,
                                  _bearer(sources.openai_admin_key), {'start_time': start, 'limit': 1},
                                  names['openai_admin_key']))
    if sources.anthropic_admin_key:
        probes.append(SourceProbe('anthropic_direct', sources.anthropic_url, anthropic.COSTS,
                                  anthropic.auth_headers(sources.anthropic_admin_key),
                                  {'starting_at': f'{(day - timedelta(days=1)).isoformat()}T00:00:00Z', 'limit': 1},
                                  names['anthropic_admin_key']))
    if sources.openrouter_key:
        probes.append(SourceProbe('openrouter_direct', sources.openrouter_url, openrouter.KEY,
                                  _bearer(sources.openrouter_key), {}, names['openrouter_key']))
    halves = []
    if bool(sources.litellm_url) != bool(sources.litellm_key):
        given, missing = ('litellm_url', 'litellm_key') if sources.litellm_url else ('litellm_key', 'litellm_url')
        halves.append(warn('source litellm', f'{names[given]} is set without {names[missing]}: the source is off',
                           f'set {names[missing]} too, or unset {names[given]}'))
    return probes, halves


def _bearer(key: str) -> dict[str, str]:
    return {'Authorization': f'Bearer {key}'}


async def probe_source(probe: SourceProbe, timeout_s: float, secrets: Iterable[str]) -> ProbeAnswer:
    check = f'source {probe.source}'
    url = probe.base_url.rstrip('/') + probe.path
    try:
        async with httpx.AsyncClient(timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0))) as client:
            sent = time.time()
            response = await client.get(url, params=probe.params, headers=probe.headers)
            received = time.time()
    except httpx.TimeoutException:
        return ProbeAnswer(fail(check, f'{url}: no answer within {timeout_s:g} s',
                                'check the URL and that this machine can reach it (proxy, firewall)'), None)
    except httpx.HTTPError as exc:
        return ProbeAnswer(fail(check, scrub(f'{url}: cannot connect ({type(exc).__name__}: {exc})', secrets),
                                'check the URL and that this machine can reach it (proxy, firewall)'), None)
    skew = _skew(response, (sent + received) / 2)
    status = response.status_code
    reason = scrub(json_reason(response) or response.reason_phrase or '', secrets)[:300]
    said = f'{url} answered {status}' + (f': {reason}' if reason else '')
    if status < 300:
        return ProbeAnswer(ok(check, f'{url}: the key is accepted ({status})'), skew)
    if status in (401, 403):
        return ProbeAnswer(fail(check, said, f'{probe.key_variable}: set a valid key with access to {probe.path}'
                                + (' (an admin key, not an API key)' if probe.source.endswith('_direct')
                                   and probe.source != 'openrouter_direct' else '')), skew)
    if status == 429:
        return ProbeAnswer(warn(check, said, 'rate limited: the key works; pulls wait and retry'), skew)
    if status in (400, 404, 405) and probe.source == 'litellm':  # older or unlicensed: the puller falls back
        return ProbeAnswer(warn(check, said, 'the pull falls back to /spend/logs/v2; upgrade LiteLLM for '
                                             f'{probe.path}'), skew)
    return ProbeAnswer(fail(check, said, 'check the base URL, or the provider status page for an outage'), skew)


def _skew(response: httpx.Response, our_time: float) -> float | None:
    """Their clock minus ours, in seconds; a Date header is whole seconds, so half a second is added."""
    header = response.headers.get('date')
    if not header:
        return None
    try:
        theirs = parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    if theirs.tzinfo is None:
        theirs = theirs.replace(tzinfo=UTC)
    return theirs.timestamp() + 0.5 - our_time


def clock_finding(answers: list[tuple[str, float | None]]) -> Finding:
    """From the first source that sent a Date header."""
    dated = [(source, skew) for source, skew in answers if skew is not None]
    if not dated:
        return skip('clock', 'no source answered with a Date header to compare with')
    source, skew = dated[0]
    ahead = 'behind' if skew > 0 else 'ahead of'
    detail = f'{abs(skew):.1f} s {ahead} {source} (its Date header)'
    if abs(skew) > CLOCK_TOLERANCE_S:
        return warn('clock', detail + f', more than {CLOCK_TOLERANCE_S:g} s: days and hours of spend land wrong',
                    'synchronise the clock (NTP: timedatectl set-ntp true, or chrony)')
    return ok('clock', detail)


async def probe_webhook(check: str, url: str, timeout_s: float) -> Finding:
    """Connect (and shake hands for https) to the webhook's host, sending nothing: a test POST would notify."""
    parts = urlsplit(url)
    host = parts.hostname or ''
    secure = parts.scheme == 'https'
    port = parts.port or (443 if secure else 80)
    where = f'{parts.scheme}://{host}:{port}'  # the path may hold a token
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=ssl.create_default_context() if secure else None), timeout_s)
    except TimeoutError:
        return fail(check, f'{where}: no connection within {timeout_s:g} s', 'check the URL and the firewall')
    except (OSError, ssl.SSLError) as exc:
        return fail(check, f'{where}: cannot connect ({type(exc).__name__}: {exc})', 'check the URL and the firewall')
    writer.close()
    try:
        await writer.wait_closed()
    except (OSError, ssl.SSLError):
        pass
    return ok(check, f'{where}: connected{" (TLS certificate valid)" if secure else ""}; nothing sent')


def probe_smtp(notify: NotifySettings, timeout_s: float) -> Finding:
    """Blocking (a worker thread): EHLO, STARTTLS and login as the notifier does them, then QUIT; no mail."""
    names = NotifySettings.env_names()
    where = f'{notify.smtp_host}:{notify.smtp_port}'
    try:
        with smtplib.SMTP(notify.smtp_host, notify.smtp_port, timeout=timeout_s) as smtp:
            smtp.ehlo()
            steps = ['EHLO']
            if notify.smtp_starttls:
                if not smtp.has_extn('starttls'):
                    return fail('smtp', f'{where}: the server offers no STARTTLS',
                                f'set {names["smtp_starttls"]}=false only for a server on a trusted network, or use '
                                'the submission port (587)')
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
                steps.append('STARTTLS')
            if notify.smtp_user:
                smtp.login(notify.smtp_user, notify.smtp_password)
                steps.append(f'login as {notify.smtp_user}')
    except smtplib.SMTPAuthenticationError as exc:
        return fail('smtp', f'{where}: login refused ({exc.smtp_code} {_text(exc.smtp_error)})',
                    f'set {names["smtp_user"]} and {names["smtp_password"]} to an account of that server')
    except smtplib.SMTPResponseException as exc:
        return fail('smtp', f'{where}: {exc.smtp_code} {_text(exc.smtp_error)}', 'check the SMTP settings')
    except (TimeoutError, OSError, smtplib.SMTPException, ssl.SSLError) as exc:
        return fail('smtp', f'{where}: cannot talk SMTP ({type(exc).__name__}: {exc})',
                    f'check {names["smtp_host"]}, {names["smtp_port"]} and the firewall')
    recipients = len(notify.smtp_to)
    if not recipients:
        return warn('smtp', f'{where}: {", ".join(steps)} ok, but no recipients: e-mail is off',
                    f'set {names["smtp_to"]}')
    return ok('smtp', f'{where}: {", ".join(steps)} ok; {recipients} recipient{"s" * (recipients != 1)}, '
                      'nothing sent')


def _text(error: bytes | str) -> str:
    return (error.decode(errors='replace') if isinstance(error, bytes) else error)[:200]
