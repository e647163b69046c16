"""The billing run's lock: one run per lake at a time, the holder named.

``.locks/billing`` is an advisory ``flock``; while a run holds it, ``.locks/billing.holder`` names it
(who, process id, host, start, command). A second run does not queue silently: it waits up to
``wait`` seconds (default not at all) and then raises :class:`meters.errors.Busy` (exit 5) naming the
holder.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import getpass
import json
import os
import socket
import sys
import time

from meters.errors import Busy
from meters.lake import Lake

LOCK = "billing"
POLL_S = 0.2


def who() -> str:
    """The operator running this process: ``user@host``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def _paths(lake: Lake):
    d = lake.require_local("a billing run") / ".locks"
    return d / LOCK, d / f"{LOCK}.holder"


def holder(lake: Lake) -> dict | None:
    """The run holding the billing lock (None when none does). Reads the holder's note only — never
    takes the lock, so asking cannot make a starting run find it busy."""
    _, info = _paths(lake)
    try:
        h = json.loads(info.read_text())
    except (OSError, ValueError):
        return None
    if h.get("host") == socket.gethostname() and h.get("pid"):
        try:
            os.kill(int(h["pid"]), 0)
        except ProcessLookupError:
            return None           # died without cleaning up (kill -9): its flock went with it
        except PermissionError:
            pass
    return h


def describe(h: dict) -> str:
    parts = [h.get("who") or "unknown"]
    if h.get("pid"):
        parts.append(f"pid {h['pid']}")
    if h.get("started"):
        parts.append(f"since {h['started']}")
    if h.get("command"):
        parts.append(f"running `{h['command']}`")
    return ", ".join(parts)


@contextlib.contextmanager
def hold(lake: Lake, wait: float | None = None):
    """Hold the billing lock; :class:`Busy` when another run holds it after ``wait`` seconds."""
    lock, info = _paths(lake)
    lock.parent.mkdir(exist_ok=True)
    deadline = time.monotonic() + (wait or 0.0)
    with open(lock, "a+") as f:
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    try:
                        h = json.loads(info.read_text())
                    except (OSError, ValueError):
                        h = {"who": "an unknown process"}
                    waited = f" after waiting {wait:g} s" if wait else ""
                    raise Busy(f"another billing run holds the lock{waited}: {describe(h)} "
                               f"(use --wait SECONDS to wait for it)") from None
                time.sleep(POLL_S)
        try:
            info.write_text(json.dumps({
                "who": who(), "pid": os.getpid(), "host": socket.gethostname(),
                "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                "command": " ".join(["meters", *sys.argv[1:]]) if sys.argv and "meters" in sys.argv[0] else None}))
            yield
        finally:
            with contextlib.suppress(FileNotFoundError):
                info.unlink()
            fcntl.flock(f, fcntl.LOCK_UN)
