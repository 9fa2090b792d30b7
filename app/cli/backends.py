"""Where a CLI command is carried out: a running server through the REST API (`--url`), or the database itself
through the same commands and read models the server uses (`--db`, app/cli/direct.py, loaded only then). Both answer
in the API's JSON shapes."""
from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from decimal import Decimal
from typing import Any, Protocol
from urllib.parse import quote

import httpx

from services.core.access import Actor, Role
from services.core.errors import DomainError, Invalid
from services.core.periods import PeriodName

BREAKDOWNS = {'agent': 'agent_id', 'provider': 'provider', 'model': 'model', 'channel': 'channel'}
CONNECT_TIMEOUT_S = 5
CLI_ACTOR = Actor('cli', Role.ADMIN)  # --db: whoever can open the database may change it
BAD_PARAMETERS = (400, 422)  # the statuses of a refused parameter: the command's arguments were bad (exit 2)


class CliError(Exception):
    """One line for stderr; `code` 1 for a refused or failed request, 2 for bad usage."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class Unreachable(CliError):
    """No server answers at the URL (refused, timed out, no such host)."""


class Backend(Protocol):
    def record(self, event: dict[str, Any]) -> dict[str, Any]: ...
    def summary(self, period: str) -> dict[str, Any]: ...
    def breakdown(self, by: str, period: str) -> dict[str, Any]: ...
    def usage(self, params: dict[str, str]) -> dict[str, Any]: ...
    def export_usage(self, params: dict[str, str], fmt: str, limit: int) -> Iterator[str]: ...
    def set_limit(self, period: PeriodName, usd: Decimal | None, action: str | None) -> dict[str, Any]: ...
    def sync(self, source: str) -> dict[str, Any]: ...
    def report(self, kind: str, params: dict[str, str], fmt: str) -> str: ...
    def policies(self) -> list[dict[str, Any]]: ...
    def eco(self) -> dict[str, Any]: ...
    def set_eco(self, on: bool, reason: str) -> dict[str, Any]: ...
    def set_paused(self, agent_id: str, paused: bool) -> dict[str, Any]: ...
    def alerts(self, status: str) -> list[dict[str, Any]]: ...
    def acknowledge(self, alert_id: int, by: str) -> dict[str, Any]: ...
    def resolve(self, alert_id: int) -> dict[str, Any]: ...
    def thresholds(self) -> dict[str, Any]: ...
    def set_thresholds(self, session_usd: Decimal | None, day_usd: Decimal | None, pause: bool) -> dict[str, Any]: ...
    def prune(self, older_than_days: int, dry_run: bool) -> dict[str, Any]: ...
    def update_prices(self, url: str | None) -> dict[str, Any]: ...
    def recalculate_prices(self, start: str, end: str | None, dry_run: bool) -> dict[str, Any]: ...
    def price_audits(self, limit: int) -> list[dict[str, Any]]: ...
    def audit(self, params: dict[str, str]) -> dict[str, Any]: ...
    def model_price(self, model: str, provider: str | None) -> dict[str, Any]: ...
    def models_in_use_prices(self) -> dict[str, Any]: ...
    def optimize(self, params: dict[str, str]) -> dict[str, Any]: ...
    def digest(self, day: str | None, fmt: str) -> str: ...
    def send_digest(self, day: str | None) -> list[dict[str, Any]]: ...
    def close(self) -> None: ...


class HttpBackend:
    """Talks to a running server through the REST API."""

    def __init__(self, url: str, token: str | None) -> None:
        headers = {'Authorization': f'Bearer {token}'} if token else {}
        self.url = url.rstrip('/')
        self.client = httpx.Client(base_url=self.url + '/api/v1', headers=headers,
                                   timeout=httpx.Timeout(30, connect=CONNECT_TIMEOUT_S))

    def close(self) -> None:
        self.client.close()

    def call(self, method: str, path: str, bad_usage: tuple[int, ...] = (), **kwargs: Any) -> Any:
        """The JSON answer; a refused request is a CliError with the server's reason, exit code 2 (bad usage) when
        its status is one of `bad_usage` (the parameters the command was given were refused)."""
        response = self._send(method, path, **kwargs)
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code >= 400:
            raise self._refused(response.status_code, body, bad_usage)
        if not isinstance(body, dict | list):
            raise CliError(f'{self.url} did not answer like a SpendGauge server (is --url right?)')
        return body

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self.client.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None

    def _unreachable(self, exc: httpx.TransportError) -> Unreachable:
        return Unreachable(f'cannot reach SpendGauge at {self.url} ({type(exc).__name__}): start it with '
                           '`spendgauge serve`, or pass --db to use the database directly')

    @staticmethod
    def _refused(status: int, body: Any, bad_usage: tuple[int, ...]) -> CliError:
        detail = body.get('detail') if isinstance(body, dict) else None
        return CliError(f'server answered {status}: {detail or "not a SpendGauge API answer (is --url right?)"}',
                        2 if status in bad_usage and detail else 1)

    def record(self, event: dict[str, Any]) -> dict[str, Any]:
        return self.call('POST', '/usage', json=event)

    def summary(self, period: str) -> dict[str, Any]:
        return self.call('GET', '/budget/summary', params={'period': period})

    def breakdown(self, by: str, period: str) -> dict[str, Any]:
        return self.call('GET', f'/budget/by-{by}', params={'period': period})

    def usage(self, params: dict[str, str]) -> dict[str, Any]:
        """A page of calls; a refused filter is bad usage."""
        return self.call('GET', '/usage', BAD_PARAMETERS, params=params)

    def export_usage(self, params: dict[str, str], fmt: str, limit: int) -> Iterator[str]:
        """The server's export, streamed through: a refused filter fails before the first chunk."""
        request = self.client.build_request('GET', '/usage/export',
                                            params={**params, 'format': fmt, 'limit': str(limit)}, timeout=None)
        try:
            response = self.client.send(request, stream=True)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None
        if response.status_code >= 400:
            response.read()
            response.close()
            try:
                body = response.json()
            except ValueError:
                body = None
            raise self._refused(response.status_code, body, (422,))
        return _chunks(response)

    def set_limit(self, period: PeriodName, usd: Decimal | None, action: str | None) -> dict[str, Any]:
        if usd is None:
            return self.call('DELETE', f'/budget/limits/{period}')
        body = {'limit_usd': str(usd)} | ({'action': action} if action else {})
        return self.call('PUT', f'/budget/limits/{period}', json=body)

    def sync(self, source: str) -> dict[str, Any]:
        return self.call('POST', f'/sync/{source}', timeout=600)

    def policies(self) -> list[dict[str, Any]]:
        return self.call('GET', '/policies')['items']

    def eco(self) -> dict[str, Any]:
        return self.call('GET', '/eco')

    def set_eco(self, on: bool, reason: str) -> dict[str, Any]:
        return self.call('POST', '/eco', json={'eco_mode': on, 'reason': reason})

    def set_paused(self, agent_id: str, paused: bool) -> dict[str, Any]:
        return self.call('POST', f'/agents/{agent_id}/{"pause" if paused else "resume"}')

    def alerts(self, status: str) -> list[dict[str, Any]]:
        return self.call('GET', '/alerts', params={'status': status})['items']

    def acknowledge(self, alert_id: int, by: str) -> dict[str, Any]:
        return self.call('POST', f'/alerts/{alert_id}/ack', json={'by': by})

    def resolve(self, alert_id: int) -> dict[str, Any]:
        return self.call('POST', f'/alerts/{alert_id}/resolve')

    def thresholds(self) -> dict[str, Any]:
        return self.call('GET', '/thresholds')

    def set_thresholds(self, session_usd: Decimal | None, day_usd: Decimal | None, pause: bool) -> dict[str, Any]:
        body = {'session_threshold_usd': _text(session_usd), 'day_threshold_usd': _text(day_usd), 'pause': pause}
        return self.call('PUT', '/thresholds', json=body)

    def prune(self, older_than_days: int, dry_run: bool) -> dict[str, Any]:
        return self.call('POST', '/usage/prune', json={'older_than_days': older_than_days, 'dry_run': dry_run},
                         timeout=600)

    def update_prices(self, url: str | None) -> dict[str, Any]:
        return self.call('POST', '/prices/update', json={'url': url} if url else {}, timeout=120)

    def recalculate_prices(self, start: str, end: str | None, dry_run: bool) -> dict[str, Any]:
        body = {'from': start, 'dry_run': dry_run} | ({'to': end} if end else {})
        # millions of events: minutes; a range the server refuses is bad usage, as with --db
        return self.call('POST', '/prices/recalculate', (422,), json=body, timeout=3600)

    def price_audits(self, limit: int) -> list[dict[str, Any]]:
        return self.call('GET', '/prices/audit', params={'limit': limit})['items']

    def audit(self, params: dict[str, str]) -> dict[str, Any]:
        """A page of the audit trail; a refused filter is bad usage."""
        return self.call('GET', '/audit', BAD_PARAMETERS, params=params)

    def model_price(self, model: str, provider: str | None) -> dict[str, Any]:
        params = {'provider': provider} if provider else {}
        return self.call('GET', f'/prices/models/{quote(model, safe="/")}', BAD_PARAMETERS, params=params)

    def models_in_use_prices(self) -> dict[str, Any]:
        return self.call('GET', '/prices/models')

    def optimize(self, params: dict[str, str]) -> dict[str, Any]:
        return self.call('GET', '/optimize', BAD_PARAMETERS, params=params)

    def digest(self, day: str | None, fmt: str) -> str:
        """The server's preview: its JSON, or its text or HTML. A refused day is bad usage."""
        params = {'format': fmt} | ({'day': day} if day else {})
        if fmt == 'json':
            return json.dumps(self.call('GET', '/digest', BAD_PARAMETERS, params=params), indent=2) + '\n'
        return self._text('/digest', params, 'text/plain' if fmt == 'text' else 'text/html')

    def send_digest(self, day: str | None) -> list[dict[str, Any]]:
        body = {'day': day} if day else {}
        return self.call('POST', '/digest/send', BAD_PARAMETERS, json=body, timeout=60)['items']

    def report(self, kind: str, params: dict[str, str], fmt: str) -> str:
        """The server's own CSV or Markdown; the table is drawn here from its JSON. A refused parameter is bad usage."""
        from services.insights import report_formats

        if fmt in ('json', 'table'):
            body = self.call('GET', f'/reports/{kind}', (422,), params={**params, 'format': 'json'})
            if fmt == 'json':
                return json.dumps(body, indent=2) + '\n'
            return report_formats.render(report_formats.from_json(body), 'table')
        return self._text(f'/reports/{kind}', {**params, 'format': fmt}, report_formats.MEDIA_TYPES[fmt])

    def _text(self, path: str, params: dict[str, str], media_type: str) -> str:
        """A GET answered with a file or text of `media_type`; a refused parameter is bad usage."""
        response = self._send('GET', path, params=params)
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = None
            raise self._refused(response.status_code, body, (422,))
        if response.headers.get('content-type', '').split(';')[0] != media_type.split(';')[0]:
            raise CliError(f'{self.url} did not answer like a SpendGauge server (is --url right?)')
        return response.text


def _chunks(response: httpx.Response) -> Iterator[str]:
    try:
        yield from response.iter_text()
    except httpx.TransportError as exc:
        raise CliError(f'the export stopped before its end ({type(exc).__name__}): what was written is incomplete') \
            from None
    finally:
        response.close()


def database_error(exc: BaseException) -> bool:
    """Whether `exc` is SQLAlchemy's: the database of --db cannot be opened or used (only --db loads SQLAlchemy)."""
    errors = sys.modules.get('sqlalchemy.exc')
    return errors is not None and isinstance(exc, errors.SQLAlchemyError)


def refused(exc: DomainError) -> CliError:
    """A command's refusal as the CLI reports it: bad input is bad usage (2), the rest a refused request (1)."""
    return CliError(str(exc), 2 if isinstance(exc, Invalid) else 1)


def _text(usd: Decimal | None) -> str | None:
    return None if usd is None else str(usd)
