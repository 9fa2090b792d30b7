"""Settings: every declared setting documented in `.env.example` with its default, loading from the environment and
`.env`, one-line errors naming the variable, and secrets kept out of repr."""
from __future__ import annotations

import os
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic_settings import BaseSettings

from app import cli
from services.core.settings import Settings, SettingsError, load_settings

ENV_EXAMPLE = Path(__file__).resolve().parents[3] / '.env.example'
# Documented in .env.example, read by other programs: the CLI and LiteLLM callback (URL, API_TOKEN, and the
# callback's ENV_OPTIONS in services/integrations/litellm_logger.py), and load_settings itself (ENV_FILE).
NOT_SETTINGS = {'SPENDGAUGE_URL', 'SPENDGAUGE_API_TOKEN', 'SPENDGAUGE_ENV_FILE', 'SPENDGAUGE_ENFORCE',
                'SPENDGAUGE_REJECT_THROTTLE', 'SPENDGAUGE_CHECK_TIMEOUT_S', 'SPENDGAUGE_BATCH_SIZE',
                'SPENDGAUGE_FLUSH_INTERVAL_S', 'SPENDGAUGE_SEND_TIMEOUT_S', 'SPENDGAUGE_MAX_QUEUE',
                'SPENDGAUGE_MAX_BACKOFF_S', 'SPENDGAUGE_EXIT_TIMEOUT_S'}
SECRETS = {'SPENDGAUGE_DATABASE_URL', 'SPENDGAUGE_API_TOKENS', 'SPENDGAUGE_STORAGE_SECRET',
           'SPENDGAUGE_LITELLM_MASTER_KEY', 'SPENDGAUGE_OPENAI_ADMIN_KEY', 'SPENDGAUGE_ANTHROPIC_ADMIN_KEY',
           'SPENDGAUGE_OPENROUTER_KEY', 'SPENDGAUGE_OPENROUTER_MANAGEMENT_KEY', 'SPENDGAUGE_ALERT_WEBHOOK_URL',
           'SPENDGAUGE_N8N_WEBHOOK_URL', 'SPENDGAUGE_SMTP_PASSWORD', 'SPENDGAUGE_ADMIN_PASSWORD'}
LINE = re.compile(r'^(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$')


def declared() -> dict[str, tuple[Any, str]]:
    """Environment variable -> (settings class, field), from the classes themselves."""
    groups: list[type[Any]] = [Settings, *(field.annotation for field in Settings.model_fields.values()
                          if isinstance(field.annotation, type) and issubclass(field.annotation, BaseSettings))]
    assert len(groups) == 3
    names: dict[str, tuple[Any, str]] = {}
    for group in groups:
        for field, variable in group.env_names().items():
            assert variable not in names, f'{variable} is declared twice'
            names[variable] = (group, field)
    return names


def value_of(settings: Settings, group: Any, field: str) -> Any:
    for part in (settings, settings.sources, settings.notify):
        if isinstance(part, group):
            return getattr(part, field)
    raise AssertionError(group)


def default_of(group: Any, field: str) -> Any:
    return group.model_fields[field].get_default(call_default_factory=True)


