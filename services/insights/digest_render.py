"""The daily digest (services/insights/digest.py) as people read it: a subject line, plain text, HTML for e-mail
(every value escaped, inline styles only, no images), Slack Block Kit blocks, and the generic webhook's JSON.
Pure functions: a digest in, a string or a dict out."""
from __future__ import annotations

from html import escape
from typing import Any

from services.core.display import format_usd, format_usd_all, plural
from services.insights.digest import DigestAlert, DigestOut, DigestSaving, DigestSpend

SLACK_HEADER_MAX = 150  # Block Kit: a header's plain text
SLACK_TEXT_MAX = 2900  # a section's text is at most 3000 characters
NO_AGENT = '(no agent)'


def _spent_line(d: DigestOut) -> str:
    if d['limit_micros'] is None:
        return f'{format_usd(d["spent_micros"])} (no day limit)'
    spent, limit = format_usd_all([d['spent_micros'], d['limit_micros']])
    return f'{spent} of {limit} ({d["percent"]} % of the day limit)'


def subject(d: DigestOut) -> str:
    return f'[SpendGauge] Daily digest {d["day"]}: {_spent_line(d)}'


def _spend_rows(items: list[DigestSpend]) -> list[tuple[str, str, str]]:
    """(name, cost, requests) with the costs on the same places."""
    costs = format_usd_all([i['cost_micros'] for i in items])
    return [(i['name'] or NO_AGENT, cost, plural(i['requests'], 'request')) for i, cost in zip(items, costs,
                                                                                              strict=True)]


def _alert_line(a: DigestAlert) -> str:
    return f'[{a["severity"]}] {a["type"]} at {a["created_at"][11:16]} UTC: {a["message"]}'


def _forecast_line(d: DigestOut) -> str:
    f = d['forecast']
    return f'Today ({f["day"]}): {f["text"]}'


def _saving_line(s: DigestSaving) -> str:
    agent = s['agent_id'] or NO_AGENT
    month = f', ~{format_usd(s["saving_per_month_micros"])} a month' if s['saving_per_month_micros'] else ''
    share = f' ({s["saving_percent"]} %)' if s['saving_percent'] is not None else ''
    return (f'{agent} on {s["provider"]}:{s["model"]} instead of {", ".join(s["models"])} would have cost '
            f'{format_usd(s["saving_micros"])} less{share}{month}')


def _more(shown: int, total: int) -> str:
    return f'… and {total - shown} more' if total > shown else ''


def digest_text(d: DigestOut) -> str:
    lines = [f'SpendGauge daily digest for {d["day"]} ({d["timezone"]})', '',
             f'Spent: {_spent_line(d)}, {plural(d["requests"], "request")}']
    for title, items in (('Top agents', d['top_agents']), ('Top models', d['top_models'])):
        lines.append(f'{title}:' if items else f'{title}: none')
        rows = _spend_rows(items)
        width = max((len(name) for name, _, _ in rows), default=0)
        lines += [f'  {name:<{width}}  {cost:>10}  {requests}' for name, cost, requests in rows]
    for title, raised, total in (('Alerts', d['alerts'], d['alerts_count']),
                                 ('Anomalies', d['anomalies'], d['anomalies_count'])):
        lines.append(f'{title} ({total}):' if total else f'{title}: none')
        lines += [f'  {_alert_line(a)}' for a in raised]
        if more := _more(len(raised), total):
            lines.append(f'  {more}')
    lines.append(_forecast_line(d))
    saving = d['saving']
    if saving is None:
        lines.append("Biggest saving: none found (no cheaper model for the day's calls)")
    else:
        lines += [f'Biggest saving: {_saving_line(saving)}', f'  {saving["note"]}']
    return '\n'.join(lines) + '\n'


# --- HTML (e-mail) ----------------------------------------------------------------------------------------------

