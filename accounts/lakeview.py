"""What the lake says about an account: the last settled state (``billing_state``) and the billing
outputs (bills, daily charges, ledger, alerts, runs). Read-only, through meters/ readers and the
analysts' view definitions (:func:`meters.sql.view_select`); never through billing/.

Per-account reads touch only what they need: billing writes per-account outputs sorted (by account,
``billing_state`` by meter) in small row groups (:data:`meters.lake.ROW_GROUPS`), so a lookup reads
the Parquet footers once per file (kept until the file changes) and then the one row group whose
column statistics hold the account; DuckDB queries (:class:`LakeReader`) name only the partitions
they need and skip row groups by the same statistics."""
from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass
from decimal import Decimal

from meters.lake import Lake

ROW_GROUPS_READ = 4   # more candidate row groups than this: the file is not sorted; find the row by its id


@dataclass(frozen=True)
class Settled:
    """One account after the last settled day."""

    day: dt.date
    balance_cents: int
    level: int
    arrears_since: dt.date | None
    disconnected: bool


SETTLED_COLUMNS = ["account_id", "balance", "level", "arrears_since", "disconnected"]


def last_settled_day(lake: Lake) -> dt.date | None:
    """The newest day with a ``billing_state`` partition (None: nothing settled yet)."""
    days = lake.partitions("billing_state")
    return dt.date.fromisoformat(days[-1]) if days else None


@dataclass
class _Footer:
    """One Parquet file's footer and per row group (rows before it, account_id min, max)."""

    metadata: object
    groups: list[tuple[int, str | None, str | None]]
    ids: object = None          # the account_id column, read only for a file not sorted by account


def _footer(path) -> _Footer:
    import pyarrow.parquet as pq

    md = pq.read_metadata(str(path))
    col = next((i for i in range(md.num_columns) if md.schema.column(i).path == "account_id"), None)
    groups, before = [], 0
    for i in range(md.num_row_groups):
        rg = md.row_group(i)
        st = rg.column(col).statistics if col is not None else None
        lo, hi = (st.min, st.max) if st is not None and st.has_min_max else (None, None)
        groups.append((before, lo, hi))
        before += rg.num_rows
    return _Footer(md, groups)


_FOOTERS: dict[tuple, _Footer] = {}
_FOOTERS_LOCK = threading.Lock()


def footer(path) -> _Footer:
    """The footer of a local lake file, kept while its name, size and mtime stay the same."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    with _FOOTERS_LOCK:
        hit = _FOOTERS.get(key)
    if hit is None:
        hit = _footer(path)
        with _FOOTERS_LOCK:
            if len(_FOOTERS) > 4096:
                _FOOTERS.clear()
            _FOOTERS[key] = hit
    return hit


def account_rows(lake: Lake, name: str, key: str | None, account_id: str, columns: list[str]):
    """The rows of ``account_id`` in one partition of a per-account table, as an Arrow table: only the
    row groups whose statistics hold the account are read (a file not sorted by account: the one row
    group its ``account_id`` column places it in)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from meters.schemas import table

    files = lake.current_files(name, key)
    if not lake.is_local:
        t = lake.read(name, key, columns=columns)
        return t.filter(pc.equal(t.column("account_id"), account_id))
    schema = table(name).schema
    parts = []
    for path in files:
        f = footer(path)
        hits = [i for i, (_, lo, hi) in enumerate(f.groups)
                if lo is None or (lo <= account_id <= hi)]
        if len(hits) > ROW_GROUPS_READ:
            if f.ids is None:
                f.ids = pq.read_table(str(path), columns=["account_id"]).column("account_id").combine_chunks()
            at = pc.index(f.ids, account_id).as_py()
            if at < 0:
                continue
            hits = [max(i for i, (before, _, _) in enumerate(f.groups) if before <= at)]
        if not hits:
            continue
        have = set(f.metadata.schema.to_arrow_schema().names)
        t = pq.ParquetFile(str(path), metadata=f.metadata).read_row_groups(hits, columns=[c for c in columns if c in have])
        t = t.filter(pc.equal(t.column("account_id"), account_id))
        for c in columns:   # a column an older file lacks: nulls
            if c not in have:
                t = t.append_column(schema.field(c), pa.nulls(t.num_rows, schema.field(c).type))
        parts.append(t.select(columns))
    if not parts:
        return schema.empty_table().select(columns)
    return pa.concat_tables(parts)


def settled(lake: Lake, account_id: str, cache: dict | None = None) -> Settled | None:
    """The account's state after the last settled day (None: not settled yet, or not billed that day).
    Reads the row group holding the account (``cache`` is kept for callers that pass one)."""
    day = last_settled_day(lake)
    if day is None:
        return None
    t = account_rows(lake, "billing_state", day.isoformat(), account_id, SETTLED_COLUMNS)
    if not t.num_rows:
        return None
    r = t.slice(0, 1).to_pylist()[0]
    return Settled(day, int(r["balance"] * 100), int(r["level"] or 0), r["arrears_since"], bool(r["disconnected"]))


def settled_table(lake: Lake, cache: dict | None = None) -> tuple[dt.date | None, dict[str, Settled]]:
    """(the last settled day, every account's state after it): ``(None, {})`` before any settled day.
    ``cache`` (a dict kept by the caller) holds the newest partition until its files change (the
    payment path's balances; one account's page reads only its row group: :func:`settled`)."""
    day = last_settled_day(lake)
    return (day, {}) if day is None else (day, _settled_table(lake, day, {} if cache is None else cache))


