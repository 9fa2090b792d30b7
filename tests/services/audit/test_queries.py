"""Reading the trail back on SQLite and PostgreSQL: newest first, keyset pages that neither skip nor repeat rows of
the same instant, the filters, the bounded range, and the admin role."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from services.audit import trail
from services.audit.queries import AuditQuery, list_audit
from services.core.access import Actor, Role
from services.core.errors import Forbidden, Invalid

ADMIN = Actor('ops', Role.ADMIN)
NOW = datetime.now(UTC).replace(microsecond=0)


def add(engine: Engine, at: datetime, actor: str, action: str, target: str = '') -> None:
    with engine.begin() as conn:
        trail.write(conn, trail.AuditEntry(actor, action, target, None, {'n': 1}, at))


def test_pages_by_keyset_newest_first_with_filters(engine: Engine) -> None:
    same = NOW - timedelta(hours=1)
    for i in range(7):  # seven rows of one instant: the id breaks the tie
        add(engine, same, 'alice' if i % 2 else 'bob', 'policies.create' if i < 5 else 'eco.switch', f'policy:{i}')
    add(engine, NOW - timedelta(minutes=1), 'alice', 'policies.delete', 'policy:0')
    add(engine, NOW - timedelta(days=40), 'alice', 'policies.create', 'policy:old')  # before the default 30 days
    with engine.connect() as conn:
        seen, cursor = [], None
        while True:
            page = list_audit(conn, ADMIN, AuditQuery(limit=3, cursor=cursor))
            seen += [r['target'] for r in page['items']]
            cursor = page['next_cursor']
            if cursor is None:
                break
        assert seen == ['policy:0', *(f'policy:{i}' for i in range(6, -1, -1))]
        group = list_audit(conn, ADMIN, AuditQuery(action='policies.*', actor='alice'))['items']
        assert [r['target'] for r in group] == ['policy:0', 'policy:3', 'policy:1']
        exact = list_audit(conn, ADMIN, AuditQuery(action='policies.create', target='policy:4'))['items']
        assert [(r['actor'], r['after']) for r in exact] == [('bob', {'n': 1})]
        old = list_audit(conn, ADMIN, AuditQuery(start=NOW - timedelta(days=41), end=NOW - timedelta(days=39)))
        assert [r['target'] for r in old['items']] == ['policy:old']
        assert list_audit(conn, ADMIN, AuditQuery(action='policies_'))['items'] == []  # a group is `x.`, not a LIKE


@pytest.mark.parametrize(('query', 'message'), [
    (AuditQuery(start=NOW, end=NOW - timedelta(days=1)), 'from: must be before to'),
    (AuditQuery(start=datetime(1999, 1, 1, tzinfo=UTC)), 'from: must be between'),
    (AuditQuery(start=datetime(2001, 1, 1, tzinfo=UTC), end=datetime(2020, 1, 1, tzinfo=UTC)), 'ten years'),
    (AuditQuery(limit=0), 'limit'),
    (AuditQuery(actor='x' * 501), 'actor: at most 500'),
    (AuditQuery(target='policy:\x00'), 'target: contains a NUL character'),
    (AuditQuery(actor='\ud800'), 'actor: contains a lone surrogate'),
    (AuditQuery(cursor='bm90IGEgY3Vyc29y'), 'cursor'),
])
def test_bad_queries_are_refused(engine: Engine, query: AuditQuery, message: str) -> None:
    with engine.connect() as conn, pytest.raises(Invalid, match=message):
        list_audit(conn, ADMIN, query)


def test_only_admins_read_the_trail(engine: Engine) -> None:
    with engine.connect() as conn, pytest.raises(Forbidden, match='admin'):
        list_audit(conn, Actor('viewer', Role.READ), AuditQuery())