_BOX = 'font-family:Arial,Helvetica,sans-serif;color:#1f2937;max-width:640px;margin:0 auto;padding:16px'
_H1 = 'font-size:20px;margin:0 0 4px 0;color:#111827'
_H2 = 'font-size:15px;margin:18px 0 6px 0;color:#374151'
_MUTED = 'color:#6b7280;font-size:12px;margin:0'
_CELL = 'padding:4px 8px;border-bottom:1px solid #e5e7eb;font-size:14px'
_NUM = _CELL + ';text-align:right;white-space:nowrap'
_BAR_BACK = 'background:#e5e7eb;border-radius:4px;height:10px;width:100%'
SEVERITY_COLOURS = {'critical': '#b91c1c', 'warning': '#b45309', 'info': '#1d4ed8'}


def _bar(percent: float | None) -> str:
    if percent is None:
        return ''
    width = max(0.0, min(100.0, percent))
    colour = '#b91c1c' if percent >= 100 else '#b45309' if percent >= 80 else '#15803d'
    return (f'<div style="{_BAR_BACK}"><div style="background:{colour};border-radius:4px;height:10px;'
            f'width:{width:.1f}%"></div></div>')


def _table(rows: list[tuple[str, str, str]]) -> str:
    cells = ''.join(f'<tr><td style="{_CELL}">{escape(name)}</td><td style="{_NUM}">{escape(cost)}</td>'
                    f'<td style="{_NUM}">{escape(requests)}</td></tr>' for name, cost, requests in rows)
    return f'<table style="border-collapse:collapse;width:100%">{cells}</table>' if rows else \
        f'<p style="{_MUTED}">none</p>'


def _alert_list(items: list[DigestAlert], total: int) -> str:
    if not total:
        return f'<p style="{_MUTED}">none</p>'
    entries = ''.join(
        f'<li style="margin:2px 0;font-size:14px"><b style="color:{SEVERITY_COLOURS.get(a["severity"], "#374151")}">'
        f'{escape(a["severity"])}</b> {escape(a["type"])} at {escape(a["created_at"][11:16])} UTC: '
        f'{escape(a["message"])}</li>' for a in items)
    more = _more(len(items), total)
    return f'<ul style="margin:0;padding-left:18px">{entries}</ul>' + (f'<p style="{_MUTED}">{escape(more)}</p>'
                                                                        if more else '')


def digest_html(d: DigestOut) -> str:
    """A whole HTML document for the e-mail's HTML part: escaped values, inline styles, nothing fetched."""
    saving = d['saving']
    saving_html = (f'<p style="font-size:14px;margin:0">{escape(_saving_line(saving))}</p>'
                   f'<p style="{_MUTED}">{escape(saving["note"])}</p>') if saving else \
        f'<p style="{_MUTED}">none found (no cheaper model for the day\'s calls)</p>'
    body = (
        f'<div style="{_BOX}">'
        f'<h1 style="{_H1}">SpendGauge daily digest</h1>'
        f'<p style="{_MUTED}">{escape(d["day"])} ({escape(d["timezone"])})</p>'
        f'<h2 style="{_H2}">Spent</h2>'
        f'<p style="font-size:16px;margin:0 0 6px 0"><b>{escape(_spent_line(d))}</b>, '
        f'{escape(plural(d["requests"], "request"))}</p>{_bar(d["percent"])}'
        f'<h2 style="{_H2}">Top agents</h2>{_table(_spend_rows(d["top_agents"]))}'
        f'<h2 style="{_H2}">Top models</h2>{_table(_spend_rows(d["top_models"]))}'
        f'<h2 style="{_H2}">Alerts ({d["alerts_count"]})</h2>{_alert_list(d["alerts"], d["alerts_count"])}'
        f'<h2 style="{_H2}">Anomalies ({d["anomalies_count"]})</h2>'
        f'{_alert_list(d["anomalies"], d["anomalies_count"])}'
        f'<h2 style="{_H2}">Today</h2><p style="font-size:14px;margin:0">{escape(_forecast_line(d))}</p>'
        f'<h2 style="{_H2}">Biggest saving</h2>{saving_html}'
        '</div>')
    return ('<!DOCTYPE html><html><head><meta charset="utf-8">'
            f'<title>{escape(subject(d))}</title></head><body style="margin:0;background:#ffffff">{body}</body></html>')