def example_lines() -> list[tuple[bool, str, str]]:
    """(set, not commented out; name; value) for each `NAME=value` line of .env.example."""
    found = []
    for line in ENV_EXAMPLE.read_text().splitlines():
        if match := LINE.match(line.strip()):
            found.append((match[1] is None, match[2], match[3]))
    return found


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No setting in the environment (conftest sets a database URL), and no .env."""
    for name in list(os.environ):
        if name.startswith('SPENDGAUGE_') or name.endswith('_BUDGET_LIMIT'):
            monkeypatch.delenv(name)
    monkeypatch.setenv('SPENDGAUGE_ENV_FILE', '')
    return monkeypatch


# --- .env.example ----------------------------------------------------------------------------------------------

def test_env_example_documents_every_setting_and_nothing_else() -> None:
    settings = declared()
    assert len(settings) > 30
    lines = [name for _, name, _ in example_lines()]
    assert not set(settings) - set(lines), 'declared but not in .env.example (set or commented out)'
    mentioned = set(re.findall(r'\b(SPENDGAUGE_[A-Z0-9_]+|[A-Z]+_BUDGET_LIMIT)\b', ENV_EXAMPLE.read_text()))
    assert not mentioned - set(settings) - NOT_SETTINGS, 'in .env.example but not a setting'
    assert NOT_SETTINGS <= set(lines)
    set_lines = [name for is_set, name, _ in example_lines() if is_set]
    assert len(set_lines) == len(set(set_lines)), 'set twice'


def test_env_example_values_are_the_defaults(clean_env: pytest.MonkeyPatch) -> None:
    settings = declared()
    loaded = load_settings(ENV_EXAMPLE)
    for is_set, name, value in example_lines():
        if not is_set or name not in settings:
            continue
        group, field = settings[name]
        default = default_of(group, field)
        if value.strip():
            assert value_of(loaded, group, field) == default, f'{name}={value} in .env.example, default {default!r}'
        else:
            assert default in ('', (), None), f'{name} is empty in .env.example, default {default!r}'


def test_empty_environment_gives_the_declared_defaults(clean_env: pytest.MonkeyPatch) -> None:
    loaded = load_settings()
    for name, (group, field) in declared().items():
        assert value_of(loaded, group, field) == default_of(group, field), name
    assert loaded == Settings()
    assert (loaded.zone.key, loaded.env_limits, loaded.limit_action) == ('UTC', {'day': 5_000_000}, 'block')
    assert (loaded.sources.enabled(), loaded.notify.email_enabled) == ([], False)


# --- reading the environment and .env ---------------------------------------------------------------------------

def test_environment_and_renamed_variables(clean_env: pytest.MonkeyPatch) -> None:
    for name, value in {'SPENDGAUGE_PORT': ' 9000 ', 'SPENDGAUGE_TZ': 'Europe/Berlin', 'SPENDGAUGE_DEMO': 'AUTO',
                        'SPENDGAUGE_LOG_LEVEL': 'debug', 'SPENDGAUGE_DAILY_LIMIT_USD': '$1,250.10',
                        'SPENDGAUGE_API_TOKENS': ' one, two,,["three"] ', 'SPENDGAUGE_LITELLM_URL': 'http://llm',
                        'SPENDGAUGE_LITELLM_MASTER_KEY': 'sk-master', 'SPENDGAUGE_LITELLM_SYNC_MINUTES': '0.5',
                        'SPENDGAUGE_PROVIDERS_SYNC_MINUTES': '90', 'SPENDGAUGE_SYNC_LOOKBACK_DAYS': '7',
                        'SPENDGAUGE_RECONCILIATION_TOLERANCE': '0.1', 'SPENDGAUGE_OPENROUTER_KEY': 'sk-or',
                        'SPENDGAUGE_ALERT_WEBHOOK_URL': 'https://hooks.test/a', 'SPENDGAUGE_SMTP_HOST': 'mail',
                        'SPENDGAUGE_SMTP_TO': 'a@x.test, b@x.test', 'SPENDGAUGE_SMTP_STARTTLS': 'no',
                        'WEEKLY_BUDGET_LIMIT': '12.50', 'SPENDGAUGE_HOST': '   '}.items():
        clean_env.setenv(name, value)
    settings = load_settings()
    assert (settings.port, settings.zone.key, settings.demo, settings.log_level) == (9000, 'Europe/Berlin', 'auto',
                                                                                    'DEBUG')
    assert settings.host == '127.0.0.1', 'blank means the default'
    assert settings.daily_limit_usd == Decimal('1250.10')
    assert settings.api_tokens == ('one', 'two', '["three"]'), 'comma-separated, not JSON'
    sources = settings.sources
    assert (sources.litellm_key, sources.litellm_interval_min, sources.providers_interval_min,
            sources.lookback_days) == ('sk-master', 0.5, 90, 7)
    assert sources.reconciliation_tolerance == Decimal('0.1') and sources.enabled() == ['litellm', 'openrouter_direct']
    notify = settings.notify
    assert (notify.webhook_url, notify.smtp_to, notify.smtp_starttls, notify.email_enabled) == \
        ('https://hooks.test/a', ('a@x.test', 'b@x.test'), False, True)
    assert settings.env_limits == {'day': 1_250_100_000, 'week': 12_500_000}


def test_unprefixed_and_field_names_are_not_read(clean_env: pytest.MonkeyPatch) -> None:
    for name in ('PORT', 'SPENDGAUGE_LITELLM_KEY', 'SPENDGAUGE_WEBHOOK_URL', 'SPENDGAUGE_DAILY_BUDGET_LIMIT',
                 'SPENDGAUGE_LOOKBACK_DAYS', 'SPENDGAUGE_SOURCES', 'SPENDGAUGE_NOTIFY'):
        clean_env.setenv(name, '1')
    assert load_settings() == Settings()


def test_env_file_is_read_and_the_environment_wins(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / '.env').write_text('SPENDGAUGE_PORT=9001\nSPENDGAUGE_TZ=Asia/Tokyo\nSPENDGAUGE_SMTP_HOST=mail\n'
                                   'SPENDGAUGE_LITELLM_MASTER_KEY=from-file\nMONTHLY_BUDGET_LIMIT=100\n'
                                   'SPENDGAUGE_URL=http://elsewhere:1\nSPENDGAUGE_DEMO=\nOTHER_TOOL=x\n')
    other = tmp_path / 'other.env'
    other.write_text('SPENDGAUGE_PORT=9002\n')
    clean_env.chdir(tmp_path)
    clean_env.setenv('SPENDGAUGE_TZ', 'Europe/Paris')
    clean_env.delenv('SPENDGAUGE_ENV_FILE')
    settings = load_settings()
    assert (settings.port, settings.tz, settings.notify.smtp_host, settings.sources.litellm_key, settings.demo) == \
        (9001, 'Europe/Paris', 'mail', 'from-file', 'off')
    assert settings.env_limits == {'day': 5_000_000, 'month': 100_000_000}
    assert 'SPENDGAUGE_PORT' not in os.environ, 'the file is not copied into the environment'
    clean_env.setenv('SPENDGAUGE_ENV_FILE', str(other))
    assert load_settings().port == 9002
    assert load_settings(other).port == 9002
    clean_env.setenv('SPENDGAUGE_ENV_FILE', '')
    assert load_settings().port == 8080


# --- bad values ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(('name', 'value', 'message'), [
    ('SPENDGAUGE_PORT', 'x', "SPENDGAUGE_PORT must be an integer, got 'x'"),
    ('SPENDGAUGE_PORT', '70000', 'SPENDGAUGE_PORT must be less than 65536'),
    ('SPENDGAUGE_TZ', 'Mars/Base', "SPENDGAUGE_TZ is not a known time zone: 'Mars/Base'"),
    ('SPENDGAUGE_DEMO', 'sometimes', 'SPENDGAUGE_DEMO must be one of off, on, auto'),
    ('SPENDGAUGE_LOG_LEVEL', 'loud', 'SPENDGAUGE_LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL'),
    ('SPENDGAUGE_DAILY_LIMIT_USD', '-1', 'SPENDGAUGE_DAILY_LIMIT_USD must be between 0 and'),
    ('SPENDGAUGE_DAILY_LIMIT_USD', 'NaN', 'SPENDGAUGE_DAILY_LIMIT_USD must be a finite'),
    ('SPENDGAUGE_AGENT_WARN_USD', 'lots', "SPENDGAUGE_AGENT_WARN_USD must be a dollar amount, got 'lots'"),
    ('SPENDGAUGE_AGENT_ALERT_USD', '1,00', 'SPENDGAUGE_AGENT_ALERT_USD must be a dollar amount'),
    ('WEEKLY_BUDGET_LIMIT', 'lots', 'WEEKLY_BUDGET_LIMIT must be a dollar amount'),
    ('SPENDGAUGE_LITELLM_SYNC_MINUTES', 'often', 'SPENDGAUGE_LITELLM_SYNC_MINUTES must be a number'),
    ('SPENDGAUGE_PROVIDERS_SYNC_MINUTES', '0', 'SPENDGAUGE_PROVIDERS_SYNC_MINUTES must be positive'),
    ('SPENDGAUGE_PROVIDERS_SYNC_MINUTES', 'inf', 'SPENDGAUGE_PROVIDERS_SYNC_MINUTES must be a number'),
    ('SPENDGAUGE_SYNC_LOOKBACK_DAYS', '1.5', 'SPENDGAUGE_SYNC_LOOKBACK_DAYS must be an integer'),
    ('SPENDGAUGE_RECONCILIATION_TOLERANCE', '-0.1', 'SPENDGAUGE_RECONCILIATION_TOLERANCE must be greater than or'),
    ('SPENDGAUGE_SMTP_PORT', '0', 'SPENDGAUGE_SMTP_PORT must be positive'),
    ('SPENDGAUGE_SMTP_STARTTLS', 'maybe', 'SPENDGAUGE_SMTP_STARTTLS must be true or false'),
    ('SPENDGAUGE_N8N_WEBHOOK_URL', 'ftp://n8n/secret', 'SPENDGAUGE_N8N_WEBHOOK_URL must be an http:// or https://'),
])
def test_bad_value_names_the_variable(clean_env: pytest.MonkeyPatch, name: str, value: str, message: str) -> None:
    clean_env.setenv(name, value)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert str(raised.value).startswith(message)
    assert '\n' not in str(raised.value)


def test_a_bad_secret_is_not_shown(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv('SPENDGAUGE_ALERT_WEBHOOK_URL', 'hooks.test/very-secret')
    clean_env.setenv('SPENDGAUGE_SMTP_PORT', 'x')
    with pytest.raises(SettingsError, match='SPENDGAUGE_ALERT_WEBHOOK_URL') as raised:
        load_settings()
    assert 'very-secret' not in str(raised.value)


def test_the_cli_prints_the_error_and_exits_2(clean_env: pytest.MonkeyPatch, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    clean_env.setenv('SPENDGAUGE_PORT', 'x')
    assert cli.main(['status', '--db', f'sqlite:///{tmp_path / "x.db"}']) == 2
    assert capsys.readouterr().err == "spendgauge: SPENDGAUGE_PORT must be an integer, got 'x'\n"


# --- secrets, immutability, overrides ----------------------------------------------------------------------------

def test_secrets_are_not_in_repr(clean_env: pytest.MonkeyPatch) -> None:
    settings = declared()
    looks_secret = {name for name in settings if re.search('KEY|TOKEN|SECRET|PASSWORD|WEBHOOK', name)}
    assert looks_secret <= SECRETS <= set(settings)
    for name in SECRETS:
        clean_env.setenv(name, f'https://user:hunter2-{name.lower()}@example.test/x')
    loaded = load_settings()
    for name in SECRETS:
        group, field = settings[name]
        assert value_of(loaded, group, field), name
    for shown in (repr(loaded), str(loaded), repr(loaded.sources), str(loaded.notify)):
        assert 'hunter2' not in shown
    assert 'smtp_port=587' in repr(loaded)


def test_settings_are_immutable_and_overrides_are_validated(clean_env: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    with pytest.raises(ValueError, match='frozen'):
        settings.port = 1  # type: ignore[misc]  # the assignment that must fail
    changed = settings.with_overrides(port=9100, host=None, demo='on', database_url='sqlite:///x.db',
                                      weekly_budget_limit='7')
    assert (changed.port, changed.host, changed.demo, changed.database_url) == (9100, '127.0.0.1', 'on',
                                                                                'sqlite:///x.db')
    assert changed.env_limits == {'day': 5_000_000, 'week': 7_000_000}
    assert (settings.port, settings.demo) == (8080, 'off')
    assert changed.sources is settings.sources
    with pytest.raises(SettingsError, match='SPENDGAUGE_DEMO must be one of'):
        settings.with_overrides(demo='never')
    with pytest.raises(SettingsError, match='colour: not a setting'):
        settings.with_overrides(colour='blue')
