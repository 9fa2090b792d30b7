"""One typed settings object, read once from `.env` and the environment (prefix `SPENDGAUGE_`).

Each setting is declared once below: its type, its default, its environment variable (`SPENDGAUGE_` + the field
name unless `validation_alias` names another) and a one-line description. `.env.example` documents them all, and a
test checks that it does.
"""
from __future__ import annotations

import ipaddress
import os
import re
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal, Self, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dotenv import dotenv_values
from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from services.core.context import BudgetContext
from services.core.money import parse_usd, usd_to_micros

PREFIX = 'SPENDGAUGE_'
DEFAULT_DATABASE_URL = 'sqlite:///./data/spendgauge.db'
DEFAULT_STORAGE_SECRET = 'spendgauge-local'
Demo = Literal['off', 'on', 'auto']
LimitAction = Literal['warn', 'throttle', 'block']
LIMIT_ACTIONS: tuple[LimitAction, ...] = get_args(LimitAction)
LogLevel = Literal['DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL']
WILDCARD_HOSTS = {'0.0.0.0': '127.0.0.1', '::': '::1', '': '127.0.0.1'}  # listen everywhere -> ask loopback
DEMO_MODES: tuple[str, ...] = get_args(Demo)
LOG_LEVELS: tuple[str, ...] = get_args(LogLevel)
CommaSeparated = Annotated[tuple[str, ...], NoDecode]  # `a,b`, not JSON
RETENTION_MIN_DAYS = 1  # events younger than a day are never pruned
RETENTION_MAX_DAYS = 36_500  # a hundred years: anything longer is a typo
MAX_SUBSTITUTES = 10  # the optimiser prices every agent and model on each
DIGEST_AT = re.compile(r'([01]?\d|2[0-3]):[0-5]\d')


class SettingsError(ValueError):
    """A setting has a value we cannot use; the message names the variable."""


