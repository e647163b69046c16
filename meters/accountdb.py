"""Where the account store is and how it is opened: its database URL and SQLAlchemy engine (shared
by the account service, the billing run that queues alerts and the delivery stage; the store's
schema and migrations belong to the account service, ``accounts/``).

The embedded default is SQLite at ``<lake>/accounts.db`` (WAL, ``synchronous=FULL``, writers start
with ``BEGIN IMMEDIATE``); production uses PostgreSQL (``--db postgresql://…``, driver psycopg 3).
"""
from __future__ import annotations

import os
from pathlib import Path

import sqlalchemy as sa

from .errors import MetersError
from .lake import Lake

DB_FILE = "accounts.db"


def database_url(lake: Lake, db: str | None) -> str:
    """The SQLAlchemy URL of the store: ``db`` (``postgresql://…`` or ``sqlite:///…``) or the lake's
    ``accounts.db``."""
    db = db or os.environ.get("METERS_DB")
    if db:
        if db.startswith(("postgresql://", "postgres://")):
            return "postgresql+psycopg://" + db.split("://", 1)[1]
        if db.startswith(("postgresql+psycopg://", "sqlite:///")):
            return db
        raise MetersError(f"--db {db!r}: give a postgresql://user@host:port/dbname or sqlite:///path URL")
    root = lake.require_local("the embedded account store (give --db postgresql://… for an object-store lake)")
    return f"sqlite:///{Path(root).resolve() / DB_FILE}"


def _sqlite_setup(engine: sa.Engine) -> None:
    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_con, _record):
        dbapi_con.isolation_level = None  # we issue BEGIN ourselves (below)
        cur = dbapi_con.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=60000")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(conn):
        conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get("read_only") else "BEGIN IMMEDIATE")


def create_engine(url: str) -> sa.Engine:
    if url.startswith("sqlite"):
        # connections kept open (pool_size) for the API's threads: a new SQLite connection costs its PRAGMAs
        engine = sa.create_engine(url, pool_size=32, max_overflow=32, pool_timeout=60)
        _sqlite_setup(engine)
        return engine
    return sa.create_engine(url, pool_size=10, max_overflow=50, pool_timeout=60, pool_pre_ping=True)


def existing_url(lake: Lake, db: str | None = None) -> str | None:
    """The store's URL when there is one: ``db``, ``$METERS_DB``, or the lake's ``accounts.db`` if it
    exists (None: this lake has no account store)."""
    if db or os.environ.get("METERS_DB"):
        return database_url(lake, db)
    if not lake.is_local or not (Path(lake.root) / DB_FILE).exists():
        return None
    return database_url(lake, None)
