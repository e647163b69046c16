"""Opening the account store: the database URL, engine set-up and migrations on first use.

The embedded default is SQLite at ``<lake>/accounts.db`` — WAL journal (readers never wait for the
writer) and ``synchronous=FULL`` (a commit returns after its WAL frame is on disk, so an answered
payment survives a crash or power loss); the log is copied back into the database file by a
background thread (:mod:`accounts.checkpoint`), never inside a commit. Write transactions start with ``BEGIN IMMEDIATE``: writers
queue on the database lock (``busy_timeout``) instead of failing when a read turns into a write; the
writers of a store's processes take turns on an flock first (:meth:`Store.write`).
Production uses PostgreSQL: ``--db postgresql://user@host/db`` (driver psycopg 3), default isolation
READ COMMITTED, ``synchronous_commit`` on.

Migrations (Alembic, shipped in ``accounts/migrations``) run on first use, or by ``meters accounts
migrate``; concurrent first users serialize on the database lock (SQLite) or an advisory lock
(PostgreSQL).
"""
from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from meters.accountdb import DB_FILE, create_engine, database_url  # noqa: F401  (the store's URL and engine)
from meters.errors import MetersError
from meters.lake import Lake, open_lake

from .checkpoint import PRAGMAS, Checkpointer

MIGRATIONS = Path(__file__).with_name("migrations")
_PG_MIGRATION_LOCK = 7_201_011  # pg_advisory_xact_lock key of `meters accounts migrate`


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _alembic_config(conn) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    return cfg


def migrate(engine: sa.Engine) -> str | None:
    """Bring the store's schema to the newest migration; returns the revision it started from (None:
    a new store). Does nothing when the store is current."""
    head = ScriptDirectory.from_config(_alembic_config(None)).get_current_head()
    with engine.connect() as conn:
        if MigrationContext.configure(conn).get_current_revision() == head:
            return head
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
        current = MigrationContext.configure(conn).get_current_revision()
        if current != head:
            command.upgrade(_alembic_config(conn), "head")
        return current


@dataclass
class Store:
    """An open account store: the engine, the lake it serves (time zone, billing outputs) and the
    clock that stamps payments (replaceable in tests)."""

    engine: sa.Engine
    lake: Lake
    clock: Callable[[], dt.datetime] = utcnow
    cache: dict = field(default_factory=dict, repr=False)  # the newest settled state (accounts.lakeview)
    # SQLite has one writer: this process's writers queue here, in order, and the processes of the store
    # (meters serve --workers) on an flock of <db>-writer.lock, instead of in SQLite's busy handler, whose
    # sleep-and-retry starves some of them for seconds under 50 concurrent payments
    # (re-entrant: the payments' group commit holds it while it takes its group and commits it)
    writer: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _flocked: bool = field(default=False, repr=False)         # this process holds the flock (under writer)
    _writer_file: list = field(default_factory=list, repr=False)   # [pid, open lock file] of this process
    closers: list = field(default_factory=list, repr=False)   # run by close() (the payments' group commit)
    checkpointer: Checkpointer | None = field(default=None, repr=False)   # SQLite: the WAL checkpoints

    @property
    def tz(self):
        return self.lake.tz

    def today(self) -> dt.date:
        """The lake-local calendar day now."""
        return self.lake.local_day(self.clock())

    @contextlib.contextmanager
    def write(self):
        """A write transaction (``BEGIN IMMEDIATE`` on SQLite, one writer of this process at a time)."""
        if self.engine.dialect.name != "sqlite":
            with self.engine.begin() as conn:
                yield conn
            return
        with self.exclusive(), self.engine.begin() as conn:
            yield conn

    @contextlib.contextmanager
    def exclusive(self):
        """SQLite: no writer of this store's processes runs meanwhile (this process's writer lock, then
        the flock of ``<db>-writer.lock``); re-entrant in the thread that holds it."""
        with self.writer:
            if self._flocked:           # this thread holds it already
                yield
                return
            f = self._lock_file()
            fcntl.flock(f, fcntl.LOCK_EX)
            self._flocked = True
            try:
                yield
            finally:
                self._flocked = False
                fcntl.flock(f, fcntl.LOCK_UN)

    def _lock_file(self):
        """This process's handle of ``<db>-writer.lock`` (opened again in a forked child: flocks belong to
        the open file, which a fork shares)."""
        if not self._writer_file or self._writer_file[0] != os.getpid():
            path = f"{self.engine.url.database}-writer.lock"
            self._writer_file[:] = [os.getpid(), open(path, "a+b")]
        return self._writer_file[1]

    @contextlib.contextmanager
    def read(self):
        """A read-only transaction (a plain ``BEGIN`` on SQLite: never waits for the writer)."""
        with self.engine.connect() as conn:
            conn = conn.execution_options(read_only=True)
            with conn.begin():
                yield conn

    def close(self) -> None:
        while self.closers:
            self.closers.pop()()
        self.engine.dispose()
        if self._writer_file and self._writer_file[0] == os.getpid():
            self._writer_file[1].close()
        self._writer_file.clear()   # (a store used after close opens its lock file again)


def open_store(lake: Lake | str | os.PathLike, db: str | None = None, *, migrate_schema: bool = True) -> Store:
    """Open the account store of ``lake`` (``db``: a PostgreSQL URL; default ``<lake>/accounts.db``),
    migrating its schema on first use."""
    if not isinstance(lake, Lake):
        lake = open_lake(lake)
    engine = create_engine(database_url(lake, db))
    store = Store(engine, lake)
    if engine.dialect.name == "sqlite":
        _background_checkpoints(store)
    try:
        if migrate_schema:
            migrate(engine)
    except sa.exc.OperationalError as e:
        store.close()
        raise MetersError(f"cannot open the account store: {str(e.orig).strip().splitlines()[0]}") from None
    return store


def _background_checkpoints(store: Store) -> None:
    """The store's connections never checkpoint inside a commit; a write transaction's commit wakes
    the background :class:`Checkpointer` instead."""
    engine = store.engine
    checkpointer = store.checkpointer = Checkpointer(engine.url.database, store.exclusive)
    store.closers.append(checkpointer.close)

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_con, _record):
        cur = dbapi_con.cursor()
        for pragma in PRAGMAS:
            cur.execute(pragma)
        cur.close()

    @sa.event.listens_for(engine, "commit")
    def _commit(conn):
        if not conn.get_execution_options().get("read_only"):
            checkpointer.poke()
