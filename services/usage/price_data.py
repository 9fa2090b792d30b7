"""Newer genai-prices data: fetched only when someone asks (`spendgauge prices update`, never at start-up or on a
timer), checked with genai-prices' own types, stored in the database (`price_data`), and from then on what every
instance prices with: the one that fetched it at once, the others when they hear of the change or restart. Until
then the data bundled with genai-prices. What changed is shown for the models in use (those in the rollups), as
USD per million tokens before and after.
"""
from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any, Literal, cast
from urllib.parse import urlsplit

import httpx
from sqlalchemy import Connection, delete, func, insert, select
from typing_extensions import TypedDict

from services.core.errors import Invalid
from services.core.money import micros_to_usd, usd_to_micros
from services.core.tables import DAILY, PRICE_DATA
from services.usage.pricing import BUNDLED, RATE_KINDS, PriceData, Pricer, parse_price_data

MAX_BYTES = 16 * 1024 * 1024  # genai-prices' data file is about 0.4 MB
TIMEOUT = httpx.Timeout(30, connect=5)
MAX_URL = 2000


class PriceDataOut(TypedDict):
    """The genai-prices data the prices come from."""

    source: Literal['bundled', 'fetched']  # fetched: by `prices update`, stored in the database
    label: str  # what the audit of a re-pricing names it by
    url: str | None
    sha256: str | None
    fetched_at: str | None
    fetched_by: str | None
    size_bytes: int | None
    models: int | None  # in the data, all providers


class RatesOut(TypedDict, total=False):
    """USD per million tokens of each kind genai-prices gives a price for (the lowest tier where tiered)."""

    input_usd_per_mtok: str
    output_usd_per_mtok: str
    cache_read_usd_per_mtok: str
    cache_write_usd_per_mtok: str


class PriceChange(TypedDict):
    provider: str
    model: str
    change: Literal['changed', 'now priced', 'no longer priced']
    override: bool  # our own price applies to it: this change does not, until the override is removed
    old: RatesOut | None  # None: no price known
    new: RatesOut | None


class UpdateOut(TypedDict):
    data: PriceDataOut  # what the prices come from now
    unchanged: bool  # the fetched file is the one stored already
    models_in_use: int  # provider/model pairs in the rollups
    changes: list[PriceChange]  # of the models in use, by provider and model


def fetch(url: str) -> bytes:
    """The body at `url` (http or https), at most MAX_BYTES. Invalid, saying why, when it cannot be had: the URL is
    not one, nothing answers there in time, or its server refuses (any error status) or sends too much. (A 4xx: the
    URL the caller gave or configured is what fails, and nothing changes.)"""
    parts = urlsplit(url)
    if parts.scheme not in ('http', 'https') or not parts.netloc or len(url) > MAX_URL:
        raise Invalid(f'url: an http or https URL of at most {MAX_URL} characters, got {url[:100]!r}')
    try:
        with httpx.Client(timeout=TIMEOUT, follow_redirects=True) as client, client.stream('GET', url) as response:
            if response.status_code >= 400:
                raise Invalid(f'{url} answered {response.status_code} {response.reason_phrase}')
            declared = response.headers.get('content-length')
            if declared and declared.isdigit() and int(declared) > MAX_BYTES:
                raise Invalid(f'{url}: {int(declared):,} bytes, more than price data can be ({MAX_BYTES:,})')
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_BYTES:
                    raise Invalid(f'{url}: more than {MAX_BYTES:,} bytes, more than price data can be')
            return bytes(body)
    except httpx.TimeoutException:
        raise Invalid(f'{url} did not answer within {TIMEOUT.read:.0f} s') from None
    except httpx.HTTPError as exc:
        raise Invalid(f'cannot fetch {url} ({type(exc).__name__})') from None


def parse(raw: bytes, url: str, sha256: str) -> PriceData:
    try:
        return parse_price_data(raw, label_of(sha256))
    except ValueError as exc:
        raise Invalid(f'{url}: {exc}') from None


