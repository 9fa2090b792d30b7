"""Audit rows: what a command changed, written in the same transaction as the change (a rolled back change leaves
no row). Secrets never enter them: values under secret-looking keys are masked, and every string is scrubbed."""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic_core import to_jsonable_python
from sqlalchemy import Connection, insert

from services.core.scrub import MASK, MIN_SECRET, scrub
from services.core.tables import AUDIT_LOG

# keys whose values are secrets wherever they appear: a created token, passwords, webhook and SMTP secrets, keys
SECRET_KEY = re.compile(r'(?i)^(token|authorization|key|.*(password|passwd|secret|api_?key|_token|webhook_url))$')
MAX_TARGET = 500


@dataclass
class AuditEntry:
    """One change as its command describes it; `before`/`after` are the target's state (any JSON-able value)."""

    actor: str
    action: str
    target: str = ''
    before: Any = None
    after: Any = None
    at: datetime = field(default_factory=lambda: datetime.now(UTC))
    skipped: bool = False  # set by `unchanged()`: the command changed nothing, no row is written

    def unchanged(self) -> None:
        self.skipped = True

    def as_dict(self, secrets: Iterable[str] = ()) -> dict[str, Any]:
        """The entry as stored: JSON values, secrets masked."""
        secrets = tuple(secrets)
        return {'at': self.at.isoformat(), 'actor': self.actor, 'action': self.action,
                'target': _without(self.target, secrets)[:MAX_TARGET],
                'before': redact(self.before, secrets), 'after': redact(self.after, secrets)}


def redact(value: Any, secrets: Iterable[str] = ()) -> Any:
    """`value` as JSON (dicts, lists, strings, numbers), with the values of secret-looking keys masked and every
    string scrubbed of configured secrets and credential patterns (services/core/scrub.py)."""
    secrets = tuple(secrets)
    return _redacted(to_jsonable_python(value, fallback=str), secrets)


def _redacted(value: Any, secrets: tuple[str, ...]) -> Any:
    if isinstance(value, dict):
        return {key: MASK if item is not None and SECRET_KEY.match(str(key)) else _redacted(item, secrets)
                for key, item in value.items()}
    if isinstance(value, list):
        return [_redacted(item, secrets) for item in value]
    if isinstance(value, str):
        return scrub(value, secrets)
    return value


def _without(text: str, secrets: tuple[str, ...]) -> str:
    """A target names what changed (`token:grafana`): only configured secrets are masked, not the patterns that
    would take `token:` for a credential."""
    for secret in secrets:
        if len(secret) >= MIN_SECRET:
            text = text.replace(secret, MASK)
    return text


def write(conn: Connection, entry: AuditEntry, secrets: Iterable[str] = ()) -> dict[str, Any]:
    """Insert the row on `conn` (the command's transaction); returns it as stored, with its id."""
    row = entry.as_dict(secrets)
    row['id'] = conn.execute(insert(AUDIT_LOG).values(
        at=entry.at, actor=entry.actor[:200], action=entry.action, target=row['target'], before=row['before'],
        after=row['after']).returning(AUDIT_LOG.c.id)).scalar_one()
    return row
