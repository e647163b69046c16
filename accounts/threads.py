"""A background thread of one process: started by the first piece of work, started again in a forked
child (a fork keeps only the thread that forked), stopped by :meth:`ProcessThread.close` after its
work is done."""
from __future__ import annotations

import os
import threading


class ProcessThread:
    """Base of a worker thread that runs ``self._run`` and waits on ``self._cv`` for work or for
    ``self._closed``."""

    def __init__(self, name: str):
        self._name = name
        self._cv = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._pid = None

    def _start(self) -> bool:
        """With ``self._cv`` held: start this process's thread unless it runs; True when it was started."""
        if self._thread is not None and self._pid == os.getpid():
            return False
        self._pid = os.getpid()
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()
        return True

    def _stop(self) -> None:
        """Mark closed and wait for this process's thread to finish its work."""
        with self._cv:
            self._closed = True
            self._cv.notify()
            t = self._thread if self._pid == os.getpid() else None
        if t is not None:
            t.join()

    def _run(self) -> None:
        raise NotImplementedError
