"""Group commit: one thread per store takes the work queued by many callers and hands it over in
groups, so that the payments that arrive while a commit is on its way to disk share the next
transaction and its one fsync.

:meth:`GroupCommitter.submit` queues an item and returns a :class:`concurrent.futures.Future`; the
thread calls ``commit(items)`` with everything queued (at most ``max_group``), which returns one
result (or exception) per item. A group whose ``commit`` raises is retried one item at a time, so
one bad item fails only its own caller.
"""
from __future__ import annotations

import collections
import os
import threading
from concurrent.futures import Future
from typing import Callable


class GroupCommitter:
    def __init__(self, commit: Callable[[list], list], *, name: str = "group-commit", max_group: int = 2000):
        self._commit, self._name, self._max = commit, name, max_group
        self._queue: collections.deque = collections.deque()
        self._cv = threading.Condition()
        self._thread: threading.Thread | None = None
        self._pid = None
        self._closed = False

    def submit(self, item) -> Future:
        f: Future = Future()
        with self._cv:
            if self._closed:
                raise RuntimeError("the store is closed")
            if self._thread is None or self._pid != os.getpid():   # none yet, or a forked child
                self._queue.clear()
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._queue.append((item, f))
            self._cv.notify()
        return f

    def close(self) -> None:
        """Commit what is queued, then stop the thread."""
        with self._cv:
            self._closed = True
            self._cv.notify()
            t = self._thread if self._pid == os.getpid() else None
        if t is not None:
            t.join()

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._queue and not self._closed:
                    self._cv.wait()
                if not self._queue:
                    return
                n = min(len(self._queue), self._max)
                group = [self._queue.popleft() for _ in range(n)]
            self._settle(group)

    def _settle(self, group: list) -> None:
        try:
            results = self._commit([item for item, _ in group])
        except BaseException as e:   # nothing of the group was committed
            if len(group) > 1:
                for one in group:
                    self._settle([one])
                return
            results = [e]
        for (_, f), r in zip(group, results):
            if isinstance(r, BaseException):
                f.set_exception(r)
            else:
                f.set_result(r)