# --- Slack and the generic webhook ------------------------------------------------------------------------------

def _slack_escape(text: str) -> str:
    """Slack's mrkdwn control characters: &, < and > (a `<` would start a link or a mention)."""
    return text.replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;')


def _field(title: str, text: str) -> dict[str, str]:
    return {'type': 'mrkdwn', 'text': f'*{title}*\n{_slack_escape(text)}'[:2000]}


def digest_slack_blocks(d: DigestOut) -> list[dict[str, Any]]:
    """Block Kit: a header, a section of fields (spent, today, top agents, top models), a section of the alerts and
    anomalies, one of the saving, and a context line."""
    def spend_list(items: list[DigestSpend]) -> str:
        return '\n'.join(f'{name}: {cost}' for name, cost, _ in _spend_rows(items)) or 'none'

    fields = [_field('Spent', f'{_spent_line(d)}, {plural(d["requests"], "request")}'),
              _field(f'Today ({d["forecast"]["day"]})', d['forecast']['text']),
              _field('Top agents', spend_list(d['top_agents'])),
              _field('Top models', spend_list(d['top_models']))]
    happened = [f'*Alerts ({d["alerts_count"]})*'] + [f'• {_slack_escape(_alert_line(a))}' for a in d['alerts']]
    happened += [_more(len(d['alerts']), d['alerts_count'])]
    happened += [f'*Anomalies ({d["anomalies_count"]})*'] + [f'• {_slack_escape(_alert_line(a))}'
                                                             for a in d['anomalies']]
    happened += [_more(len(d['anomalies']), d['anomalies_count'])]
    saving = d['saving']
    saving_text = _slack_escape(_saving_line(saving)) if saving else 'none found'
    context = saving['note'] if saving else 'SpendGauge: the spend of the day against its limit.'
    header = f'SpendGauge daily digest {d["day"]}'[:SLACK_HEADER_MAX]
    return [
        {'type': 'header', 'text': {'type': 'plain_text', 'text': header}},
        {'type': 'section', 'fields': fields},
        {'type': 'section', 'text': {'type': 'mrkdwn',
                                     'text': '\n'.join(line for line in happened if line)[:SLACK_TEXT_MAX]}},
        {'type': 'section', 'text': {'type': 'mrkdwn', 'text': f'*Biggest saving*\n{saving_text}'[:SLACK_TEXT_MAX]}},
        {'type': 'context', 'elements': [{'type': 'mrkdwn', 'text': _slack_escape(context)}]},
    ]


def digest_slack_body(d: DigestOut) -> dict[str, Any]:
    """What a Slack incoming webhook is sent: the blocks, and `text` for notifications and old clients."""
    return {'text': _slack_escape(subject(d)), 'blocks': digest_slack_blocks(d)}


def digest_webhook_body(d: DigestOut) -> dict[str, Any]:
    """What a generic webhook is sent (as alerts are: {'source', 'kind', <kind>})."""
    return {'source': 'spendgauge', 'kind': 'digest', 'digest': dict(d)}


def digest_payloads(d: DigestOut) -> dict[str, dict[str, Any]]:
    """What each channel's delivery row stores and sends (services/alerting/notify.py queue_digest): rendered once,
    so a retry sends exactly what the first attempt did."""
    title, text = subject(d), digest_text(d)
    return {'log': {'day': d['day'], 'subject': title, 'text': text},
            'email': {'day': d['day'], 'subject': title, 'text': text, 'html': digest_html(d)},
            'slack': {'day': d['day'], 'body': digest_slack_body(d)},
            'webhook': {'day': d['day'], 'body': digest_webhook_body(d)}}
