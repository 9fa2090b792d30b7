"""One scrubber for every error text that is stored or shown (sync runs, deliveries, alerts, logs): secrets out
first, then cut to length, so a secret cut in half at the limit cannot leak its prefix.

Removed: the configured secrets themselves (every settings field marked `repr=False`: provider and LiteLLM keys,
SMTP password, webhook URLs, API tokens, ...), `Bearer`/`Basic` credentials, `sk-...`-like keys, the values of
`password=`, `token=`, `key=` (and the like) in queries and text, and `user:password@` in URLs.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from pydantic import BaseModel

MASK = '***'
MIN_SECRET = 4  # shorter configured values would mask ordinary words
_PATTERNS = (
    (re.compile(r'(?i)\b(bearer|basic|token)(\s+)[A-Za-z0-9._~+/=-]{4,}'), rf'\1\2{MASK}'),
    (re.compile(r'\b(?:sk|pk|rk|xox[abpr])-[A-Za-z0-9_-]{6,}'), MASK),
    (re.compile(r'(?i)\b((?:[a-z_]*_)?(?:password|passwd|pwd|secret|token|key|api_key|apikey|signature|sig|auth)'
                r'["\']?\s*[=:]\s*["\']?)[^\s&"\',;}]+'), rf'\1{MASK}'),
    (re.compile(r'(?i)\b([a-z][a-z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@'), rf'\1{MASK}@'),
)


def scrub(text: str, secrets: Iterable[str] = (), limit: int | None = None) -> str:
    """`text` without secrets, then at most `limit` characters (an ellipsis marks the cut)."""
    for secret in sorted({s for s in secrets if s and len(s) >= MIN_SECRET}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    if limit is not None and len(text) > limit:
        text = text[:max(0, limit - 1)] + '…'
    return text


# What each of _PATTERNS needs literally, case-folded: text holding none of these (nor `token` before a space, `=` or
# `:`) matches none of them. Kept beside the patterns: a pattern added there needs its fragment here.
_NEEDS = ('bearer', 'basic', 'xox', '://', 'pass', 'pwd', 'secret', 'key', 'sig', 'auth')
_STARTS = ('sk-', 'pk-', 'rk-')  # at the start of a word only (`task-7` holds no key)
_TOKEN = re.compile(r'token(?:\s|["\']?\s*[=:])')


def might_hold_secrets(text: str, secrets: Iterable[str] = ()) -> bool:
    """False when `scrub` would surely change nothing: a few substring checks, no pattern run (the patterns cost 60
    times what serialising a usage event does; the audit log checks each batch of raw events so)."""
    folded = text.casefold()
    return (any(fragment in folded for fragment in _NEEDS) or any(_word_starts(folded, f) for f in _STARTS)
            or _TOKEN.search(folded) is not None or any(s in text for s in secrets if s and len(s) >= MIN_SECRET))


def quick_scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """`scrub`, for text that mostly holds no secret: the patterns run only where one could match."""
    return scrub(text, secrets) if might_hold_secrets(text, secrets) else text


def _word_starts(text: str, fragment: str) -> bool:
    at = text.find(fragment)
    while at >= 0:
        if at == 0 or not (text[at - 1].isalnum() or text[at - 1] == '_'):
            return True
        at = text.find(fragment, at + 1)
    return False


def secrets_of(settings: BaseModel) -> tuple[str, ...]:
    """Every value of a field marked `repr=False` in these settings and their nested groups; of the database URL
    only its password (the rest names a file or a host, which logs may show)."""
    found: list[str] = []
    for name, field in type(settings).model_fields.items():
        value = getattr(settings, name, None)
        if isinstance(value, BaseModel):
            found += secrets_of(value)
        elif name == 'database_url' and isinstance(value, str):
            found.append(_password(value))
        elif not field.repr:
            found += [value] if isinstance(value, str) else [v for v in value or () if isinstance(v, str)]
    return tuple(s for s in found if s)


def _password(url: str) -> str:
    try:
        return urlsplit(url).password or ''
    except ValueError:
        return ''


class ScrubLogs(logging.Filter):
    """On a handler: each record's message (and traceback) scrubbed before it is written."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = tuple(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = scrub(message, self.secrets)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text, self.secrets)
        return True
