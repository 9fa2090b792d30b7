"""The daily digest on SQLite and PostgreSQL: calls recorded through the ledger (priced at ingest) around a local day
in Berlin, alerts of that day and of others, a day limit; and the renderers on a hand-made digest."""
from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine

from services.alerting import alerts
from services.budget import limits
from services.core.context import BudgetContext
from services.core.errors import Invalid
from services.core.periods import Period
from services.insights.digest import DigestAlert, DigestOut, build_digest, day_key, parse_day
from services.insights.digest_render import (
    digest_html,
    digest_payloads,
    digest_slack_blocks,
    digest_text,
    digest_webhook_body,
    subject,
)
from services.insights.forecast import budget_forecast
from services.insights.optimize import NOTE, optimize
from services.usage.ledger import Ledger

ZONE = ZoneInfo('Europe/Berlin')
BUDGET = BudgetContext(ZONE)
DAY = date(2026, 3, 10)  # CET: the local day is 2026-03-09 23:00 .. 2026-03-10 23:00 UTC
NOW = datetime(2026, 3, 11, 7, 0, tzinfo=UTC)  # 08:00 in Berlin, the next morning
NASTY = '<script>alert("x")</script>'
LIMIT = 2_000_000
SUBSTITUTES = (('openai', 'gpt-4o-mini'),)


def local(day: date, hour: int, minute: int = 0) -> str:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=ZONE).isoformat()


def record(ledger: Ledger, agent: str, model: str, ts: str, tokens_in: int, tokens_out: int) -> int:
    [result] = ledger.record_batch([{'event_id': f'{agent}-{ts}', 'agent_id': agent, 'provider': 'openai',
                                     'model': model, 'ts': ts, 'input_tokens': tokens_in,
                                     'output_tokens': tokens_out}])
    assert result.status == 'stored' and result.cost_source == 'priced', result
    return result.cost_micros or 0


def seed(ledger: Ledger) -> dict[str, int]:
    """What the ledger charged each agent on DAY, and calls on the days around it that must not count."""
    charged = {
        'planner': sum(record(ledger, 'planner', 'gpt-4o', local(DAY, h, m), 120_000, 4_000)
                       for h, m in ((0, 0), (11, 0), (23, 59))),  # both ends of the local day
        'coder': record(ledger, 'coder', 'gpt-4o-mini', local(DAY, 12), 200_000, 10_000),
        NASTY: record(ledger, NASTY, 'gpt-4o', local(DAY, 13), 30_000, 1_000),
        'tiny': record(ledger, 'tiny', 'gpt-4o-mini', local(DAY, 14), 1_000, 10),
    }
    record(ledger, 'planner', 'gpt-4o', local(DAY - timedelta(days=1), 23, 59), 900_000, 9_000)  # the day before
    record(ledger, 'late', 'gpt-4o', local(DAY + timedelta(days=1), 0, 0), 100_000, 1_000)  # today, 00:00
    with ledger.engine.begin() as conn:
        limits.set_limit(conn, 'day', LIMIT)
        at = datetime.fromisoformat(local(DAY, 9)).astimezone(UTC)
        alerts.raise_alert(conn, 'anomaly', 'critical', 'planner spent $9 in the last hour', 'anomaly:planner',
                           {'agent_id': 'planner'}, now=at)
        alerts.raise_alert(conn, 'threshold_warning', 'warning', 'Daily budget at 80 %', 'threshold:day', {},
                           now=at + timedelta(hours=3))
        alerts.raise_alert(conn, 'anomaly', 'warning', 'yesterday anomaly', 'anomaly:old', {},
                           now=at - timedelta(days=1))
        alerts.raise_alert(conn, 'sync_failure', 'warning', 'today sync failure', 'sync:x', {},
                           now=NOW - timedelta(minutes=5))
    return charged


