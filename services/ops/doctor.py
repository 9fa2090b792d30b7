"""`spendgauge doctor`: every check at once, each bounded, so the whole takes about `timeout_s` even when an
endpoint hangs. Reads the settings the server reads; changes nothing anywhere (no migration, no message sent)."""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from typing_extensions import TypedDict

from services.core.access import Actor, Role, require
from services.core.scrub import secrets_of
from services.core.settings import Settings
from services.ops import local, remote
from services.ops.findings import Finding, FindingOut, exit_code, fail, skip

DEFAULT_TIMEOUT_S = 5.0
MAX_TIMEOUT_S = 60.0
T = TypeVar('T')


class DoctorOut(TypedDict):
    findings: list[FindingOut]
    ok: bool  # no check failed (warnings allowed)
    exit_code: int


async def diagnose(settings: Settings, timeout_s: float = DEFAULT_TIMEOUT_S) -> list[Finding]:
    """The findings, in a fixed order: database (schema, WAL, price data), disk, sources, clock, webhooks, SMTP."""
    secrets = secrets_of(settings)
    probes, halves = remote.source_probes(settings.sources)
    notify = settings.notify
    webhooks = [(f'webhook {name}', url) for name, url in (('alerts', notify.webhook_url),
                                                           ('eco (n8n)', notify.n8n_webhook_url)) if url]
    database = _bounded('database', timeout_s, asyncio.to_thread(local.database_checks, settings.database_url,
                                                                  timeout_s), _alone)
    disk = _bounded('disk', timeout_s,
                    asyncio.to_thread(local.disk_checks, settings.database_url, settings.audit_log), _alone)
    sources = [_bounded(f'source {p.source}', timeout_s, remote.probe_source(p, timeout_s, secrets),
                        lambda f: remote.ProbeAnswer(f, None)) for p in probes]
    hooks = [_bounded(check, timeout_s, remote.probe_webhook(check, url, timeout_s), _same) for check, url in webhooks]
    smtp = (_bounded('smtp', timeout_s, asyncio.to_thread(remote.probe_smtp, notify, timeout_s), _same)
            if notify.smtp_host else None)
    found_db, found_disk, answers, found_hooks, found_smtp = await asyncio.gather(
        database, disk, asyncio.gather(*sources), asyncio.gather(*hooks), smtp or _none())
    findings = [*found_db, *found_disk, *halves, *(a.finding for a in answers)]
    if not probes:
        findings.append(skip('sources', 'none configured: only the calls recorded count (a source pulls the bills: '
                                        'see .env.example)'))
    findings.append(remote.clock_finding([(p.source, a.skew_s) for p, a in zip(probes, answers, strict=True)]))
    findings.extend(found_hooks)
    if not webhooks:
        findings.append(skip('webhooks', 'none configured'))
    findings.append(found_smtp or skip('smtp', 'not configured'))
    return findings


async def diagnose_for(actor: Actor, settings: Settings, timeout_s: float = DEFAULT_TIMEOUT_S) -> DoctorOut:
    """The report an admin asks for through the API (it names hosts, paths and which keys are set)."""
    require(actor, Role.ADMIN, 'running the doctor')
    return report(await diagnose(settings, timeout_s))


def report(findings: list[Finding], strict: bool = False) -> DoctorOut:
    code = exit_code(findings, strict)
    return {'findings': [f.as_dict() for f in findings], 'ok': exit_code(findings) == 0, 'exit_code': code}


async def _bounded(check: str, timeout_s: float, work: Awaitable[T], as_result: Callable[[Finding], T]) -> T:
    """`work`'s result, or a failure when it takes longer than the timeout (a little slack: each check bounds its
    own connection first, and says more when it can)."""
    try:
        return await asyncio.wait_for(work, timeout_s + 1)
    except TimeoutError:
        return as_result(fail(check, f'no answer within {timeout_s:g} s', 'check that it is reachable from here'))


def _same(finding: Finding) -> Finding:
    return finding


def _alone(finding: Finding) -> list[Finding]:
    return [finding]


async def _none() -> None:
    return None
