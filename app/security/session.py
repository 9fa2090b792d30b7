"""Who is logged in to this browser session: NiceGUI's per-user storage (server side, keyed by the signed session
cookie) holds the user's name and when they logged in; the directory says whether that still holds."""
from __future__ import annotations

from datetime import UTC, datetime

from nicegui import app

from app import runtime
from services.core.access import Actor, Role
from services.core.errors import Forbidden

AUTH_KEY = 'auth'
LOCAL = Actor('dashboard', Role.ADMIN)  # no token and no user exists: a loopback server for one developer


def log_in(actor: Actor) -> None:
    app.storage.user[AUTH_KEY] = {'name': actor.name, 'at': datetime.now(UTC).isoformat()}


def log_out() -> None:
    app.storage.user.pop(AUTH_KEY, None)


def login_required() -> bool:
    rt = runtime.running()
    return rt is not None and rt.accounts.secured


def session_actor() -> Actor | None:
    """The actor of this browser session: LOCAL while nothing is secured, the logged-in user, or None."""
    rt = runtime.running()
    if rt is None or not rt.accounts.secured:
        return LOCAL
    auth = app.storage.user.get(AUTH_KEY)
    if not isinstance(auth, dict):
        return None
    try:
        return rt.accounts.session_actor(str(auth['name']), datetime.fromisoformat(auth['at']))
    except (KeyError, TypeError, ValueError):
        return None


def page_actor() -> Actor:
    """Who acts from this page, asked when the action is carried out (a logged-out tab can change nothing)."""
    actor = session_actor()
    if actor is None:
        raise Forbidden('log in to change anything')
    return actor


def can_change() -> bool:
    """Whether this session may change state: controls are shown disabled otherwise (the commands refuse anyway)."""
    actor = session_actor()
    return actor is not None and actor.may(Role.ADMIN)


def identity() -> tuple[str, str] | None:
    """(name, role) of the logged-in user for the page header; None while no login is used."""
    actor = session_actor()
    return None if actor is None or actor is LOCAL else (actor.name, actor.role.value)
