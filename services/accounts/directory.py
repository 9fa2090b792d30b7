"""Who is calling: bearer tokens and dashboard users, answered from memory on every request.

The directory reads the tokens and users once and again whenever they change: here (AccountsChanged), in another
process (the bridge's remote notice) or, as a backstop, every RELOAD_S. The API asks it on the event loop
(app/api/deps.py): a lookup is a SHA-256 and a dict read; only the backstop reload reads the database, and the API
runs that on a worker thread first (`due`, `refresh`). A token is recognised by its SHA-256, compared
in constant time by the dict lookup of a hash of a 256-bit secret.
"""
from __future__ import annotations

import hmac
import logging
import threading
import time
from datetime import datetime

from sqlalchemy import Engine

from services.accounts import passwords, tokens, users
from services.core.access import Actor, Role
from services.live.hub import EventHub
from services.live.topics import AccountsChanged, LiveEvent, UsageChanged

log = logging.getLogger(__name__)
RELOAD_S = 30.0
ENV_TOKEN_NAME = 'SPENDGAUGE_API_TOKENS'


class Directory:
    def __init__(self, engine: Engine, env_tokens: tuple[str, ...] = (), hub: EventHub | None = None) -> None:
        self.engine = engine
        self._env_tokens = tuple(t.encode() for t in env_tokens)
        self._tokens: dict[str, Actor] = {}
        self._users = 0
        self._loaded_at = 0.0
        self._lock = threading.Lock()
        self._refreshing = threading.Lock()
        self.reload()
        self._unsubscribe = hub.subscribe(self._on_event) if hub is not None else None

    def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()

    def reload(self) -> None:
        with self.engine.connect() as conn:
            active = tokens.active(conn)
            user_count = users.count(conn)
        with self._lock:
            self._tokens = {digest: Actor(f'token {name}', role) for digest, (_, name, role) in active.items()}
            self._users = user_count
            self._loaded_at = time.monotonic()

    @property
    def due(self) -> bool:
        """Whether the backstop reload is due: an async caller runs `refresh` off its event loop first, so that
        `secured` and `token_actor` answer from memory there."""
        return time.monotonic() - self._loaded_at > RELOAD_S

    def refresh(self) -> None:
        """Reload when due (a database read)."""
        with self._refreshing:  # callers that find it due at once: one reads, the others then find it fresh
            if not self.due:
                return
            try:
                self.reload()
            except Exception as exc:  # the database is away: keep answering from what we know
                log.warning('could not reload tokens and users: %s', type(exc).__name__)
                self._loaded_at = time.monotonic()

    def _fresh(self) -> None:
        if self.due:
            self.refresh()

    def _on_event(self, event: LiveEvent) -> None:
        if isinstance(event, AccountsChanged) or (isinstance(event, UsageChanged) and event.remote):
            self.reload()

    @property
    def secured(self) -> bool:
        """Whether anyone must prove who they are: true once any token or user exists."""
        self._fresh()
        return bool(self._env_tokens or self._tokens or self._users)

    @property
    def has_users(self) -> bool:
        self._fresh()
        return self._users > 0

    def token_actor(self, token: str) -> Actor | None:
        """The actor of a bearer token, None when it is not valid."""
        self._fresh()
        actor = self._tokens.get(tokens.token_hash(token))
        if actor is not None:
            return actor
        given = token.encode()
        if any(hmac.compare_digest(given, known) for known in self._env_tokens):
            return Actor('env token', Role.ADMIN)
        return None

    def session_actor(self, name: str, logged_in_at: datetime) -> Actor | None:
        """The actor of a user logged in at that time; None when the user is gone or their password
        changed since (which logs out every session)."""
        with self.engine.connect() as conn:
            found = users.credentials(conn, name)
        if found is None or found.password_changed_at > logged_in_at:
            return None
        return Actor(name, found.role)

    def login(self, name: str, password: str) -> Actor | None:
        """The user's actor when the password is right. Takes as long for an unknown name (argon2 on a dummy)."""
        with self.engine.connect() as conn:
            found = users.credentials(conn, name)
        if found is None:
            passwords.verify_password(passwords.dummy_hash(), password)
            return None
        if not passwords.verify_password(found.password_hash, password):
            return None
        return Actor(name, found.role)