def test_the_digest_of_a_day_has_the_known_figures(ledger: Ledger) -> None:
    charged = seed(ledger)
    with ledger.engine.connect() as conn:
        out = build_digest(conn, BUDGET, ledger.pricer, SUBSTITUTES, DAY, NOW)
        dashboard = budget_forecast(conn, BUDGET, NOW)['day']
        optimised = optimize(conn, ledger.pricer, Period('day', datetime.fromisoformat(out['start']),
                                                         datetime.fromisoformat(out['end'])), ZONE, SUBSTITUTES,
                             now=NOW)
    spent = sum(charged.values())
    assert (out['day'], out['timezone']) == ('2026-03-10', 'Europe/Berlin')
    assert (out['start'], out['end']) == ('2026-03-09T23:00:00+00:00', '2026-03-10T23:00:00+00:00')
    assert (out['spent_micros'], out['requests'], out['limit_micros']) == (spent, 6, LIMIT)
    assert out['percent'] == round(100 * spent / LIMIT, 1)
    ranked = sorted(charged.items(), key=lambda kv: -kv[1])
    assert [(a['name'], a['cost_micros']) for a in out['top_agents']] == ranked[:3]
    assert out['top_agents'][0]['requests'] == 3
    gpt_4o = charged['planner'] + charged[NASTY]
    mini = charged['coder'] + charged['tiny']
    assert [(m['name'], m['cost_micros']) for m in out['top_models']] == \
        sorted([('openai:gpt-4o', gpt_4o), ('openai:gpt-4o-mini', mini)], key=lambda kv: -kv[1])
    # the alerts opened that day, anomalies apart; not the day before's, not today's
    assert [(a['type'], a['message']) for a in out['alerts']] == [('threshold_warning', 'Daily budget at 80 %')]
    assert [a['message'] for a in out['anomalies']] == ['planner spent $9 in the last hour']
    assert (out['alerts_count'], out['anomalies_count']) == (1, 1)
    # today's forecast is the dashboard's
    forecast = out['forecast']
    assert forecast['day'] == '2026-03-11'
    assert (forecast['spent_micros'], forecast['projected_micros'], forecast['text']) == \
        (dashboard['spent_micros'], dashboard['projected_micros'], dashboard['text'])
    assert forecast['spent_micros'] > 0, "today's 00:00 call"
    # the biggest saving: the largest positive one among every agent's candidates
    best = max(((a, c) for a in optimised['agents'] for c in a['candidates']), key=lambda ac: ac[1]['saving_micros'])
    saving = out['saving']
    assert saving is not None and best[1]['saving_micros'] > 0
    assert (saving['agent_id'], saving['provider'], saving['model'], saving['saving_micros']) == \
        (best[0]['agent_id'], best[1]['provider'], best[1]['model'], best[1]['saving_micros'])
    assert saving['agent_id'] == 'planner' and saving['models'] == ['openai:gpt-4o']
    assert saving['saving_per_month_micros'] == saving['saving_micros'] * 30  # one whole day observed
    assert saving['note'] == NOTE


def test_a_quiet_day_has_nothing_to_say(ledger: Ledger) -> None:
    with ledger.engine.connect() as conn:
        out = build_digest(conn, BUDGET, ledger.pricer, (), DAY, NOW)
    assert (out['spent_micros'], out['requests'], out['top_agents'], out['top_models']) == (0, 0, [], [])
    assert (out['alerts'], out['anomalies'], out['saving']) == ([], [], None)
    assert 'Biggest saving: none found' in digest_text(out)


def test_the_day_is_yesterday_by_default_and_bounded(engine: Engine) -> None:
    with engine.connect() as conn:
        assert build_digest(conn, BUDGET, ledger_pricer(), (), None, NOW)['day'] == '2026-03-10'
    assert parse_day(None, NOW, ZONE) == DAY
    assert parse_day('2026-03-11', NOW, ZONE) == date(2026, 3, 11)  # today, so far
    for text, message in (('2026-03-12', 'in the future'), ('1999-12-31', '2000-01-01 or later'),
                          ('10.03.2026', 'not a date')):
        with pytest.raises(Invalid, match=message):
            parse_day(text, NOW, ZONE)
    assert day_key(DAY) == 20260310


def ledger_pricer() -> Any:
    from services.usage.pricing import Pricer

    return Pricer()


# --- the renderers ----------------------------------------------------------------------------------------------

