"""The alert outbox: one delivery per alert and recipient, kept in the account store.

Billing queues alerts here (the nightly run after it commits a day, ``meters pay`` when it records a
payment); the delivery stage (``meters notify``) claims due deliveries, sends them and records the
outcome. This module is the interface both reach the store's ``outbox`` table and the channels'
delivery targets through; the account service owns the schema (its migration creates the table).

A delivery's state is ``pending`` (not tried yet), ``failed`` (tried, retried at ``next_attempt_at``),
``sent`` or ``dead`` (given up: a permanent refusal, 24 h of failures, or superseded by a correction).
Every alert has a stable id (:func:`alert_id`): queuing the same alert again does nothing, so a
re-run of a night sends nothing twice; an alert whose values changed is queued as a correction (a new
id, ``corrects`` naming the one it replaces). A claim leases a delivery for ``lease_s`` seconds: a
dispatcher killed mid-send loses nothing, the lease runs out and the delivery is tried again (at
least once; receivers deduplicate by id).
"""
from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import itertools
import json
from dataclasses import dataclass

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from . import digests
from .accountdb import create_engine, existing_url
from .errors import MetersError
from .lake import Lake
from .recipients import OPERATOR, channel_of, language
from .schemas import OPERATOR_KINDS

metadata = sa.MetaData()
UTC_DATETIME = sa.DateTime(timezone=True)
STATES = ("pending", "sent", "failed", "dead")
DUE = ("pending", "failed")
DONE = ("sent", "dead")
ERROR_MAX = 500
CHUNK = 500