def _settled_table(lake: Lake, day: dt.date, cache: dict) -> dict[str, Settled]:
    files = tuple((p.name, p.stat().st_mtime_ns) for p in lake.current_files("billing_state", day.isoformat()))
    key = ("billing_state", day, files)
    hit = cache.get("settled")
    if hit and hit[0] == key:
        return hit[1]
    t = lake.read("billing_state", day.isoformat(), columns=SETTLED_COLUMNS)
    out = {r["account_id"]: Settled(day, int(r["balance"] * 100), int(r["level"] or 0), r["arrears_since"],
                                    bool(r["disconnected"])) for r in t.to_pylist()}
    cache["settled"] = (key, out)
    return out


class LakeReader:
    """The queries of one page or request: a cursor of the lake's long-lived DuckDB connection (Parquet
    metadata cached between requests). A query names its tables as ``{charges}`` with the partitions it
    needs (``parts={"charges": [keys]}``; default: every partition), read as the analysts' views type
    them; money comes back as ``"12.34"``, instants in the lake's time zone."""

    _connections: dict = {}
    _lock = threading.Lock()

    def __init__(self, lake: Lake):
        self.lake, self.cur = lake, None

    def _cursor(self):
        import duckdb

        from meters.views import quote_literal

        with self._lock:
            con = self._connections.get(str(self.lake.root))
            if con is None:
                con = duckdb.connect(":memory:")
                con.execute("SET enable_object_cache = true")
                con.execute(f"SET TimeZone = {quote_literal(self.lake.timezone_name)}")
                con.execute("SET threads = 2")
                self.lake.register_duckdb(con)
                self._connections[str(self.lake.root)] = con
            return con.cursor()

    def rows(self, sql: str, params: list | None = None, parts: dict[str, list[str]] | None = None) -> list[dict]:
        from meters.schemas import TABLES
        from meters.sql import view_select
        from meters.views import table_files

        scans = {}
        for name, t in TABLES.items():
            if "{" + name + "}" in sql:
                keys = (parts or {}).get(name)
                files = table_files(self.lake, t) if keys is None else [
                    f for k in keys for f in self.lake.current_files(name, k)]
                scans[name] = f"({view_select(self.lake, t, files)})"
        if self.cur is None:
            self.cur = self._cursor()
        cur = self.cur.execute(sql.format(**scans), params or [])
        names = [d[0] for d in cur.description]
        return [{k: self._shown(v) for k, v in zip(names, r)} for r in cur.fetchall()]

    def _shown(self, v):
        if isinstance(v, Decimal):
            return f"{v:.2f}"
        if isinstance(v, dt.datetime) and v.tzinfo is not None:
            return v.astimezone(self.lake.tz)
        return v

    def keys(self, name: str, since: dt.date | None = None, until: dt.date | None = None) -> list[str]:
        """Partition keys of table ``name`` (day or month) from ``since`` to ``until`` (inclusive)."""
        keys = self.lake.partitions(name)
        if since is not None and keys:
            keys = [k for k in keys if k >= since.isoformat()[:len(k)]]
        if until is not None and keys:
            keys = [k for k in keys if k <= until.isoformat()[:len(k)]]
        return keys

    def __enter__(self) -> "LakeReader":
        return self

    def __exit__(self, *exc) -> None:
        if self.cur is not None:
            self.cur.close()


def _rows(lake: Lake, sql: str, params: list, parts: dict[str, list[str]] | None = None) -> list[dict]:
    with LakeReader(lake) as lr:
        return lr.rows(sql, params, parts)


def bills(lake: Lake, account_id: str) -> list[dict]:
    return _rows(lake, "SELECT period_start, period_end, quantity, amount, due_date FROM {bills} "
                       "WHERE account_id = ? ORDER BY period_start", [account_id])


def usage(lake: Lake, account_id: str, start: dt.date | None, end: dt.date | None) -> list[dict]:
    """Daily consumption (the ``charges`` view: one row per billing day) between ``start`` and
    ``end`` inclusive (only those days' partitions are read)."""
    with LakeReader(lake) as lr:
        parts = {"charges": lr.keys("charges", start, end)}
    return _rows(lake, "SELECT day, quantity, amount FROM {charges} WHERE account_id = ? "
                       "AND day >= coalesce(?::DATE, DATE '0001-01-01') AND day <= coalesce(?::DATE, DATE '9999-12-31') "
                       "ORDER BY day", [account_id, start, end], parts)


def ledger(lake: Lake, account_id: str, limit: int) -> list[dict]:
    return _rows(lake, "SELECT ts, kind, amount, balance_after, ref FROM {ledger} WHERE account_id = ? "
                       "ORDER BY ts DESC LIMIT ?", [account_id, limit])


def alerts(lake: Lake, account_id: str, limit: int) -> list[dict]:
    return _rows(lake, "SELECT ts, kind, recipient, message, alert_id FROM {alerts} WHERE account_id = ? "
                       "ORDER BY ts DESC LIMIT ?", [account_id, limit])


def runs(lake: Lake, limit: int) -> list[dict]:
    """The newest ``limit`` runs (only the newest ``limit`` days' partitions are read)."""
    keys = lake.partitions("runs")[-limit:] if limit else []
    return _rows(lake, "SELECT day, run_id, started_at, duration_s, accounts, money FROM {runs} "
                       "ORDER BY day DESC, started_at DESC LIMIT ?", [limit], {"runs": keys})
