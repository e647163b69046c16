"""Several server processes on one listening socket (``meters serve --workers N``).

The parent binds the socket, then forks N workers that all accept on it (the kernel hands each new
connection to one of them) and watches them: a worker that exits while the server runs is forked
again (after :data:`RESTART_BACKOFF_S` if it had run less than that long), SIGTERM or SIGINT (Ctrl-C)
to the parent stops every worker (each finishes its requests in flight) and then the parent. Workers
run in their own process group, so a terminal's Ctrl-C reaches only the parent, which stops them in
order; a worker whose parent dies is sent SIGTERM by the kernel (Linux).
"""
from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import time
from typing import Callable

RESTART_BACKOFF_S = 1.0
STOP_TIMEOUT_S = 15.0
_PR_SET_PDEATHSIG = 1

log = logging.getLogger("meters.serve")


def supervise(serve_one: Callable[[int, socket.socket], None], sock: socket.socket, workers: int) -> None:
    """Run ``serve_one(i, sock)`` in ``workers`` forked processes (``i`` = 0 … N-1, the worker's slot: a
    restarted worker keeps its slot) until SIGTERM or SIGINT; returns when all have exited."""
    stopping = []
    by_pid: dict[int, tuple[int, float]] = {}   # pid -> (slot, started)

    def stop(signum, _frame):
        if not stopping:
            log.info(f"stopping {len(by_pid)} workers ({signal.Signals(signum).name})", extra={"event": "stopping"})
        stopping.append(time.monotonic())
        for pid in by_pid:
            _kill(pid, signal.SIGTERM)

    old = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for i in range(workers):
            pid = _fork(serve_one, i, sock)
            by_pid[pid] = (i, time.monotonic())
        restart_at: dict[int, float] = {}       # slot -> when to fork it again
        while by_pid or (restart_at and not stopping):
            pid, status = os.waitpid(-1, os.WNOHANG) if by_pid else (0, 0)
            if pid == 0:
                now = time.monotonic()
                if stopping and now - stopping[0] > STOP_TIMEOUT_S:
                    for p in by_pid:
                        _kill(p, signal.SIGKILL)
                for slot, at in list(restart_at.items()):
                    if not stopping and now >= at:
                        del restart_at[slot]
                        by_pid[_fork(serve_one, slot, sock)] = (slot, now)
                time.sleep(0.1)
                continue
            slot, started = by_pid.pop(pid)
            code = os.waitstatus_to_exitcode(status)
            if stopping:
                log.info(f"worker {slot} (pid {pid}) stopped", extra={"event": "worker_stopped", "worker_slot": slot})
                continue
            ran = time.monotonic() - started
            log.warning(f"worker {slot} (pid {pid}) exited with {_exit_text(code)} after {ran:.1f} s; starting it again",
                        extra={"event": "worker_died", "worker_slot": slot})
            restart_at[slot] = time.monotonic() + (RESTART_BACKOFF_S if ran < RESTART_BACKOFF_S else 0.0)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    log.info("all workers stopped", extra={"event": "stopped"})


def _exit_text(code: int) -> str:
    return f"signal {signal.Signals(-code).name}" if code < 0 else f"code {code}"


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _fork(serve_one, slot: int, sock: socket.socket) -> int:
    pid = os.fork()
    if pid:
        log.info(f"worker {slot} started (pid {pid})", extra={"event": "worker_started", "worker_slot": slot})
        return pid
    code = 0
    try:
        os.setpgid(0, 0)
        for s in (signal.SIGTERM, signal.SIGINT):
            signal.signal(s, signal.SIG_DFL)
        _die_with_parent()
        serve_one(slot, sock)
    except BaseException:   # noqa: BLE001  the worker's last words, then its exit code for the parent
        logging.getLogger("meters.serve").exception(f"worker {slot} failed")
        code = 1
    finally:
        logging.shutdown()
        os._exit(code)


def _die_with_parent() -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):   # not Linux: an orphaned worker is stopped by hand
        pass