class _Group(BaseSettings):
    """A group of settings, each read from its own flat environment variable."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, env_ignore_empty=True, str_strip_whitespace=True,
                                      extra='forbid', frozen=True, validate_default=True)

    @classmethod
    def env_names(cls) -> dict[str, str]:
        """Field name -> environment variable, for every setting of this group."""
        return {name: _env_name(name, field) for name, field in cls.model_fields.items() if not _is_group(field)}

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        env_file = getattr(dotenv_settings, 'env_file', None)
        return init_settings, _Environment(settings_cls), _EnvFile(settings_cls, env_file=env_file)

    @model_validator(mode='before')
    @classmethod
    def _by_field_name(cls, data: Any) -> Any:
        """Settings whose variable is not `SPENDGAUGE_<field>` can be given by field name too, like the others
        (with_overrides, tests); in the environment only their variable counts."""
        if isinstance(data, dict):
            for name, field in cls.model_fields.items():
                if isinstance(field.validation_alias, str) and name in data:
                    data = {k: v for k, v in data.items() if k != name} | {field.validation_alias: data[name]}
        return data

    @classmethod
    def _named(cls, info: ValidationInfo) -> str:
        assert info.field_name is not None
        return cls.env_names()[info.field_name]

    @classmethod
    def load(cls, **values: Any) -> Self:
        """Build the group; a value we cannot use raises SettingsError naming its variable."""
        try:
            return cls(**values)
        except ValidationError as exc:
            raise SettingsError('; '.join(_problem(cls, error) for error in exc.errors())) from None


# Each source is on when all of these settings are set.
SOURCE_KEYS: dict[str, tuple[str, ...]] = {
    'litellm': ('litellm_url', 'litellm_key'), 'openai_direct': ('openai_admin_key',),
    'anthropic_direct': ('anthropic_admin_key',), 'openrouter_direct': ('openrouter_key',)}


class SourceSettings(_Group):
    """Where spend is pulled from. A source without its key is off."""

    litellm_url: str = Field('', description='LiteLLM proxy to pull spend from (with its master key)')
    litellm_key: str = Field('', repr=False, validation_alias='SPENDGAUGE_LITELLM_MASTER_KEY',
                             description='master key of that LiteLLM proxy')
    openai_admin_key: str = Field('', repr=False, description='OpenAI admin key (not an API key): costs and usage')
    anthropic_admin_key: str = Field('', repr=False,
                                     description='Anthropic admin key (not an API key): cost and usage reports')
    openrouter_key: str = Field('', repr=False, description='OpenRouter key whose usage is pulled')
    openrouter_management_key: str = Field('', repr=False,
                                           description='optional OpenRouter management key: total credits and usage')
    openai_url: str = Field('https://api.openai.com', description='base URL of the OpenAI API (proxies, tests)')
    anthropic_url: str = Field('https://api.anthropic.com',
                               description='base URL of the Anthropic API (proxies, tests)')
    openrouter_url: str = Field('https://openrouter.ai', description='base URL of the OpenRouter API (proxies, tests)')
    litellm_interval_min: float = Field(15, gt=0, allow_inf_nan=False,
                                        validation_alias='SPENDGAUGE_LITELLM_SYNC_MINUTES',
                                        description='minutes between pulls from LiteLLM')
    providers_interval_min: float = Field(60, gt=0, allow_inf_nan=False,
                                          validation_alias='SPENDGAUGE_PROVIDERS_SYNC_MINUTES',
                                          description='minutes between pulls from the provider billing APIs')
    lookback_days: int = Field(3, gt=0, validation_alias='SPENDGAUGE_SYNC_LOOKBACK_DAYS',
                               description='days each pull re-reads, since sources finalise late')
    reconciliation_tolerance: Decimal = Field(Decimal('0.05'), ge=0, allow_inf_nan=False,
                                              description='share by which LiteLLM may exceed the bill before a '
                                                          'reconciliation_gap alert')

    def enabled(self) -> list[str]:
        return [source for source, fields in SOURCE_KEYS.items() if all(getattr(self, f) for f in fields)]

    @classmethod
    def how_to_enable(cls, source: str | None = None) -> str:
        """`set SPENDGAUGE_OPENAI_ADMIN_KEY in .env ...`: what turns on a source, or any source (None)."""
        names = cls.env_names()

        def keys(name: str) -> str:
            return ' and '.join(names[field] for field in SOURCE_KEYS[name])
        wanted = keys(source) if source else '; or '.join(f'{keys(name)} ({name})' for name in SOURCE_KEYS)
        return f'set {wanted} in .env or the environment where SpendGauge runs (see .env.example)'


class NotifySettings(_Group):
    """Where alerts and eco-mode changes are sent. A channel without its setting is off."""

    webhook_url: str = Field('', repr=False, validation_alias='SPENDGAUGE_ALERT_WEBHOOK_URL',
                             description="webhook for alerts: JSON of the alert, Slack's {text} for hooks.slack.com")
    n8n_webhook_url: str = Field('', repr=False, description='webhook (n8n or any) that receives eco-mode changes')
    smtp_host: str = Field('', description='SMTP server for alert e-mails (on when SMTP_TO is set too)')
    smtp_port: int = Field(587, gt=0, lt=65536, description='SMTP port')
    smtp_user: str = Field('', description='SMTP user name (empty: no login)')
    smtp_password: str = Field('', repr=False, description='SMTP password')
    smtp_from: str = Field('spendgauge@localhost', description='sender address of alert e-mails')
    smtp_to: CommaSeparated = Field((), description='comma-separated recipients of alert e-mails')
    smtp_starttls: bool = Field(True, description='STARTTLS before logging in (true or false)')

    @property
    def email_enabled(self) -> bool:
        return bool(self.smtp_host and self.smtp_to)

    @field_validator('smtp_to', mode='before')
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return _split(value)

    @field_validator('webhook_url', 'n8n_webhook_url')
    @classmethod
    def _http_url(cls, value: str, info: ValidationInfo) -> str:
        if value and not value.startswith(('http://', 'https://')):
            raise ValueError(f'{cls._named(info)} must be an http:// or https:// URL')  # no value: it is a secret
        return value


class Settings(_Group):
    """Everything SpendGauge is configured with; `sources` and `notify` read their own variables."""

    database_url: str = Field(DEFAULT_DATABASE_URL, repr=False,
                              description='SQLite file (WAL mode) or postgresql://user:password@host:5432/name')
    host: str = Field('127.0.0.1', description='address to listen on; any but loopback requires API tokens')
    port: int = Field(8080, ge=0, lt=65536, description='port to listen on (0: any free one)')
    tz: str = Field('UTC', description='IANA time zone of budget periods (day, week from Monday, month)')
    daily_limit_usd: Decimal | None = Field(Decimal(5), description='daily budget limit in USD, a global policy '
                                            '(none: no limit); set-limit and Budget settings override it')
    reservation_minutes: float = Field(10, gt=0, le=1440, description='how long a check with `reserve` holds its '
                                       'estimate when no usage with its event id arrives')
    limit_action: LimitAction = Field('block', description='how far the day/week/month limits from the environment '
                                      'go: warn (at 80 %), throttle (at 95 %) or block (at 100 %)')
    api_tokens: CommaSeparated = Field((), repr=False,
                                       description='comma-separated admin bearer tokens (more, with roles: '
                                                   '`spendgauge token create`)')
    admin_user: str = Field('admin', description='name of the admin SPENDGAUGE_ADMIN_PASSWORD creates')
    admin_password: str = Field('', repr=False,
                                description='creates that dashboard admin on start-up unless the user exists')
    allowed_hosts: CommaSeparated = Field((), description='comma-separated host names the server is reached by '
                                                          '(Host and Origin are checked; loopback names always)')
    log_level: LogLevel = Field('INFO', description='logging level: DEBUG, INFO, WARNING, ERROR or CRITICAL')
    storage_secret: str = Field(DEFAULT_STORAGE_SECRET, repr=False,
                                description="secret that signs the dashboard's session cookies (required, 16+ "
                                            'characters, on any but loopback)')
    demo: Demo = Field('off', description='demo simulator: off, on, or auto (only while the database has no usage)')
    agent_warn_usd: Decimal = Field(Decimal(1), description='agent cards turn yellow at this session cost in USD')
    agent_alert_usd: Decimal = Field(Decimal(5), description='agent cards turn red above this session cost in USD')
    max_body_mb: int = Field(8, ge=1, le=1024, description='largest request body in MiB, answered 413 above it '
                             '(POST /api/v1/usage/batch: at least 32 MiB)')
    ingest_workers: int = Field(2, ge=1, le=32, description='usage requests (POST /api/v1/usage, /usage/batch) '
                                'carried out at once, on threads of their own')
    ingest_queue: int = Field(256, ge=0, le=100_000, description='usage requests that may wait for those; beyond '
                              'this (or 64 MiB of waiting bodies) the server answers 503 with Retry-After')
    ws_max_connections: int = Field(200, ge=1, le=10_000, description='live API (GET /api/v1/ws) connections at '
                                    'once; more are refused with close code 1013')
    ws_queue: int = Field(256, ge=8, le=100_000, description='live API messages that may wait for one client; a '
                          'client that lets more pile up is dropped with close code 4000 (too slow)')
    policies_file: str = Field('', description='YAML (or .json) budget policies, re-synced on every start')
    audit_log: str = Field('', description='JSONL audit log: a directory (audit-YYYY-MM-DD.jsonl in it, one file a '
                                           'UTC day) or a path ending in .jsonl (its stem-YYYY-MM-DD.jsonl); every '
                                           'state change and every raw usage event as received. Empty: off')
    retention_days: int | None = Field(None, ge=RETENTION_MIN_DAYS, le=RETENTION_MAX_DAYS,
                                       description='a daily job deletes usage events older than this many days '
                                                   '(whole local days; every total stays in the rollups); empty or '
                                                   'none: keep every event')
    price_data_url: str = Field('', max_length=2000,
                                description='where `spendgauge prices update` fetches genai-prices data when no URL is '
                                            "given (empty: genai-prices' own); fetched only when asked, never on start")
    daily_budget_limit: Decimal | None = Field(None, validation_alias='DAILY_BUDGET_LIMIT',
                                               description='the daily limit in USD (wins over DAILY_LIMIT_USD)')
    weekly_budget_limit: Decimal | None = Field(None, validation_alias='WEEKLY_BUDGET_LIMIT',
                                                description='the weekly limit in USD')
    monthly_budget_limit: Decimal | None = Field(None, validation_alias='MONTHLY_BUDGET_LIMIT',
                                                 description='the monthly limit in USD')
    optimize_substitutes: CommaSeparated = Field((), description='comma-separated provider:model pairs the optimiser '
                                                 "re-prices every agent on besides the same provider's cheaper "
                                                 'models, e.g. openai:gpt-4o-mini,anthropic:claude-3-5-haiku-latest')
    digest_at: str = Field('', description="local time HH:MM (in SPENDGAUGE_TZ) to send yesterday's digest to the "
                           'alert webhook and e-mail (only logged when neither is set); empty: off')
    sources: SourceSettings = Field(default_factory=SourceSettings, description='where spend is pulled from')
    notify: NotifySettings = Field(default_factory=NotifySettings, description='where alerts are sent')

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)

    @property
    def on_loopback(self) -> bool:
        """Whether the host is reachable from this machine only (no API tokens needed there)."""
        if self.host == 'localhost':
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    @property
    def local_url(self) -> str:
        """Where a client on this machine reaches the server."""
        return local_url(self.host, self.port)

    @property
    def budget(self) -> BudgetContext:
        return BudgetContext(self.zone)

    @property
    def env_limits(self) -> dict[str, int]:
        """The day, week and month limits the environment sets, in micro-USD (services/budget/limits.py)."""
        day = self.daily_budget_limit if self.daily_budget_limit is not None else self.daily_limit_usd
        found = {'day': day, 'week': self.weekly_budget_limit, 'month': self.monthly_budget_limit}
        return {period: usd_to_micros(usd) for period, usd in found.items() if usd is not None}

    def with_overrides(self, **changes: object) -> Settings:
        """A copy with these changes (command-line flags), validated; None leaves a setting as it is."""
        return self.load(**(dict(self) | {k: v for k, v in changes.items() if v is not None}))

    @field_validator('tz')
    @classmethod
    def _known_zone(cls, value: str, info: ValidationInfo) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise ValueError(f'{cls._named(info)} is not a known time zone: {value!r}') from None
        return value

    @field_validator('digest_at')
    @classmethod
    def _clock_time(cls, value: str, info: ValidationInfo) -> str:
        if value and not DIGEST_AT.fullmatch(value):
            raise ValueError(f'{cls._named(info)}: {value!r} is not a local time HH:MM (00:00 to 23:59), e.g. 08:00')
        return value

    @property
    def digest_time(self) -> tuple[int, int] | None:
        """SPENDGAUGE_DIGEST_AT as (hour, minute); None: no scheduled digest."""
        if not self.digest_at:
            return None
        hour, minute = self.digest_at.split(':')
        return int(hour), int(minute)

    @field_validator('agent_warn_usd', 'agent_alert_usd', mode='before')
    @classmethod
    def _usd(cls, value: Any, info: ValidationInfo) -> Decimal:
        return parse_usd(value, name=cls._named(info))

    @field_validator('daily_limit_usd', 'daily_budget_limit', 'weekly_budget_limit', 'monthly_budget_limit',
                     mode='before')
    @classmethod
    def _limit(cls, value: Any, info: ValidationInfo) -> Decimal | None:
        """A dollar amount, or `none` for no limit (empty means the default, as for every setting)."""
        if value is None or (isinstance(value, str) and value.strip().lower() == 'none'):
            return None
        return parse_usd(value, name=cls._named(info))

    @field_validator('retention_days', mode='before')
    @classmethod
    def _days(cls, value: Any) -> Any:
        """Days as `180` or `180d`; `none` keeps every event."""
        if isinstance(value, str):
            text = value.strip().lower()
            return None if text == 'none' else text.removesuffix('d')
        return value

    @field_validator('log_level', 'demo', mode='before')
    @classmethod
    def _case(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, str):
            return value
        return value.strip().upper() if info.field_name == 'log_level' else value.strip().lower()

    @field_validator('api_tokens', 'allowed_hosts', 'optimize_substitutes', mode='before')
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return _split(value)

    @field_validator('optimize_substitutes')
    @classmethod
    def _pairs(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        for pair in value:
            provider, _, model = pair.partition(':')
            if not (provider.strip() and model.strip()):
                raise ValueError(f'{cls._named(info)}: {pair!r} is not provider:model (e.g. openai:gpt-4o-mini)')
        if len(value) > MAX_SUBSTITUTES:
            raise ValueError(f'{cls._named(info)}: at most {MAX_SUBSTITUTES} substitutes, got {len(value)}')
        return value

    @property
    def substitutes(self) -> tuple[tuple[str, str], ...]:
        """SPENDGAUGE_OPTIMIZE_SUBSTITUTES as (provider, model) pairs."""
        return tuple((p.strip(), m.strip()) for p, _, m in (pair.partition(':') for pair in self.optimize_substitutes))


def local_url(host: str, port: int) -> str:
    """The URL a client on this machine opens for a server listening on host:port (a wildcard host: loopback)."""
    host = WILDCARD_HOSTS.get(host, host)
    return f'http://{f"[{host}]" if ":" in host else host}:{port}'


def settings_file() -> Path | None:
    """The file settings are read from besides the environment: `.env`, or SPENDGAUGE_ENV_FILE (empty for none);
    None when there is no such file."""
    name = os.environ.get(PREFIX + 'ENV_FILE', '.env').strip()
    return Path(name) if name and Path(name).is_file() else None


def load_settings(env_file: str | Path | None = None) -> Settings:
    """Read `.env` (or SPENDGAUGE_ENV_FILE; empty for none) and the environment, which wins over the file."""
    path = settings_file() if env_file is None else Path(env_file) if Path(env_file).is_file() else None
    return Settings.load(_env_file=path, sources=SourceSettings.load(_env_file=path),
                         notify=NotifySettings.load(_env_file=path))


def client_setting(name: str) -> str:
    """A variable only clients read (SPENDGAUGE_URL, SPENDGAUGE_API_TOKEN): the environment, else the settings
    file, as for the server's settings; empty when neither sets it."""
    value = os.environ.get(name, '').strip()
    path = settings_file()
    if value or path is None:
        return value
    return (dotenv_values(path).get(name) or '').strip()


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


