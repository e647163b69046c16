"""WAL checkpoints of the embedded store (SQLite), in the background instead of inside a commit.

SQLite's default copies the write-ahead log back into the database file (a *checkpoint*: the pages
written, then an fsync of the database file) inside the commit that grows the log past 1,000 pages, so
the payments of that group — and, through the writer flock, every other process's writers — waited
for it. The store's connections therefore run with ``wal_autocheckpoint=0`` and one thread per process
checkpoints instead: :meth:`Checkpointer.poke` (on each write transaction's commit) wakes it, and at
most every :data:`EVERY_S` it runs ``PRAGMA wal_checkpoint(PASSIVE)`` on a connection of its own,
which copies what no reader still needs while readers and writers go on.

Under a steady stream of commits a passive checkpoint never catches up with the log's end, and SQLite
starts the log again from its beginning only once all of it is copied; a log that only grows makes
every commit's fsync also write the file's new size. So once the log holds :data:`RESTART_FRAMES`
pages, the checkpointer takes the store's writer lock (:meth:`accounts.store.Store.exclusive`: the
writers of all the store's processes queue behind it, as behind one more write transaction) and runs
``wal_checkpoint(RESTART)``: it copies the few pages written since the last passive pass (passive
passes are repeated first, outside the lock, until at most :data:`CATCH_UP_FRAMES` pages came in
during one), fsyncs the database file once, waits up to :data:`READER_WAIT_S` for readers of the old pages, and the next
commit writes the log from its start again. ``journal_size_limit`` truncates a restarted log file to
:data:`KEEP_BYTES`. Durability does not depend on checkpoints: a commit is on disk in the log
(``synchronous=FULL``) before it returns.
"""
from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from typing import Callable

from .threads import ProcessThread

EVERY_S = 0.5                   # at most one checkpoint per this long while the store is written
RESTART_FRAMES = 4096           # log pages (4 KiB: 16 MiB) from which the log is started again
CATCH_UP_FRAMES = 256           # ... once passive passes leave at most this many pages to copy
CATCH_UP_PASSES = 4             # ... or after this many passes
READER_WAIT_S = 0.1             # a restart waits this long at most for readers of the old pages
KEEP_BYTES = 64 * 1024 * 1024   # journal_size_limit: the log file's size kept after a restart

logger = logging.getLogger("meters.accounts")

# the PRAGMAs of the store's connections (accounts.store.open_store)
PRAGMAS = ("PRAGMA wal_autocheckpoint=0", f"PRAGMA journal_size_limit={KEEP_BYTES}")


class Checkpointer(ProcessThread):
    """The background checkpoints of the SQLite database at ``path`` (one thread per process, started
    by the first :meth:`poke` of the process: a forked child starts its own); ``exclusive``: a context
    manager that keeps the store's writers out (:meth:`accounts.store.Store.exclusive`)."""

    def __init__(self, path: str, exclusive: Callable[[], contextlib.AbstractContextManager], *,
                 every_s: float = EVERY_S):
        super().__init__("wal-checkpoint")
        self.path, self.exclusive, self.every_s = path, exclusive, every_s
        # the newest: (mode, busy, log pages, checkpointed pages, seconds, seconds the writers waited)
        self.last: tuple | None = None
        self.count = 0
        self._dirty = False

    def poke(self) -> None:
        """The store was written: checkpoint within :data:`EVERY_S`."""
        with self._cv:
            if self._closed:
                return
            self._start()
            if not self._dirty:
                self._dirty = True
                self._cv.notify()

    def close(self) -> None:
        """Stop the thread after a last checkpoint of what was written (a later :meth:`poke` starts
        it again)."""
        self._stop()
        with self._cv:
            self._closed, self._thread = False, None

    def _run(self) -> None:
        con = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=READER_WAIT_S)
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
                try:
                    self.checkpoint(con)
                except sqlite3.Error as e:   # e.g. a full disk: the log grows meanwhile, the next one tries again
                    logger.warning(f"checkpoint of {self.path} failed: {e}", extra={"event": "checkpoint_failed"})
        finally:
            con.close()

    def checkpoint(self, con: sqlite3.Connection) -> tuple:
        """A passive checkpoint, then a restart of the log once it holds :data:`RESTART_FRAMES` pages;
        returns and keeps ``(mode, busy, log pages, checkpointed pages, seconds, seconds the writers
        were held off)`` of the last."""
        t0, held = time.perf_counter(), 0.0
        mode = "PASSIVE"
        busy, log, done = con.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        if log >= RESTART_FRAMES and not busy:
            for _ in range(CATCH_UP_PASSES):   # copy the pages committed meanwhile, outside the lock
                before = log
                busy, log, done = con.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                if busy or log - before <= CATCH_UP_FRAMES:
                    break
        if log >= RESTART_FRAMES and not busy:   # (busy: another process checkpoints; it restarts the log)
            mode = "RESTART"
            with self.exclusive():
                t1 = time.perf_counter()
                try:
                    busy, log, done = con.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
                except sqlite3.OperationalError:   # another process's checkpoint: its restart will do
                    busy = 1
                held = time.perf_counter() - t1
        self.last = (mode, busy, log, done, time.perf_counter() - t0, held)
        self.count += 1
        return self.last
