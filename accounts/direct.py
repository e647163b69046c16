"""Statements run on the driver's cursor, inside a SQLAlchemy transaction: compiled once by SQLAlchemy
(the same statement objects, the same SQL), executed without its per-execution work (compiled-cache
lookup, events, result set-up), which was most of the CPU of the hot read ``GET /v1/accounts/{n}``.

:func:`direct` wraps a SQLite connection (whose driver keeps recent statements prepared); others are
returned as they are. A statement with an expanding ``IN`` parameter goes through SQLAlchemy as usual.
"""
from __future__ import annotations

from collections import namedtuple

import sqlalchemy as sa


class Rows:
    """The rows of one statement (the part of SQLAlchemy's ``Result`` the store's reads use)."""

    def __init__(self, rows: list):
        self.rows = rows

    def __iter__(self):
        return iter(self.rows)

    def all(self) -> list:
        return self.rows

    def first(self):
        return self.rows[0] if self.rows else None

    def scalar(self):
        return self.rows[0][0] if self.rows else None

    def scalar_one(self):
        if len(self.rows) != 1:
            raise sa.exc.NoResultFound("expected one row") if not self.rows else sa.exc.MultipleResultsFound("expected one row")
        return self.rows[0][0]


class _Compiled:
    def __init__(self, stmt, dialect):
        c = stmt.compile(dialect=dialect)
        self.compiled, self.sql = c, c.string
        self.expanding = any(b.expanding for b in c.binds.values())
        self.names = c.positiontup or []
        binds = c._bind_processors
        self.binds = [binds.get(n) for n in self.names]
        cols = list(getattr(stmt, "selected_columns", ()))
        self.results = [col.type.dialect_impl(dialect).result_processor(dialect, None) for col in cols]
        self.row = namedtuple("Row", [col.key for col in cols], rename=True) if cols else tuple


class DirectConnection:
    """A SQLAlchemy connection whose statements run on the driver's cursor."""

    _compiled: dict = {}     # (statement, dialect name) → its compiled form

    def __init__(self, conn: sa.Connection):
        self.conn, self.dialect = conn, conn.dialect
        self.cursor = conn.connection.driver_connection.cursor()

    def __getattr__(self, name):
        return getattr(self.conn, name)

    def execute(self, stmt, params: dict | None = None):
        key = (stmt, self.dialect.name)
        c = self._compiled.get(key)
        if c is None:
            c = self._compiled[key] = _Compiled(stmt, self.dialect)
        if c.expanding or not c.compiled.positional:
            return self.conn.execute(stmt, params or {})
        values = c.compiled.construct_params(params or {})
        args = [v if f is None else f(v) for v, f in zip((values[n] for n in c.names), c.binds)]
        rows = self.cursor.execute(c.sql, args).fetchall()
        if any(c.results):
            rows = [tuple(v if f is None else f(v) for v, f in zip(r, c.results)) for r in rows]
        return Rows([c.row(*r) for r in rows] if c.row is not tuple else rows)


def direct(conn: sa.Connection):
    """``conn`` with its statements on the driver's cursor (SQLite), or ``conn`` itself."""
    return DirectConnection(conn) if conn.dialect.name == "sqlite" else conn
