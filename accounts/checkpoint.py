"""WAL checkpoints of the embedded store (SQLite), in the background instead of inside a commit.

SQLite's default copies the write-ahead log back into the database file (a *checkpoint*: the pages
written, then an fsync of the database file) inside the commit that grows the log past 1,000 pages, so
the payments of that group — and, through the writer flock, every other process's writers — waited
for it. The store's writers therefore run with ``wal_autocheckpoint=0`` and one thread per process
checkpoints instead: :meth:`Checkpointer.poke` (called after each write transaction) wakes it, and it
runs ``PRAGMA wal_checkpoint(PASSIVE)`` at most every :data:`EVERY_S` on a connection of its own. A
passive checkpoint never waits for (nor blocks) a reader or a writer: it copies what no reader still
needs, and the next write transaction starts the log again from its beginning once all of it is
copied. Only when the log has nevertheless grown past :data:`CAP_FRAMES` pages (readers that kept a
snapshot open for long) does the checkpoint wait for them (``RESTART``, at most :data:`CAP_WAIT_S`;
writers wait meanwhile) so that the log cannot grow without bound. ``journal_size_limit`` truncates a
restarted log file to :data:`KEEP_BYTES`. Durability does not depend on checkpoints: a commit is on
disk in the log (``synchronous=FULL``).
"""
from __future__ import annotations

import os
import sqlite3
import threading
import time

EVERY_S = 0.5               # at most one checkpoint per this long while the store is written
CAP_FRAMES = 64 * 1024      # log pages (4 KiB: 256 MiB) beyond which a checkpoint waits for readers
CAP_WAIT_S = 2.0            # ... at most this long
KEEP_BYTES = 64 * 1024 * 1024   # journal_size_limit: the log file's size kept after a restart

# the PRAGMAs of the store's connections (accounts.store.open_store)
PRAGMAS = ("PRAGMA wal_autocheckpoint=0", f"PRAGMA journal_size_limit={KEEP_BYTES}")


class Checkpointer:
    """The background checkpoints of the SQLite database at ``path`` (one thread per process, started
    by the first :meth:`poke` of the process: a forked child starts its own)."""

    def __init__(self, path: str, *, every_s: float = EVERY_S):
        self.path, self.every_s = path, every_s
        self.last: tuple | None = None   # (busy, log pages, checkpointed pages, seconds) of the newest
        self.count = 0
        self._cv = threading.Condition()
        self._dirty = False
        self._closed = False
        self._thread: threading.Thread | None = None
        self._pid = None

    def poke(self) -> None:
        """The store was written: checkpoint within :data:`EVERY_S`."""
        with self._cv:
            if self._closed:
                return
            if self._thread is None or self._pid != os.getpid():
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name="wal-checkpoint", daemon=True)
                self._thread.start()
            if not self._dirty:
                self._dirty = True
                self._cv.notify()

    def close(self) -> None:
        """Stop the thread after a last checkpoint of what was written (a later :meth:`poke` starts
        it again)."""
        with self._cv:
            self._closed = True
            self._cv.notify()
            t = self._thread if self._pid == os.getpid() else None
        if t is not None:
            t.join()
        with self._cv:
            self._closed, self._thread = False, None

    def _run(self) -> None:
        con = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=CAP_WAIT_S)
        try:
            while True:
                with self._cv:
                    while not self._dirty and not self._closed:
                        self._cv.wait()
                    if not self._dirty:
                        return
                    if not self._closed:   # let the writes of the next EVERY_S gather
                        self._cv.wait_for(lambda: self._closed, self.every_s)
                    self._dirty = False
                self.checkpoint(con)
        finally:
            con.close()

    def checkpoint(self, con: sqlite3.Connection) -> tuple:
        """One passive checkpoint (a waiting one past :data:`CAP_FRAMES`); returns and keeps
        ``(busy, log pages, checkpointed pages, seconds)``."""
        t0 = time.perf_counter()
        busy, log, done = con.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        if log > CAP_FRAMES and done < log:
            try:
                busy, log, done = con.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
            except sqlite3.OperationalError:   # readers or writers did not let go within CAP_WAIT_S
                pass
        self.last = (busy, log, done, time.perf_counter() - t0)
        self.count += 1
        return self.last
