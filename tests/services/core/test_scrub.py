"""The one scrubber: secrets out first, then cut, so a secret at the cut cannot leak its prefix."""
from __future__ import annotations

import logging

import pytest

from services.core.scrub import ScrubLogs, might_hold_secrets, quick_scrub, scrub, secrets_of
from services.core.settings import Settings

KEY = 'adm1n-K3y-0123456789abcdef'


@pytest.mark.parametrize(('text', 'leak'), [
    ('HTTP 401: Authorization: Bearer abc.DEF-123_xyz refused', 'abc.DEF-123_xyz'),
    ('Incorrect API key provided: sk-proj-AbCdEf0123456789', 'sk-proj-AbCdEf0123456789'),
    ('key sk-ant-admin01-XYZxyz0123456789 refused', 'XYZxyz0123456789'),
    ('GET https://api.test/v1?password=hunter22&x=1 failed', 'hunter22'),
    ('GET /hook?token=t0k3n-value failed', 't0k3n-value'),
    ('{"api_key": "abcd1234efgh"}', 'abcd1234efgh'),
    ('cannot connect to postgresql://sg:pa55word@db:5432/x', 'pa55word'),
    ('smtp login failed: Basic dXNlcjpwYXNz', 'dXNlcjpwYXNz'),
])
def test_patterns_are_scrubbed(text: str, leak: str) -> None:
    clean = scrub(text)
    assert leak not in clean and '***' in clean, clean
    assert quick_scrub(text) == clean and quick_scrub(text.upper()) == scrub(text.upper())  # its checks see each one


def test_configured_secrets_are_scrubbed_before_the_cut() -> None:
    text = 'x' * 95 + KEY
    assert scrub(text, [KEY], limit=100) == 'x' * 95 + '***'
    cut = scrub('y' * 90 + KEY + 'z' * 50, [KEY], limit=100)
    assert len(cut) == 100 and cut.endswith('…') and KEY[:5] not in cut  # a naive cut first would keep 'adm1n-K3y'
    assert scrub('a short word', ['a']) == 'a short word'  # too short to be a secret


def test_secrets_of_the_settings_are_every_hidden_field(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in (('OPENAI_ADMIN_KEY', KEY), ('SMTP_PASSWORD', 'smtp-pass-1'), ('API_TOKENS', 'tok-one,tok-two'),
                        ('ALERT_WEBHOOK_URL', 'https://h.test/s/3cr3t'),
                        ('DATABASE_URL', 'postgresql+psycopg://sg:pa55-w0rd@db.test:5432/sg')):
        monkeypatch.setenv(f'SPENDGAUGE_{name}', value)
    settings = Settings()
    secrets = secrets_of(settings)
    assert {KEY, 'smtp-pass-1', 'tok-one', 'tok-two', 'https://h.test/s/3cr3t', 'pa55-w0rd'} <= set(secrets)
    assert not any('db.test' in s for s in secrets), 'of the database URL only the password'


def test_logs_are_scrubbed(caplog: pytest.LogCaptureFixture) -> None:
    handler = logging.Handler()
    records: list[str] = []
    handler.emit = lambda record: records.append(logging.Formatter().format(record))  # type: ignore[method-assign]
    handler.addFilter(ScrubLogs([KEY]))
    log = logging.getLogger('test.scrub')
    log.addHandler(handler)
    try:
        log.warning('pull failed with %s and Bearer %s', KEY, 'live-token-123')
        try:
            raise RuntimeError(f'boom {KEY}')
        except RuntimeError:
            log.exception('failed')
    finally:
        log.removeHandler(handler)
    assert records and not any(KEY in r or 'live-token-123' in r for r in records), records


def test_the_quick_check_passes_clean_text_unscanned_and_misses_no_secret() -> None:
    event = '{"event_id":"e-1","task_id":"task-7","input_tokens":12,"model":"gpt-4o","agent_id":"coder"}'
    assert not might_hold_secrets(event)  # `task-` is not an `sk-` key, `input_tokens` no `token=`
    for text in (event.replace('coder', f'x {KEY}'), 'pa\u017f\u017fword=hunter22', 'x_token: abcdefg',
                 'Token abcdefgh', '{"note": "xoxb-1234567890"}'):
        assert might_hold_secrets(text, [KEY]) and quick_scrub(text, [KEY]) == scrub(text, [KEY]) != text