def label_of(sha256: str) -> str:
    return f'fetched, sha256 {sha256[:16]}'


def sha256_of(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def store(conn: Connection, raw: bytes, url: str, sha256: str, data: PriceData, actor: str) -> int:
    """Keep `raw` as the data to price with (the only row kept); its id."""
    pk = conn.execute(insert(PRICE_DATA).values(
        fetched_at=datetime.now(UTC), fetched_by=actor, url=url, sha256=sha256, size_bytes=len(raw),
        models=data.model_count, data=raw.decode()).returning(PRICE_DATA.c.id)).scalar_one()
    conn.execute(delete(PRICE_DATA).where(PRICE_DATA.c.id != pk))
    return int(pk)


def latest_id(conn: Connection) -> int | None:
    """The id of the stored data (a cheap read, to tell whether it changed)."""
    return conn.scalar(select(func.max(PRICE_DATA.c.id)))


def load(conn: Connection) -> tuple[int, PriceData] | None:
    """The stored data, parsed, with its id; None when there is none (the bundled data applies)."""
    row = conn.execute(select(PRICE_DATA.c.id, PRICE_DATA.c.data, PRICE_DATA.c.sha256)
                       .order_by(PRICE_DATA.c.id.desc()).limit(1)).first()
    if row is None:
        return None
    return row.id, parse_price_data(row.data, label_of(row.sha256))


def describe(conn: Connection) -> PriceDataOut:
    columns = [c for c in PRICE_DATA.c if c.name != 'data']
    row = conn.execute(select(*columns).order_by(PRICE_DATA.c.id.desc()).limit(1)).first()
    if row is None:
        return {'source': 'bundled', 'label': BUNDLED, 'url': None, 'sha256': None, 'fetched_at': None,
                'fetched_by': None, 'size_bytes': None, 'models': None}
    return {'source': 'fetched', 'label': label_of(row.sha256), 'url': row.url, 'sha256': row.sha256,
            'fetched_at': row.fetched_at.isoformat(), 'fetched_by': row.fetched_by, 'size_bytes': row.size_bytes,
            'models': row.models}


def stored_sha256(conn: Connection) -> str | None:
    return conn.scalar(select(PRICE_DATA.c.sha256).order_by(PRICE_DATA.c.id.desc()).limit(1))


def models_in_use(conn: Connection, limit: int | None = None) -> list[tuple[str, str]]:
    """The provider/model pairs that calls were recorded for (from the daily rollups: one row a day and agent), the
    first `limit` of them by provider and model when given."""
    query = select(DAILY.c.provider, DAILY.c.model).distinct().order_by(DAILY.c.provider, DAILY.c.model).limit(limit)
    return [(provider, model) for provider, model in conn.execute(query)]


def changes(old: Pricer, new: Pricer, models: list[tuple[str, str]],
            at: datetime | None = None) -> list[PriceChange]:
    """Where genai-prices' price of a model in use differs between two pricers' data, now."""
    at = at or datetime.now(UTC)
    found: list[PriceChange] = []
    for provider, model in models:
        before, after = old.rates_per_mtok(provider, model, at), new.rates_per_mtok(provider, model, at)
        if before == after:
            continue
        change: Literal['changed', 'now priced', 'no longer priced'] = (
            'now priced' if before is None else 'no longer priced' if after is None else 'changed')
        found.append({'provider': provider, 'model': model, 'change': change,
                      'override': (provider, model) in new.overrides, 'old': _rates(before), 'new': _rates(after)})
    return found


def _rates(rates: dict[str, Any] | None) -> RatesOut | None:
    if rates is None:
        return None
    return cast(RatesOut, {f'{kind}_usd_per_mtok': micros_to_usd(usd_to_micros(rates[kind]))
                           for kind in RATE_KINDS if kind in rates})
