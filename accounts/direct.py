"""Statements run on the driver's cursor, inside a SQLAlchemy transaction: compiled once by SQLAlchemy
(the same statement objects, the same SQL), executed without its per-execution work (compiled-cache
lookup, events, result set-up), which was most of the CPU of the hot read ``GET /v1/accounts/{n}``.

:func:`direct` wraps a SQLite connection (whose driver keeps recent statements prepared); others are
returned as they are. A statement with an expanding ``IN`` parameter goes through SQLAlchemy as usual.

:func:`reading` is the hot read's transaction: on SQLite a connection of its own per thread, kept
open, whose read transaction is a plain ``BEGIN`` … ``COMMIT`` on the driver (no pool check-out,
no SQLAlchemy transaction or events per read); elsewhere :meth:`Store.read` with :func:`direct`.
"""
from __future__ import annotations

import contextlib
import os
import threading
import weakref
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
    """A SQLAlchemy connection whose statements run on the driver's cursor (``conn`` None: the
    driver's ``cursor`` alone, which runs no statement with an expanding parameter)."""

    _compiled: dict = {}     # (statement, dialect name) → its compiled form

    def __init__(self, conn: sa.Connection | None, cursor=None, dialect=None):
        self.conn, self.dialect = conn, dialect or conn.dialect
        self.cursor = cursor or conn.connection.driver_connection.cursor()

    def __getattr__(self, name):
        return getattr(self.conn, name)

    def execute(self, stmt, params: dict | None = None):
        key = (stmt, self.dialect.name)
        c = self._compiled.get(key)
        if c is None:
            c = self._compiled[key] = _Compiled(stmt, self.dialect)
        if c.expanding or not c.compiled.positional:
            if self.conn is None:
                raise TypeError("a statement with an expanding parameter needs a SQLAlchemy connection")
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


@contextlib.contextmanager
def reading(store):
    """A read-only transaction of ``store`` for the hot read, as a :class:`DirectConnection` (SQLite)
    or a SQLAlchemy connection. SQLite: this thread's own connection, kept open (closed by
    ``store.close()``), ``BEGIN`` … ``COMMIT`` on the driver; a read inside another of the same
    thread takes :meth:`Store.read`."""
    if store.engine.dialect.name != "sqlite":
        with store.read() as conn:
            yield conn
        return
    r = _reader(store)
    if r is None:
        with store.read() as conn:
            yield direct(conn)
        return
    cur = r.cursor
    r.busy = True
    try:
        cur.execute("BEGIN")
        try:
            yield r
        finally:
            cur.execute("COMMIT")
    finally:
        r.busy = False


class _Readers:
    """The hot read's connections of one store: one per thread of this process."""

    def __init__(self):
        # a thread's reader goes with its thread; those still open are closed by store.close()
        self.mine, self.opened, self.lock = threading.local(), weakref.WeakSet(), threading.Lock()


def _reader(store) -> DirectConnection | None:
    """This thread's reader of ``store`` (None: it is in use)."""
    readers = store.cache.get("readers")
    if readers is None:
        readers = store.cache["readers"] = _Readers()
        store.closers.append(lambda: _close_readers(store, readers))
    r = getattr(readers.mine, "reader", None)
    if r is not None and r.pid == os.getpid():
        return None if r.busy else r
    # the thread's first read (or a forked child's: the parent's connection is left alone)
    raw = store.engine.raw_connection()
    driver = raw.driver_connection
    raw.detach()                        # the pool's connect set-up done (WAL, busy timeout), then its own
    r = readers.mine.reader = DirectConnection(None, driver.cursor(), store.engine.dialect)
    r.busy, r.pid, r.driver = False, os.getpid(), driver
    with readers.lock:
        readers.opened.add(r)
    return r


def _close_readers(store, readers: _Readers) -> None:
    if store.cache.get("readers") is readers:
        del store.cache["readers"]
    with readers.lock:
        mine = [r for r in readers.opened if r.pid == os.getpid()]
        readers.opened.clear()
    for r in mine:
        with contextlib.suppress(Exception):
            r.driver.close()
