"""Which persistent ingest sessions joined the share group, and whether a worker still runs them.

A session in the share group whose worker is gone keeps receiving its share of new messages, which
wait in the broker until that worker comes back or the session is drained (``--drain``). Each worker
records its session in ``<lake>/.ingest/sessions/<client id>.json`` (host, pid, running, ended); a
new run warns about sessions of the group that no worker runs. Local lakes only (an object-store lake
keeps no records).
"""
from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from meters.lake import Lake

SESSIONS_DIR = Path(".ingest") / "sessions"


def _path(lake: Lake, client_id: str) -> Path | None:
    if not lake.is_local:
        return None
    return lake.root / SESSIONS_DIR / f"{client_id}.json"


def record(lake: Lake, client_id: str, *, shared: bool, running: bool, ended: bool = False) -> None:
    """Note that ``client_id``'s session is (``running``) or is no longer run by this process;
    ``ended``: the session was drained and the broker deleted it."""
    path = _path(lake, client_id)
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    note = {"client_id": client_id, "shared": shared, "running": running, "ended": ended,
            "host": socket.gethostname(), "pid": os.getpid(),
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(note))
    os.replace(tmp, path)


def _alive(note: dict) -> bool:
    if not note.get("running"):
        return False
    if note.get("host") != socket.gethostname():
        return True  # another host's worker: trust its note
    try:
        os.kill(int(note["pid"]), 0)
    except (ProcessLookupError, ValueError, KeyError):
        return False
    except PermissionError:
        return True
    return True


def stale(lake: Lake, starting: list[str]) -> list[dict]:
    """Sessions of the share group that no worker runs and that are not among ``starting``."""
    path = _path(lake, "x")
    if path is None or not path.parent.is_dir():
        return []
    out = []
    for p in sorted(path.parent.glob("*.json")):
        try:
            note = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if (note.get("shared") and not note.get("ended") and note.get("client_id") not in starting
                and not _alive(note)):
            out.append(note)
    return out


def warning(notes: list[dict], client_id_prefix: str) -> str:
    """One line naming the stale sessions and the command that drains them."""
    ids = [n["client_id"] for n in notes]
    firsts = [i.rsplit("-", 1)[-1] for i in ids if i.startswith(f"{client_id_prefix}-")]
    hint = (f"; drain each with `meters ingest --drain --workers 1 --first-worker N` (N = {', '.join(firsts)})"
            if firsts else "; drain them with `meters ingest --drain`")
    return (f"persistent session(s) {', '.join(ids)} of the share group have no running worker: they keep "
            f"taking a share of new messages, which wait in the broker{hint}")
