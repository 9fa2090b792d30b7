"""One typed settings object, read once from `.env` and the environment (prefix `SPENDGAUGE_`)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dotenv import load_dotenv

PREFIX = 'SPENDGAUGE_'
DEFAULT_DATABASE_URL = 'sqlite:///./data/spendgauge.db'
DEMO_MODES = ('off', 'on', 'auto')
BUDGET_LIMIT_VARS = ('DAILY_BUDGET_LIMIT', 'WEEKLY_BUDGET_LIMIT', 'MONTHLY_BUDGET_LIMIT')  # no prefix: the issue's
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
    sources: SourceSettings = field(default_factory=lambda: SourceSettings())
    policies_file: str = ''  # YAML (or .json) policies, re-synced on every start
    env_budget_limits: dict[str, str] = field(default_factory=dict)  # DAILY_/WEEKLY_/MONTHLY_BUDGET_LIMIT
    notify: NotifySettings = field(default_factory=lambda: NotifySettings())

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
        sources=_source_settings(),
        policies_file=_env('POLICIES_FILE', ''),
        env_budget_limits={name: os.environ[name].strip() for name in BUDGET_LIMIT_VARS
                           if os.environ.get(name, '').strip()},
        notify=_notify_settings(),
    )


@dataclass(frozen=True)
class SourceSettings:
    """Where spend is pulled from. A source without its key is off."""

    litellm_url: str = ''
    litellm_key: str = field(default='', repr=False)
    openai_admin_key: str = field(default='', repr=False)
    anthropic_admin_key: str = field(default='', repr=False)
    openrouter_key: str = field(default='', repr=False)
    openrouter_management_key: str = field(default='', repr=False)
    openai_url: str = 'https://api.openai.com'
    anthropic_url: str = 'https://api.anthropic.com'
    openrouter_url: str = 'https://openrouter.ai'
    litellm_interval_min: float = 15
    providers_interval_min: float = 60
    lookback_days: int = 3  # each pull re-reads this many days, since sources finalise late
    reconciliation_tolerance: Decimal = Decimal('0.05')

    def enabled(self) -> list[str]:
        names = []
        if self.litellm_url and self.litellm_key:
            names.append('litellm')
        for name, key in (('openai_direct', self.openai_admin_key), ('anthropic_direct', self.anthropic_admin_key),
                          ('openrouter_direct', self.openrouter_key)):
            if key:
                names.append(name)
        return names


def _source_settings() -> SourceSettings:
    def number(name: str, default: str, kind: type) -> Any:
        text = _env(name, default)
        try:
            value = kind(text)
        except (ValueError, InvalidOperation):
            raise SettingsError(f'{PREFIX}{name} must be a number, got {text!r}') from None
        if value <= 0 if kind is not Decimal else value < 0:
            raise SettingsError(f'{PREFIX}{name} must be positive')
        return value

    return SourceSettings(
        litellm_url=_env('LITELLM_URL', ''), litellm_key=_env('LITELLM_MASTER_KEY', ''),
        openai_admin_key=_env('OPENAI_ADMIN_KEY', ''), anthropic_admin_key=_env('ANTHROPIC_ADMIN_KEY', ''),
        openrouter_key=_env('OPENROUTER_KEY', ''), openrouter_management_key=_env('OPENROUTER_MANAGEMENT_KEY', ''),
        openai_url=_env('OPENAI_URL', 'https://api.openai.com'),
        anthropic_url=_env('ANTHROPIC_URL', 'https://api.anthropic.com'),
        openrouter_url=_env('OPENROUTER_URL', 'https://openrouter.ai'),
        litellm_interval_min=number('LITELLM_SYNC_MINUTES', '15', float),
        providers_interval_min=number('PROVIDERS_SYNC_MINUTES', '60', float),
        lookback_days=number('SYNC_LOOKBACK_DAYS', '3', int),
        reconciliation_tolerance=number('RECONCILIATION_TOLERANCE', '0.05', Decimal),
    )


@dataclass(frozen=True)
class NotifySettings:
    """Where alerts and eco-mode changes are sent. A channel without its setting is off."""

    webhook_url: str = field(default='', repr=False)  # generic JSON, or Slack's {"text": ...} for hooks.slack.com
    n8n_webhook_url: str = field(default='', repr=False)  # eco-mode changes
    smtp_host: str = ''
    smtp_port: int = 587
    smtp_user: str = ''
    smtp_password: str = field(default='', repr=False)
    smtp_from: str = 'spendgauge@localhost'
    smtp_to: tuple[str, ...] = ()
    smtp_starttls: bool = True

    @property
    def email_enabled(self) -> bool:
        return bool(self.smtp_host and self.smtp_to)


def _notify_settings() -> NotifySettings:
    port_text = _env('SMTP_PORT', '587')
    try:
        port = int(port_text)
        if not 0 < port < 65536:
            raise ValueError
    except ValueError:
        raise SettingsError(f'{PREFIX}SMTP_PORT must be a port number, got {port_text!r}') from None
    starttls = _env('SMTP_STARTTLS', 'true').lower()
    if starttls not in ('true', 'false', '1', '0', 'yes', 'no', 'on', 'off'):
        raise SettingsError(f'{PREFIX}SMTP_STARTTLS must be true or false')
    for name in ('ALERT_WEBHOOK_URL', 'N8N_WEBHOOK_URL'):
        url = _env(name, '')
        if url and not url.startswith(('http://', 'https://')):
            raise SettingsError(f'{PREFIX}{name} must be an http:// or https:// URL')
    return NotifySettings(
        webhook_url=_env('ALERT_WEBHOOK_URL', ''), n8n_webhook_url=_env('N8N_WEBHOOK_URL', ''),
        smtp_host=_env('SMTP_HOST', ''), smtp_port=port, smtp_user=_env('SMTP_USER', ''),
        smtp_password=_env('SMTP_PASSWORD', ''), smtp_from=_env('SMTP_FROM', 'spendgauge@localhost'),
        smtp_to=tuple(a.strip() for a in _env('SMTP_TO', '').split(',') if a.strip()),
        smtp_starttls=starttls in ('true', '1', 'yes', 'on'),
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
