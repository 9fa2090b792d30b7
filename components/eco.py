"""What the eco-mode switch does, in words beside it: the webhook it calls (its host only) and what agents do."""
from __future__ import annotations

from urllib.parse import urlsplit

NO_WEBHOOK = 'No webhook is configured (SPENDGAUGE_N8N_WEBHOOK_URL)'


def webhook_host(url: str) -> str:
    """The host (and port) a webhook URL posts to, nothing more: such URLs carry their secret in the path, the
    query or the user info."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        host, port = None, None
    if not host:
        return 'an address that cannot be shown'
    host = f'[{host}]' if ':' in host else host
    return f'{host}:{port}' if port else host


def eco_caption(webhook_url: str) -> str:
    """One line under the switch."""
    told = f'Switching posts to the webhook at {webhook_host(webhook_url)}' if webhook_url else \
        f'{NO_WEBHOOK}: switching only changes what agents read'
    return f'{told}. Agents are expected to use cheaper models and put off optional work while it is on.'


def eco_tooltip(webhook_url: str) -> str:
    posted = (f'Each change POSTs {{eco_mode, reason, spent, limit, at}} to the webhook at '
              f'{webhook_host(webhook_url)}, e.g. an n8n flow that tells the agents which do not ask.') \
        if webhook_url else f'{NO_WEBHOOK}, so a change is posted nowhere.'
    return ('Eco mode blocks nothing by itself: agents read it (GET /api/v1/eco, and eco_mode in every /check '
            'answer) and are expected to save while it is on: cheaper models, shorter answers, optional work put '
            f'off. {posted} A policy with auto_eco switches it on at its soft threshold.')
