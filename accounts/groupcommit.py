"""Group commit: one thread per store takes the work queued by many callers and hands it over in
groups, so that the payments that arrive while a commit is on its way to disk share the next
transaction and its one fsync.

:meth:`GroupCommitter.submit` queues an item and returns a :class:`concurrent.futures.Future`; the
thread calls ``commit(items)`` with everything queued (at most ``max_group``), which returns one
result (or exception) per item. A group whose ``commit`` raises is retried one item at a time, so
one bad item fails only its own caller. ``hold`` (optional) is a lock of the writers of all processes
(:meth:`accounts.store.Store.exclusive`): the thread takes it *before* it takes its group, so that
what arrives while another process commits joins this process's next group instead of waiting one
more commit. :meth:`GroupCommitter.submit_async` is the same for a
coroutine: the futures of one event loop are resolved by one wake-up of that loop per group.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
from concurrent.futures import Future
from typing import Callable

from .threads import ProcessThread


class GroupCommitter(ProcessThread):
    def __init__(self, commit: Callable[[list], list], *, name: str = "group-commit", max_group: int = 2000,
                 hold: Callable[[], contextlib.AbstractContextManager] | None = None):
        super().__init__(name)
        self._commit, self._max, self._hold = commit, max_group, hold
        self._queue: collections.deque = collections.deque()

    def submit(self, item) -> Future:
        return self._put(item, Future())

    def submit_async(self, item) -> asyncio.Future:
        """Queue ``item`` from a coroutine: an awaitable future of its result on the running loop."""
        return self._put(item, asyncio.get_running_loop().create_future())

    def _put(self, item, f):
        with self._cv:
            if self._closed:
                raise RuntimeError("the store is closed")
            if self._start():   # none yet, or a forked child: the parent's queue is not this process's
                self._queue.clear()
            self._queue.append((item, f))
            self._cv.notify()
        return f

    def close(self) -> None:
        """Commit what is queued, then stop the thread."""
        self._stop()

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._queue and not self._closed:
                    self._cv.wait()
                if not self._queue:
                    return
            with contextlib.ExitStack() as held:
                if self._hold is not None:
                    with contextlib.suppress(Exception):   # (a failing lock fails the commit, which answers)
                        held.enter_context(self._hold())
                with self._cv:
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
        loops: dict = {}
        for (_, f), r in zip(group, results):
            if isinstance(f, asyncio.Future):
                loops.setdefault(f.get_loop(), []).append((f, r))
            else:
                _resolve(f, r)
        for loop, done in loops.items():
            try:
                loop.call_soon_threadsafe(_resolve_all, done)
            except RuntimeError:   # the loop was closed: nobody waits any more
                pass


def _resolve(f, r) -> None:
    if isinstance(f, asyncio.Future) and f.done():   # its waiter was cancelled
        return
    if isinstance(r, BaseException):
        f.set_exception(r)
    else:
        f.set_result(r)


def _resolve_all(done: list) -> None:
    for f, r in done:
        _resolve(f, r)
