"""What operators change from a terminal, through the same commands as the dashboard and the API: eco mode,
pausing agents, alerts and the agent thresholds."""
from __future__ import annotations

import argparse
from decimal import Decimal
from typing import Any

from app.cli.args import client_options, usd
from app.cli.backends import Backend
from app.cli.output import table
from services.core.display import format_usd

ALERT_ACTIONS = ('list', 'ack', 'resolve')  # `alerts` alone lists (app/cli/main.py)


def register(sub: Any) -> None:
    eco = sub.add_parser('eco', help='show eco mode, or switch it on or off',
                         description='Agents read eco mode from /api/v1/eco and /check; each change is sent to the '
                                     'n8n webhook (SPENDGAUGE_N8N_WEBHOOK_URL).')
    client_options(eco)
    eco.add_argument('switch', nargs='?', choices=['on', 'off'], help='omit to show the current state')
    eco.add_argument('--reason', default='cli', help='why (kept with the change and sent to the webhook)')
    eco.set_defaults(run=cmd_eco)

    agent = sub.add_parser('agent', help='pause or resume an agent (a paused agent is blocked at every check)')
    actions = agent.add_subparsers(dest='agent_command', required=True)
    for name in ('pause', 'resume'):
        action = actions.add_parser(name, help=f'{name} an agent the ledger has seen')
        client_options(action)
        action.add_argument('agent_id')
        action.set_defaults(run=cmd_agent)

    alerts = sub.add_parser('alerts', help='list (the default), acknowledge or resolve alerts',
                            description='`spendgauge alerts` alone lists the open alerts, as `alerts list` does.')
    actions = alerts.add_subparsers(dest='alerts_command', required=True)
    listing = actions.add_parser('list', help='open alerts, newest first (--all for every one)')
    client_options(listing)
    listing.add_argument('--all', action='store_true')
    listing.set_defaults(run=cmd_alerts_list)
    ack = actions.add_parser('ack', help='acknowledge an alert')
    client_options(ack)
    ack.add_argument('alert_id', type=int)
    ack.add_argument('--by', default='cli', help='who acknowledges it (default cli)')
    ack.set_defaults(run=cmd_alert_change)
    resolve = actions.add_parser('resolve', help='resolve an alert')
    client_options(resolve)
    resolve.add_argument('alert_id', type=int)
    resolve.set_defaults(run=cmd_alert_change)

    thresholds = sub.add_parser('thresholds', help="show or set the thresholds every agent is held to (the "
                                                   "dashboard's Budget settings)")
    client_options(thresholds)
    thresholds.add_argument('--session', type=usd, metavar='USD', help='per agent and session')
    thresholds.add_argument('--day', type=usd, metavar='USD', help='per agent and day')
    thresholds.add_argument('--pause', action=argparse.BooleanOptionalAction, default=None,
                            help='pause an agent that crosses one')
    thresholds.add_argument('--clear', action='store_true', help='remove both thresholds')
    thresholds.set_defaults(run=cmd_thresholds)


def cmd_eco(args: argparse.Namespace, backend: Backend) -> int:
    state = backend.eco() if args.switch is None else backend.set_eco(args.switch == 'on', args.reason)
    since = f' since {state["changed_at"][:16].replace("T", " ")} UTC ({state["reason"]})' if state['changed_at'] \
        else ' (never switched)'
    print(f'eco mode {"on" if state["eco_mode"] else "off"}{since}')
    return 0


def cmd_agent(args: argparse.Namespace, backend: Backend) -> int:
    paused = args.agent_command == 'pause'
    backend.set_paused(args.agent_id, paused)
    print(f'{args.agent_id} {"paused: its checks are blocked" if paused else "resumed"}')
    return 0


def cmd_alerts_list(args: argparse.Namespace, backend: Backend) -> int:
    items = backend.alerts('all' if args.all else 'open')
    rows = [{'id': a['id'], 'severity': a['severity'], 'type': a['type'], 'last seen': a['last_seen_at'][:16],
             'state': 'resolved' if a['resolved_at'] else 'acknowledged' if a['acknowledged_at'] else 'open',
             'message': a['message'][:80]} for a in items]
    print(table(rows, ['id', 'severity', 'type', 'last seen', 'state', 'message'], empty='(no alerts)'))
    return 0


def cmd_alert_change(args: argparse.Namespace, backend: Backend) -> int:
    if args.alerts_command == 'ack':
        alert = backend.acknowledge(args.alert_id, args.by)
        print(f'alert {alert["id"]} acknowledged by {alert["acknowledged_by"]}')
    else:
        alert = backend.resolve(args.alert_id)
        print(f'alert {alert["id"]} resolved')
    return 0


def cmd_thresholds(args: argparse.Namespace, backend: Backend) -> int:
    current = backend.thresholds()
    changing = args.clear or args.session is not None or args.day is not None or args.pause is not None
    if changing:
        def keep(name: str) -> Decimal | None:
            kept = current[f'{name}_threshold_usd']
            return None if args.clear or kept is None else Decimal(kept)
        session = args.session if args.session is not None else keep('session')
        day = args.day if args.day is not None else keep('day')
        current = backend.set_thresholds(session, day, current['pause'] if args.pause is None else args.pause)
    parts = [f'{format_usd(current[f"{name}_threshold_micros"])} per agent and {name}'
             for name in ('session', 'day') if current[f'{name}_threshold_micros'] is not None]
    if not parts:
        print('no agent thresholds')
        return 0
    print(f'{"; ".join(parts)}{"; an agent that crosses one is paused" if current["pause"] else ""}')
    return 0