outbox = sa.Table(
    "outbox", metadata,
    sa.Column("alert_id", sa.String(40), primary_key=True),
    sa.Column("base_id", sa.String(40), nullable=False),              # the first revision's id
    sa.Column("digest", sa.String(64), nullable=False),               # of kind, language and values
    sa.Column("corrects", sa.String(40)),                             # the revision this one replaces
    sa.Column("account_id", sa.String(64)),
    sa.Column("day", sa.Date, nullable=False),                        # the lake-local day of the alert
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("recipient", sa.String(200), nullable=False),
    sa.Column("channel", sa.String(64), nullable=False),
    sa.Column("language", sa.String(16), nullable=False),
    sa.Column("data", sa.Text, nullable=False),                       # JSON: the values templates show
    sa.Column("state", sa.String(8), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("last_error", sa.String(ERROR_MAX)),
    sa.Column("next_attempt_at", UTC_DATETIME, nullable=False),
    sa.Column("queued_at", UTC_DATETIME, nullable=False),             # start of the 24 h retry window
    sa.Column("created_at", UTC_DATETIME, nullable=False),
    sa.Column("sent_at", UTC_DATETIME),
    sa.Index("ix_outbox_due", "state", "next_attempt_at"),
    sa.Index("ix_outbox_base", "base_id"),
    sa.Index("ix_outbox_account", "account_id", "created_at"),
)

# The delivery targets of the store's channels (columns the account service's migration adds).
channel_targets = sa.table(
    "channels", sa.column("name", sa.String), sa.column("role", sa.String),
    sa.column("webhook_url", sa.String), sa.column("webhook_secret", sa.String),
    sa.column("mqtt", sa.Boolean), sa.column("apprise_url", sa.String))


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def as_utc(ts: dt.datetime | None) -> dt.datetime | None:
    """A stored instant as an aware UTC datetime (SQLite returns it naive)."""
    if ts is None:
        return None
    return ts.replace(tzinfo=dt.timezone.utc) if ts.tzinfo is None else ts.astimezone(dt.timezone.utc)


def _id(*parts) -> str:
    h = hashlib.sha256("\x1f".join("" if p is None else str(p) for p in parts).encode()).digest()
    return "al_" + base64.b32encode(h[:20]).decode().lower()


def alert_id(account_id: str | None, day: dt.date | str, kind: str, recipient: str,
             payment: str | None = None) -> str:
    """The stable id of an alert: a function of account, day, kind, recipient and, for a payment's
    alerts, the payment's reference."""
    return _id(account_id, str(day), kind, recipient, payment)


def alert_ids(account_ids, day: dt.date | str, kind, recipients, payment=None) -> pa.Array:
    """:func:`alert_id` of many alerts at once (Arrow string columns or single values; a null
    account or payment as None): hashed in bulk (:mod:`meters.digests`), no Python per alert."""
    parts = [account_ids, str(day), kind, recipients, "" if payment is None else payment]
    parts = [pa.scalar(p, pa.string()) if p is None or isinstance(p, str) else p for p in parts]
    keys = pc.binary_join_element_wise(*(pc.fill_null(p, "") for p in parts), "\x1f")
    if isinstance(keys, pa.Scalar):
        keys = pa.array([keys.as_py()], pa.string())
    return digests.base32_lower(digests.sha256(keys)[:, :20], "al_")


def digest(kind: str, lang: str, data: str) -> str:
    return hashlib.sha256(f"{kind}\x1f{lang}\x1f{data}".encode()).hexdigest()


@dataclass(frozen=True)
class Target:
    """Where a channel's deliveries go (at most one of webhook, MQTT, apprise is used, in that order)."""

    name: str
    webhook_url: str | None = None
    webhook_secret: str | None = None
    mqtt: bool = False
    apprise_url: str | None = None

    @property
    def kind(self) -> str | None:
        return ("webhook" if self.webhook_url else "mqtt" if self.mqtt else "apprise" if self.apprise_url
                else None)


def open_outbox(lake: Lake, db: str | None = None, *, required: bool = True) -> sa.Engine | None:
    """An engine on the store holding the outbox (None when ``required`` is false and the lake has
    no account store)."""
    url = existing_url(lake, db)
    if url is None:
        if required:
            raise MetersError(f"no account store for {lake.root}: create it with `meters accounts migrate` "
                              f"or give --db")
        return None
    engine = create_engine(url)
    try:
        has = sa.inspect(engine).has_table("outbox")
    except sa.exc.OperationalError as e:
        engine.dispose()
        raise MetersError(f"cannot open the account store: {str(e.orig).strip().splitlines()[0]}") from None
    if not has:
        engine.dispose()
        raise MetersError("the account store has no outbox yet: run `meters accounts migrate`")
    return engine


# -- queuing ------------------------------------------------------------------------------------------------
def canonical(**data) -> str:
    """An alert's values as canonical JSON (money in integer cents, days ISO): equal values, equal text."""
    return json.dumps({k: (v.isoformat() if isinstance(v, dt.date) else v.item() if hasattr(v, "item") else v)
                       for k, v in data.items()}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class Maybe:
    """A column of :func:`canonical_rows` present only in the rows of ``mask``."""

    def __init__(self, mask, value):
        self.mask, self.value = np.asarray(mask, bool), value


class Raw:
    """A column of :func:`canonical_rows` already JSON text (e.g. a nested object per row)."""

    def __init__(self, text: pa.Array):
        self.text = text


def _json_parts(v, head: str) -> list:
    """One column's JSON text after ``head`` as parts of one join (constants as str): an Arrow
    string array or a constant."""
    if isinstance(v, Raw):
        return [head, v.text]
    if isinstance(v, np.ndarray):
        if v.dtype == bool:
            v = pa.array(v, pa.bool_())
        elif v.dtype.kind in "iu":
            return [head, pa.array(v).cast(pa.string())]
        else:
            v = pa.array(v, pa.string())
    if isinstance(v, (pa.Array, pa.ChunkedArray)):
        quoted = pa.types.is_string(v.type) or pa.types.is_large_string(v.type) or pa.types.is_date(v.type)
        if pa.types.is_string(v.type) or pa.types.is_large_string(v.type):
            text = _escaped(v)
        elif pa.types.is_boolean(v.type):
            text = pc.if_else(v, "true", "false")
        elif pa.types.is_date(v.type) or pa.types.is_integer(v.type):
            text = v.cast(pa.string())
        else:
            raise TypeError(f"canonical_rows: no JSON for {v.type}")
        if not v.null_count:
            return [head + '"', text, '"'] if quoted else [head, text]
        return [head, pc.fill_null(pc.binary_join_element_wise('"', text, '"', "") if quoted else text, "null")]
    return [head + canonical(v=v)[len('{"v":'):-1]]       # a constant, exactly as :func:`canonical` writes it


_CONTROL = [chr(c) for c in range(0x20)]
_SHORT = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _escaped(text) -> pa.Array:
    """JSON string escapes (as :func:`json.dumps` with ``ensure_ascii=False`` writes them); a column
    with nothing to escape as it is (its bytes looked at once in numpy)."""
    if isinstance(text, pa.ChunkedArray):
        text = text.combine_chunks()
    if not _needs_escape(text):
        return text
    text = pc.replace_substring(pc.replace_substring(text, "\\", "\\\\"), '"', '\\"')
    if pc.any(pc.match_substring_regex(text, "[\\x00-\\x1f]")).as_py():
        for c in _CONTROL:
            text = pc.replace_substring(text, c, _SHORT.get(c, f"\\u{ord(c):04x}"))
    return text


def _needs_escape(text: pa.Array) -> bool:
    """Whether any value of a string array holds a quote, a backslash or a control character."""
    large = pa.types.is_large_string(text.type)
    _, offs, data = text.buffers()
    if data is None or not len(text):
        return False
    offsets = np.frombuffer(offs, np.int64 if large else np.int32)
    b = np.frombuffer(data, np.uint8)[offsets[text.offset]: offsets[text.offset + len(text)]]
    return bool(((b < 0x20) | (b == 0x22) | (b == 0x5C)).any())


def joined(parts: list) -> pa.Array | pa.Scalar:
    """``parts`` (arrays and str constants) joined row by row in one call, adjacent constants merged
    first (a scalar when every part is a constant)."""
    merged: list = []
    for p in parts:
        if isinstance(p, str) and merged and isinstance(merged[-1], str):
            merged[-1] += p
        elif not (isinstance(p, str) and not p):
            merged.append(p)
    if all(isinstance(p, str) for p in merged):
        return pa.scalar("".join(merged), pa.string())
    return pc.binary_join_element_wise(*merged, "")


def canonical_rows(n: int, **columns) -> pa.Array:
    """:func:`canonical` of ``n`` rows at once: each keyword a column (Arrow string, integer, boolean
    or date array, numpy array, a :class:`Raw` JSON column, a :class:`Maybe` present in some rows) or
    one value for every row. Equal to ``canonical(**row)`` per row, built without Python per row:
    one join of every column's parts (a leading :class:`Maybe` column: its comma sliced off after)."""
    keys = sorted(columns)
    lead = bool(keys) and isinstance(columns[keys[0]], Maybe)    # every column after a comma, sliced off after
    parts: list = [] if lead else ["{"]
    for k in keys:
        v = columns[k]
        head = ("," if lead or len(parts) > 1 else "") + json.dumps(k, ensure_ascii=False) + ":"
        if isinstance(v, Maybe):
            if v.mask.all():
                parts += _json_parts(v.value, head)
            elif v.mask.any():
                parts.append(pc.if_else(pa.array(v.mask), joined(_json_parts(v.value, head)), ""))
        else:
            parts += _json_parts(v, head)
    text = joined(parts if lead else parts + ["}"])
    if isinstance(text, pa.Scalar):
        text = pa.repeat(text, n)
    if lead:
        text = pc.binary_join_element_wise("{", pc.utf8_slice_codeunits(text, 1), "}", "")
    return text


QUEUED = pa.schema([("alert_id", pa.string()), ("account_id", pa.string()), ("day", pa.date32()),
                    ("kind", pa.string()), ("recipient", pa.string()), ("language", pa.string()),
                    ("data", pa.string())])   # what :func:`enqueue` takes, as a table


def _as_table(alerts) -> pa.Table:
    if isinstance(alerts, pa.Table):
        return alerts.select(QUEUED.names).cast(QUEUED)
    day = [a["day"] if isinstance(a["day"], dt.date) else dt.date.fromisoformat(str(a["day"])) for a in alerts]
    return pa.table({k: day if k == "day" else [a.get(k) for a in alerts] for k in QUEUED.names}, schema=QUEUED)


def queued_before(conn: sa.Connection, ids: list[str]) -> tuple[dict[str, sa.Row], dict[str, int]]:
    """Of the alert ids ``ids`` queued before: the latest revision of each and their number (looked
    up :data:`CHUNK` at a time)."""
    latest: dict[str, sa.Row] = {}
    revisions: dict[str, int] = {}
    for i in range(0, len(ids), CHUNK):
        for r in conn.execute(sa.select(outbox.c.base_id, outbox.c.alert_id, outbox.c.digest, outbox.c.state)
                              .where(outbox.c.base_id.in_(ids[i:i + CHUNK]))
                              .order_by(outbox.c.created_at, outbox.c.alert_id)):
            latest[r.base_id] = r
            revisions[r.base_id] = revisions.get(r.base_id, 0) + 1
    return latest, revisions


def fresh_state(now: dt.datetime) -> dict:
    """The delivery columns of a newly queued alert."""
    return {"state": "pending", "attempts": 0, "last_error": None, "next_attempt_at": now, "queued_at": now,
            "created_at": now, "sent_at": None}


def channels(recipients: pa.Array) -> pa.Array:
    """:func:`meters.recipients.channel_of` of every recipient (null: nobody to deliver to)."""
    from .recipients import DEFAULT_CHANNEL, NO_CONTACT

    parts = pc.extract_regex(recipients, r"(?s)^(?P<channel>[^:]*)(?P<sep>:?)(?P<address>.*)$")
    channel, address = pc.struct_field(parts, "channel"), pc.struct_field(parts, "address")
    has_sep = pc.equal(pc.struct_field(parts, "sep"), ":")
    bad = pc.and_(has_sep, pc.or_(pc.equal(channel, ""), pc.equal(address, "")))
    bad = pc.and_(bad, pc.invert(pc.or_(pc.equal(recipients, OPERATOR), pc.starts_with(recipients, NO_CONTACT))))
    if pc.any(bad).as_py():
        channel_of(pc.filter(recipients, bad)[0].as_py())        # raises its error
    out = pc.if_else(has_sep, channel, DEFAULT_CHANNEL)
    out = pc.if_else(pc.starts_with(recipients, NO_CONTACT), pa.scalar(None, pa.string()), out)
    return pc.if_else(pc.equal(recipients, OPERATOR), OPERATOR, out)


def _languages(values: pa.Array) -> pa.Array:
    """:func:`meters.recipients.language` of every value (checked once per distinct value)."""
    filled = pc.fill_null(values, "")
    distinct = pc.unique(filled)
    mapped = pa.array([language(v) for v in distinct.to_pylist()], pa.string())
    return mapped.take(pc.index_in(filled, value_set=distinct))


def enqueue(bind: sa.Engine | sa.Connection, alerts: list[dict] | pa.Table, now: dt.datetime | None = None) -> dict:
    """Queue ``alerts`` (dicts, or a table, with ``alert_id``, ``account_id``, ``day``, ``kind``,
    ``recipient``, ``language``, ``data``); idempotent. ``bind``: an engine (its own transaction) or
    the connection of a transaction to queue in. Returns counts: ``queued`` (new), ``corrections``,
    ``unchanged`` (queued before), ``skipped`` (no deliverable recipient). Channels, languages and
    digests are worked out column by column (a night's alerts at once)."""
    now = now or utcnow()
    t = _as_table(alerts)
    channel = channels(t.column("recipient").combine_chunks()) if t.num_rows else pa.array([], pa.string())
    # no contact, or an operator's alert not for the operator (or back): skipped
    keep = pc.and_(pc.is_valid(channel), pc.equal(pc.is_in(t.column("kind"), value_set=pa.array(OPERATOR_KINDS)),
                                                  pc.equal(pc.fill_null(channel, ""), OPERATOR)))
    counts = {"queued": 0, "corrections": 0, "unchanged": 0, "skipped": t.num_rows - pc.sum(keep).as_py() if t.num_rows else 0}
    t, channel = t.filter(keep), channel.filter(keep)
    lang = _languages(t.column("language").combine_chunks()) if t.num_rows else pa.array([], pa.string())
    content = pc.binary_join_element_wise(t.column("kind"), lang, t.column("data"), "\x1f")
    dig = digests.hex_lower(digests.sha256(content)) if t.num_rows else pa.array([], pa.string())
    cols = {"base_id": t.column("alert_id"), "digest": dig, "account_id": t.column("account_id"), "day": t.column("day"),
            "kind": t.column("kind"), "recipient": t.column("recipient"), "channel": channel, "language": lang,
            "data": t.column("data")}
    cols = {k: v.to_pylist() for k, v in cols.items()}
    last = dict(zip(cols["base_id"], range(len(cols["base_id"]))))   # an id given twice: its last values
    if len(last) < len(cols["base_id"]):
        pick = list(last.values())
        cols = {k: [v[i] for i in pick] for k, v in cols.items()}
    ids = cols["base_id"]
    with (bind.begin() if isinstance(bind, sa.Engine) else contextlib.nullcontext(bind)) as conn:
        latest, revisions = queued_before(conn, ids)
        fresh = fresh_state(now)
        columns = {**cols, "alert_id": ids, "corrects": None}     # (nothing queued before: every alert new)
        superseded = []
        if latest:                     # a re-run: new ones, unchanged ones, corrections, in the alerts' order
            pick, alert_ids_, corrects = [], [], []
            for i, base in enumerate(ids):
                old = latest.get(base)
                if old is not None and old.digest == cols["digest"][i]:
                    counts["unchanged"] += 1
                    continue
                pick.append(i)
                if old is None:
                    alert_ids_.append(base)
                    corrects.append(None)
                    continue
                rid = _id(base, cols["digest"][i], revisions[base])
                # a revision never sent is superseded quietly; one that may have been seen is corrected
                alert_ids_.append(rid)
                corrects.append(None if old.state in DUE else old.alert_id)
                counts["corrections"] += 1
                if old.state in DUE:
                    superseded.append((old.alert_id, rid))
            columns = {**{k: [v[i] for i in pick] for k, v in cols.items()}, "alert_id": alert_ids_,
                       "corrects": corrects}
        counts["queued"] = len(columns["alert_id"]) - counts["corrections"]
        if columns["day"] and columns["day"].count(columns["day"][0]) == len(columns["day"]):
            columns["day"] = columns["day"][0]              # one day (a night's): its bind processed once
        insert_columns(conn, outbox, {**fresh, **columns}, len(columns["alert_id"]))
        for old_id, rid in superseded:
            conn.execute(sa.update(outbox).where(outbox.c.alert_id == old_id, outbox.c.state.in_(DUE))
                         .values(state="dead", last_error=f"superseded by {rid}"))
    return counts


def insert_many(conn: sa.Connection, table: sa.Table, rows: list[dict]) -> None:
    """INSERT ``rows`` (dicts with every column of ``table``): :func:`insert_columns` of their columns."""
    if rows:
        insert_columns(conn, table, {c.key: [r[c.key] for r in rows] for c in table.columns}, len(rows))


def insert_columns(conn: sa.Connection, table: sa.Table, columns: dict, n: int) -> None:
    """INSERT ``n`` rows given column by column (a list per column, or one value for every row) with
    one executemany of the driver: the column types' bind processors applied here, once per distinct
    value object (a column's one value: once), instead of SQLAlchemy's per-row statement machinery
    (most of the cost of queuing a night's alerts)."""
    if not n:
        return
    compiled = sa.insert(table).compile(dialect=conn.dialect, column_keys=[c.key for c in table.columns])
    keys = list(compiled.positiontup) if compiled.positional else list(compiled.binds)
    cols = []
    for k in keys:
        proc = compiled.binds[k].type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
        v = columns[k]
        if not isinstance(v, list):
            cols.append(itertools.repeat(proc(v) if proc is not None and v is not None else v, n))
        elif proc is None:
            cols.append(v)
        else:
            memo: dict[int, tuple] = {}       # id(value) -> (value, processed): shared dates and instants once
            out = []
            for x in v:
                if x is None:
                    out.append(None)
                    continue
                m = memo.get(id(x))
                if m is None or m[0] is not x:
                    m = memo[id(x)] = (x, proc(x))
                out.append(m[1])
            cols.append(out)
    params = list(zip(*cols))
    if not compiled.positional:
        params = [dict(zip(keys, t)) for t in params]
    conn.exec_driver_sql(str(compiled), params)


def reconnected_by_payment(bind: sa.Engine | sa.Connection, day: dt.date, accounts: list[str] | None = None) -> set[str]:
    """Accounts (of ``accounts``, or all) whose reconnection a payment of ``day`` already announced:
    a queued ``reconnect`` alert that names its payment (``ref``)."""
    q = sa.select(outbox.c.account_id, outbox.c.data).where(outbox.c.kind == "reconnect", outbox.c.day == day)
    if accounts is not None:
        q = q.where(outbox.c.account_id.in_(accounts))
    with (bind.connect() if isinstance(bind, sa.Engine) else contextlib.nullcontext(bind)) as conn:
        return {a for a, d in conn.execute(q) if "ref" in json.loads(d)}


DIGEST_KINDS = ("data_gap",)   # operator kinds a night sends as one digest (one row per meter in the lake)


def digest_query(kind: str, day: dt.date) -> str:
    """The lake query that lists a digest's alerts (``meters sql``)."""
    return (f"SELECT account_id, message FROM alerts WHERE day = DATE '{day.isoformat()}' AND kind = '{kind}' "
            f"ORDER BY account_id")


def lake_alerts(lake: Lake, day: dt.date) -> pa.Table:
    """The alerts of ``day`` in the lake's ``alerts`` table that carry an id (those to deliver), the
    operator's :data:`DIGEST_KINDS` folded into one digest per kind: its ``count`` of alerts (one per
    meter), of ``accounts``, and the ``query`` that lists them (docs/alerts.md, "Operator digests")."""
    has_id, folded = pc.is_valid(pc.field("alert_id")), pc.field("kind").isin(list(DIGEST_KINDS))
    t = lake.read("alerts", day.isoformat(), columns=["alert_id", "account_id", "kind", "recipient", "language",
                                                       "data"], filter=has_id & ~folded)   # only the rows sent
    f = lake.read("alerts", day.isoformat(), columns=["kind", "account_id"], filter=has_id & folded)
    folded_rows = []
    for kind in DIGEST_KINDS:
        mine = f.filter(pc.equal(f.column("kind"), kind))
        if mine.num_rows:
            data = canonical(day=day, count=mine.num_rows, accounts=pc.count_distinct(mine.column("account_id")).as_py(),
                             query=digest_query(kind, day))
            folded_rows.append({"alert_id": alert_id(None, day, kind, OPERATOR), "account_id": None, "kind": kind,
                                "recipient": OPERATOR, "language": None, "data": data})
    dayless = pa.schema([f for f in QUEUED if f.name != "day"])
    t = pa.concat_tables([t.select(dayless.names).cast(dayless), pa.Table.from_pylist(folded_rows, dayless)])
    return t.add_column(2, "day", pa.repeat(pa.scalar(day, pa.date32()), t.num_rows))


def enqueue_day(lake: Lake, day: dt.date, db: str | None = None, *, required: bool = True) -> dict | None:
    """Queue the lake's alerts of ``day`` (idempotent; None: no account store and not ``required``)."""
    engine = open_outbox(lake, db, required=required)
    if engine is None:
        return None
    try:
        return enqueue(engine, lake_alerts(lake, day))
    finally:
        engine.dispose()


# -- the dispatcher's side ----------------------------------------------------------------------------------
CLAIMED = ("alert_id", "account_id", "day", "kind", "recipient", "channel", "language", "data", "corrects",
           "attempts", "next_attempt_at", "queued_at", "created_at")   # what a delivery needs


def claim(engine: sa.Engine, limit: int, lease_s: float, now: dt.datetime | None = None) -> list[dict]:
    """Lease up to ``limit`` due deliveries for ``lease_s`` seconds (their attempt counted), the
    longest due first, as dicts of :data:`CLAIMED`; a delivery whose lease runs out without an
    outcome is due again. Each due state is read on its own (an index range in due order, no sort
    of every due delivery per claim)."""
    now = now or utcnow()
    cols = [outbox.c[k] for k in CLAIMED]
    with engine.begin() as conn:
        rows = []
        for state in DUE:
            q = (sa.select(*cols).where(outbox.c.state == state, outbox.c.next_attempt_at <= now)
                 .order_by(outbox.c.next_attempt_at).limit(limit))
            if conn.dialect.name == "postgresql":
                q = q.with_for_update(skip_locked=True)
            rows += [dict(zip(CLAIMED, r)) for r in conn.execute(q)]
        if len(rows) > limit:
            rows = sorted(rows, key=lambda r: r["next_attempt_at"])[:limit]
        if rows:
            until = now + dt.timedelta(seconds=lease_s)
            ids = [r["alert_id"] for r in rows]
            for i in range(0, len(ids), CHUNK):
                conn.execute(sa.update(outbox).where(outbox.c.alert_id.in_(ids[i:i + CHUNK]))
                             .values(attempts=outbox.c.attempts + 1, next_attempt_at=until))
    for r in rows:
        r["attempts"] += 1
        for k in ("next_attempt_at", "queued_at", "created_at"):
            r[k] = as_utc(r[k])
    return rows


def _still_due():
    """``state`` is due, written as "not done": a condition no index serves, so a statement on a list of
    ids finds them by the primary key (with ``state IN`` the due-index range was scanned for each
    list: O(deliveries due) per statement, most of the CPU of recording a large night's outcomes)."""
    return outbox.c.state.not_in(DONE)


def record(engine: sa.Engine, outcomes: list[dict], now: dt.datetime | None = None) -> None:
    """Record outcomes in one transaction: dicts with ``alert_id``, ``state`` (``sent``/``failed``/
    ``dead``), ``error`` and, for ``failed``, ``next_attempt_at``. The sent ones are set together
    (``IN`` lists), the others by one executemany."""
    now = now or utcnow()
    if not outcomes:
        return
    sent = [o["alert_id"] for o in outcomes if o["state"] == "sent"]
    other = [{"id_": o["alert_id"], "state_": o["state"],
              "error_": (o.get("error") or None) and o["error"][:ERROR_MAX],
              "at_": o.get("next_attempt_at") if o["state"] == "failed" else None}
             for o in outcomes if o["state"] != "sent"]
    c = outbox.c
    with engine.begin() as conn:
        for i in range(0, len(sent), CHUNK):
            conn.execute(sa.update(outbox).where(c.alert_id.in_(sent[i:i + CHUNK]), _still_due())
                         .values(state="sent", last_error=None, sent_at=now))
        if other:
            due = sa.or_(*(c.state == s for s in DUE))     # executemany takes no expanding IN
            conn.execute(sa.update(outbox).where(c.alert_id == sa.bindparam("id_"), due)
                         .values(state=sa.bindparam("state_"), last_error=sa.bindparam("error_"),
                                 next_attempt_at=sa.func.coalesce(sa.bindparam("at_", type_=UTC_DATETIME),
                                                                  c.next_attempt_at)),
                         other)


def release(engine: sa.Engine, ids: list[str], now: dt.datetime | None = None) -> None:
    """Give back claimed deliveries that were never sent (a dispatcher stopping): due now, the
    claim's attempt not counted."""
    now = now or utcnow()
    with engine.begin() as conn:
        for i in range(0, len(ids), CHUNK):
            conn.execute(sa.update(outbox).where(outbox.c.alert_id.in_(ids[i:i + CHUNK]), _still_due())
                         .values(attempts=outbox.c.attempts - 1, next_attempt_at=now))


def targets(engine: sa.Engine) -> dict[str, Target]:
    """The delivery target of every channel that has one, by channel name."""
    c = channel_targets.c
    with engine.connect() as conn:
        rows = conn.execute(sa.select(c.name, c.webhook_url, c.webhook_secret, c.mqtt, c.apprise_url)).all()
    out = {r.name: Target(r.name, r.webhook_url, r.webhook_secret, bool(r.mqtt), r.apprise_url) for r in rows}
    return {k: v for k, v in out.items() if v.kind}


def stats(engine: sa.Engine, now: dt.datetime | None = None) -> dict:
    """Deliveries by state and the age in seconds of the oldest one not yet sent or dead."""
    now = now or utcnow()
    with engine.connect() as conn:
        by = dict(conn.execute(sa.select(outbox.c.state, sa.func.count()).group_by(outbox.c.state)).all())
        oldest = conn.execute(sa.select(sa.func.min(outbox.c.created_at)).where(outbox.c.state.in_(DUE))).scalar()
    age = (now - as_utc(oldest)).total_seconds() if oldest is not None else 0.0
    return {"states": {s: int(by.get(s, 0)) for s in STATES}, "oldest_pending_s": max(age, 0.0)}


# -- looking and re-queuing ---------------------------------------------------------------------------------
SHOWN = ("alert_id", "base_id", "account_id", "day", "kind", "recipient", "channel", "language", "state", "attempts",
         "last_error", "next_attempt_at", "created_at", "sent_at", "corrects")


def _shown(r) -> dict:
    d = {k: getattr(r, k) for k in SHOWN}
    for k in ("next_attempt_at", "created_at", "sent_at"):
        d[k] = as_utc(d[k]).isoformat() if d[k] is not None else None
    d["day"] = d["day"].isoformat()
    return d


def deliveries(engine: sa.Engine, *, state: str | None = None, account_id: str | None = None,
               limit: int = 100) -> list[dict]:
    """Deliveries, newest first, optionally of one ``state`` or one account."""
    if state is not None and state not in STATES:
        raise MetersError(f"state {state!r} must be one of {', '.join(STATES)}")
    q = sa.select(outbox).order_by(outbox.c.created_at.desc(), outbox.c.alert_id).limit(limit)
    if state:
        q = q.where(outbox.c.state == state)
    if account_id:
        q = q.where(outbox.c.account_id == account_id)
    with engine.connect() as conn:
        return [_shown(r) for r in conn.execute(q)]


def requeue(engine: sa.Engine, alert_id_: str, now: dt.datetime | None = None) -> dict:
    """Queue a ``dead`` or ``failed`` delivery again now, with a new 24 h retry window."""
    now = now or utcnow()
    with engine.begin() as conn:
        r = conn.execute(sa.select(outbox).where(outbox.c.alert_id == alert_id_)).first()
        if r is None:
            raise MetersError(f"no alert {alert_id_!r} in the outbox")
        if r.state not in ("dead", "failed"):
            raise MetersError(f"alert {alert_id_} is {r.state}: only a dead or failed one is re-queued")
        conn.execute(sa.update(outbox).where(outbox.c.alert_id == alert_id_)
                     .values(state="pending", next_attempt_at=now, queued_at=now))
        r = conn.execute(sa.select(outbox).where(outbox.c.alert_id == alert_id_)).one()
    return _shown(r)


def values(row: dict) -> dict:
    """The JSON values of a delivery."""
    return orjson.loads(row["data"])