# --- reading the variables ---------------------------------------------------------------------------------------

class _Variables(EnvSettingsSource):
    """Each field from its own variable, where blank means unset; a group field is no variable."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        value, key, is_complex = super().get_field_value(field, field_name)
        if _is_group(field) or (isinstance(value, str) and not value.strip()):
            value = None
        return value, key, is_complex


class _Environment(_Variables, EnvSettingsSource):
    pass


class _EnvFile(_Variables, DotEnvSettingsSource):
    def __call__(self) -> dict[str, Any]:
        return EnvSettingsSource.__call__(self)  # only this group's variables: other lines are not extra settings


def _env_name(name: str, field: FieldInfo) -> str:
    return field.validation_alias if isinstance(field.validation_alias, str) else PREFIX + name.upper()


def _is_group(field: FieldInfo) -> bool:
    return isinstance(field.annotation, type) and issubclass(field.annotation, _Group)


def _split(value: Any) -> Any:
    return tuple(part.strip() for part in value.split(',') if part.strip()) if isinstance(value, str) else value


def _problem(model: type[_Group], error: ErrorDetails) -> str:
    """One line naming the variable, from one of pydantic's errors."""
    if error['type'] == 'value_error':  # our validators name the variable themselves
        return str(error.get('ctx', {}).get('error', error['msg']))
    key = str(error['loc'][0]) if error['loc'] else ''
    fields = {field.validation_alias if isinstance(field.validation_alias, str) else name: name
              for name, field in model.model_fields.items()}
    if key not in fields:
        return f'{key}: not a setting' if error['type'] == 'extra_forbidden' else f'{key}: {error["msg"]}'
    field = model.model_fields[fields[key]]
    name, ctx = _env_name(fields[key], field), error.get('ctx', {})
    got = f', got {error["input"]!r}' if field.repr else ''  # a secret's value is not shown
    kind = error['type']
    if kind.startswith('int_'):
        return f'{name} must be an integer{got}'
    if kind.startswith(('float_', 'decimal_', 'finite_')):
        return f'{name} must be a number{got}'
    if kind.startswith('bool_'):
        return f'{name} must be true or false{got}'
    if kind == 'literal_error':
        return f'{name} must be one of {", ".join(get_args(field.annotation))}{got}'
    if kind == 'greater_than' and ctx.get('gt') == 0:
        return f'{name} must be positive{got}'
    if kind in ('greater_than', 'greater_than_equal', 'less_than', 'less_than_equal'):
        return f'{name} {error["msg"].replace("Input should be", "must be")}{got}'
    return f'{name}: {error["msg"]}{got}'
