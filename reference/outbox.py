"""Plain-Python reference of the outbox hand-off (:func:`meters.outbox.enqueue`), alert by alert as
it was first written: tests hold the column-wise one equal to it. Not shipped."""
from __future__ import annotations

import contextlib
import datetime as dt

import sqlalchemy as sa

from meters.outbox import DUE, _id, digest, fresh_state, insert_many, outbox, queued_before, utcnow
from meters.recipients import OPERATOR, channel_of, language
from meters.schemas import OPERATOR_KINDS


def enqueue_rowwise(bind: sa.Engine | sa.Connection, alerts: list[dict], now: dt.datetime | None = None) -> dict:
    """Row-by-row reference of :func:`meters.outbox.enqueue` (same inputs as dicts, same outcome)."""
    now = now or utcnow()
    counts = {"queued": 0, "corrections": 0, "unchanged": 0, "skipped": 0}
    rows: dict[str, dict] = {}
    for a in alerts:
        channel = channel_of(a["recipient"])
        if channel is None or (a["kind"] in OPERATOR_KINDS) != (channel == OPERATOR):
            counts["skipped"] += 1      # no contact, or an operator's alert not for the operator (or back)
            continue
        lang = language(a.get("language"))
        day = a["day"] if isinstance(a["day"], dt.date) else dt.date.fromisoformat(str(a["day"]))
        rows[a["alert_id"]] = {"base_id": a["alert_id"], "digest": digest(a["kind"], lang, a["data"]),
                               "account_id": a.get("account_id"), "day": day, "kind": a["kind"],
                               "recipient": a["recipient"], "channel": channel, "language": lang,
                               "data": a["data"]}
    ids = list(rows)
    with (bind.begin() if isinstance(bind, sa.Engine) else contextlib.nullcontext(bind)) as conn:
        latest, revisions = queued_before(conn, ids)
        new, superseded = [], []
        fresh = fresh_state(now)
        for base, row in rows.items():
            old = latest.get(base)
            if old is None:
                new.append({**row, **fresh, "alert_id": base, "corrects": None})
                counts["queued"] += 1
            elif old.digest == row["digest"]:
                counts["unchanged"] += 1
            else:
                rid = _id(base, row["digest"], revisions[base])
                # a revision never sent is superseded quietly; one that may have been seen is corrected
                new.append({**row, **fresh, "alert_id": rid, "corrects": None if old.state in DUE else old.alert_id})
                counts["corrections"] += 1
                if old.state in DUE:
                    superseded.append((old.alert_id, rid))
        insert_many(conn, outbox, new)
        for old_id, rid in superseded:
            conn.execute(sa.update(outbox).where(outbox.c.alert_id == old_id, outbox.c.state.in_(DUE))
                         .values(state="dead", last_error=f"superseded by {rid}"))
    return counts