def made(**changes: Any) -> DigestOut:
    alert: DigestAlert = {'id': 7, 'type': 'threshold_warning', 'severity': 'warning',
                          'message': 'over 80 % & <b>rising</b>', 'created_at': '2026-03-10T11:00:00+00:00'}
    digest: DigestOut = {
        'day': '2026-03-10', 'timezone': 'Europe/Berlin', 'start': '2026-03-09T23:00:00+00:00',
        'end': '2026-03-10T23:00:00+00:00', 'generated_at': '2026-03-11T07:00:00+00:00',
        'spent_micros': 4_200_000, 'spent_usd': '4.200000', 'requests': 123, 'limit_micros': 5_000_000,
        'limit_usd': '5.000000', 'percent': 84.0,
        'top_agents': [{'name': NASTY, 'cost_micros': 3_000_000, 'cost_usd': '3.000000', 'requests': 80},
                       {'name': None, 'cost_micros': 1_200_000, 'cost_usd': '1.200000', 'requests': 43}],
        'top_models': [{'name': 'openai:gpt-4o', 'cost_micros': 4_200_000, 'cost_usd': '4.200000', 'requests': 123}],
        'alerts': [alert], 'alerts_count': 3, 'anomalies': [], 'anomalies_count': 0,
        'forecast': {'day': '2026-03-11', 'spent_micros': 1_000_000, 'spent_usd': '1.000000',
                     'projected_micros': 6_000_000, 'projected_usd': '6.000000', 'limit_micros': 5_000_000,
                     'limit_usd': '5.000000', 'state': 'exhausts', 'eta': '16:45',
                     'text': 'Budget exhausted at ~16:45'},
        'saving': {'agent_id': NASTY, 'models': ['openai:gpt-4o'], 'provider': 'openai', 'model': 'gpt-4o-mini',
                   'kind': 'cheaper_tier', 'saving_micros': 2_800_000, 'saving_usd': '2.800000',
                   'saving_percent': 93.3, 'saving_per_month_micros': 84_000_000, 'saving_per_month_usd': '84.000000',
                   'note': NOTE}}
    return {**digest, **changes}  # type: ignore[typeddict-item]


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_text_says_it_all_in_lines() -> None:
    text = digest_text(made())
    assert text.splitlines()[:3] == ['SpendGauge daily digest for 2026-03-10 (Europe/Berlin)', '',
                                     'Spent: $4.20 of $5.00 (84.0 % of the day limit), 123 requests']
    rows = [line.split() for line in text.splitlines()[4:6]]
    assert rows == [[NASTY, '$3.00', '80', 'requests'], ['(no', 'agent)', '$1.20', '43', 'requests']]
    assert 'Alerts (3):\n  [warning] threshold_warning at 11:00 UTC: over 80 % & <b>rising</b>\n  … and 2 more' in text
    assert 'Anomalies: none' in text
    assert 'Today (2026-03-11): Budget exhausted at ~16:45' in text
    assert (f'Biggest saving: {NASTY} on openai:gpt-4o-mini instead of openai:gpt-4o would have cost $2.80 less '
            '(93.3 %), ~$84.00 a month') in text
    assert subject(made()) == '[SpendGauge] Daily digest 2026-03-10: $4.20 of $5.00 (84.0 % of the day limit)'
    assert subject(made(limit_micros=None, percent=None)).endswith('$4.20 (no day limit)')


def test_html_escapes_every_value_and_fetches_nothing() -> None:
    html = digest_html(made())
    parser = Tags()
    parser.feed(html)
    tags = {tag for tag, _ in parser.tags}
    assert 'script' not in tags and not tags & {'img', 'link', 'iframe', 'object', 'a', 'style'}
    assert all(set(attrs) <= {'style', 'charset'} for _, attrs in parser.tags), 'inline styles only'
    assert not any('url(' in (attrs.get('style') or '') for _, attrs in parser.tags)
    assert '&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;' in html and '<b>rising' not in html
    shown = ''.join(parser.text)
    assert NASTY in shown and 'over 80 % & <b>rising</b>' in shown  # as text, unescaped by the reader
    assert 'Budget exhausted at ~16:45' in shown and '$84.00 a month' in shown


def test_slack_blocks_have_the_block_kit_shape() -> None:
    blocks = digest_slack_blocks(made())
    assert [b['type'] for b in blocks] == ['header', 'section', 'section', 'section', 'context']
    header = blocks[0]['text']
    assert header == {'type': 'plain_text', 'text': 'SpendGauge daily digest 2026-03-10'}
    fields = blocks[1]['fields']
    assert 1 <= len(fields) <= 10 and all(f['type'] == 'mrkdwn' and len(f['text']) <= 2000 for f in fields)
    assert fields[0]['text'] == '*Spent*\n$4.20 of $5.00 (84.0 % of the day limit), 123 requests'
    agents = fields[2]['text']
    assert '&lt;script&gt;' in agents and '<script>' not in agents, "Slack's mrkdwn escaping"
    assert 'over 80 % &amp; &lt;b&gt;rising&lt;/b&gt;' in blocks[2]['text']['text']
    assert blocks[4]['elements'][0]['text'] == NOTE
    json.dumps(blocks)  # plain JSON


def test_the_webhook_and_the_stored_payloads() -> None:
    digest = made()
    assert digest_webhook_body(digest) == {'source': 'spendgauge', 'kind': 'digest', 'digest': digest}
    payloads = digest_payloads(digest)
    assert set(payloads) == {'log', 'email', 'slack', 'webhook'}
    assert payloads['email']['html'] == digest_html(digest) and payloads['email']['text'] == digest_text(digest)
    assert payloads['slack']['body']['blocks'] == digest_slack_blocks(digest)
    assert payloads['slack']['body']['text'].startswith('[SpendGauge] Daily digest 2026-03-10')
    json.dumps(payloads)
