"""One typed settings object, read once from `.env` and the environment (prefix `SPENDGAUGE_`)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dotenv import load_dotenv

PREFIX = 'SPENDGAUGE_'
DEFAULT_DATABASE_URL = 'sqlite:///./data/spendgauge.db'
DEMO_MODES = ('off', 'on', 'auto')
LOG_LEVELS = ('DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL')


class SettingsError(ValueError):
    """A setting has a value we cannot use; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    host: str = '127.0.0.1'
    port: int = 8080
    tz: str = 'UTC'
    daily_limit_usd: Decimal = Decimal('5')
    api_tokens: tuple[str, ...] = field(default=(), repr=False)
    log_level: str = 'INFO'
    storage_secret: str = field(default='spendgauge-local', repr=False)
    demo: str = 'off'  # 'on': run the built-in simulator; 'auto': only when the database has no events
    agent_warn_usd: Decimal = Decimal('1')  # agent cards turn yellow at this session cost...
    agent_alert_usd: Decimal = Decimal('5')  # ...and red above this one

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)

    @property
    def daily_limit_micros(self) -> int:
        return int(self.daily_limit_usd * 1_000_000)

    def with_overrides(self, **changes: object) -> Settings:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def _env(name: str, default: str) -> str:
    value = os.environ.get(PREFIX + name, '').strip()
    return value or default


def load_settings(env_file: str | Path | None = None) -> Settings:
    """Read `.env` (or SPENDGAUGE_ENV_FILE; empty for none) without overriding real environment variables, then
    the environment."""
    if env_file is None:
        env_file = os.environ.get(PREFIX + 'ENV_FILE', '.env')
    if env_file and Path(env_file).is_file():
        load_dotenv(env_file, override=False)
    try:
        port = int(_env('PORT', '8080'))
    except ValueError:
        raise SettingsError(f'{PREFIX}PORT must be an integer, got {os.environ[PREFIX + "PORT"]!r}') from None
    tz = _env('TZ', 'UTC')
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise SettingsError(f'{PREFIX}TZ is not a known time zone: {tz!r}') from None
    daily_limit = _usd('DAILY_LIMIT_USD', '5')
    log_level = _env('LOG_LEVEL', 'INFO').upper()
    if log_level not in LOG_LEVELS:
        raise SettingsError(f'{PREFIX}LOG_LEVEL must be one of {", ".join(LOG_LEVELS)}')
    tokens = tuple(t.strip() for t in _env('API_TOKENS', '').split(',') if t.strip())
    demo = _env('DEMO', 'off').lower()
    if demo not in DEMO_MODES:
        raise SettingsError(f'{PREFIX}DEMO must be one of {", ".join(DEMO_MODES)}')
    agent_warn, agent_alert = _usd('AGENT_WARN_USD', '1'), _usd('AGENT_ALERT_USD', '5')
    return Settings(
        database_url=_env('DATABASE_URL', DEFAULT_DATABASE_URL),
        host=_env('HOST', '127.0.0.1'),
        port=port,
        tz=tz,
        daily_limit_usd=daily_limit,
        api_tokens=tokens,
        log_level=log_level,
        storage_secret=_env('STORAGE_SECRET', 'spendgauge-local'),
        demo=demo,
        agent_warn_usd=agent_warn,
        agent_alert_usd=agent_alert,
    )


def _usd(name: str, default: str) -> Decimal:
    try:
        value = Decimal(_env(name, default))
        if not value.is_finite() or value < 0:
            raise InvalidOperation
    except InvalidOperation:
        raise SettingsError(f'{PREFIX}{name} must be a non-negative number of dollars') from None
    return value


_settings: Settings | None = None


def get_settings() -> Settings:
    """The process-wide settings, loaded on first use."""
    global _settings
    if _settings is None:
        _settings = load_settings()
    return _settings


def use_settings(settings: Settings | None) -> None:
    """Replace the process-wide settings (command-line flags); None reloads them on next use."""
    global _settings
    _settings = settings
