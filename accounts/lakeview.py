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


def _groups_of(path, f: _Footer, account_id: str) -> list[int]:
    """The row groups of file ``path`` (footer ``f``) that may hold ``account_id``: those whose statistics
    hold it, or — a file not sorted by account — the one its ``account_id`` column places it in (that
    column read once per file and kept with the footer, sorted, for binary search)."""
    import numpy as np
    import pyarrow.parquet as pq

    hits = [i for i, (_, lo, hi) in enumerate(f.groups) if lo is None or (lo <= account_id <= hi)]
    if len(hits) <= ROW_GROUPS_READ:
        return hits
    if f.ids is None:
        ids = pq.read_table(str(path), columns=["account_id"]).column("account_id").to_numpy(zero_copy_only=False)
        order = np.argsort(ids, kind="stable")
        f.ids = (ids[order], order)
    ids, order = f.ids
    i = int(np.searchsorted(ids, account_id))
    if i >= len(ids) or ids[i] != account_id:
        return []
    at = int(order[i])
    return [max(g for g, (before, _, _) in enumerate(f.groups) if before <= at)]


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
        hits = _groups_of(path, f, account_id)
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
    Reads the row group holding the account (:class:`SettledStates`; ``cache``, a dict kept by the
    caller, keeps the row groups read)."""
    day, states = settled_table(lake, cache)
    return None if day is None else states.get(account_id)


def _settled_row(lake: Lake, day: dt.date, account_id: str) -> Settled | None:
    """One account's state after ``day`` from the rows holding it (lakes not on local disk)."""
    t = account_rows(lake, "billing_state", day.isoformat(), account_id, SETTLED_COLUMNS)
    if not t.num_rows:
        return None
    r = t.slice(0, 1).to_pylist()[0]
    return Settled(day, int(r["balance"] * 100), int(r["level"] or 0), r["arrears_since"], bool(r["disconnected"]))


def settled_table(lake: Lake, cache: dict | None = None) -> tuple[dt.date | None, "SettledStates | dict"]:
    """(the last settled day, its accounts' states as a mapping with ``get``): ``(None, {})`` before any
    settled day. ``cache`` (a dict kept by the caller) keeps the mapping, and the row groups it has
    read, until the partition's files change."""
    day = last_settled_day(lake)
    if day is None:
        return None, {}
    cache = {} if cache is None else cache
    paths = lake.current_files("billing_state", day.isoformat()) if lake.is_local else []
    key = ("billing_state", day, tuple((p.name, p.stat().st_mtime_ns) for p in paths))
    hit = cache.get("settled")
    if hit is None or hit[0] != key:
        hit = (key, SettledStates(lake, day, paths))
        cache["settled"] = hit
    return day, hit[1]


class SettledStates:
    """The accounts' states after settled day ``day``, read a row group at a time as they are asked
    for (the row group holding the account, found from the footers) and kept, at most
    ``MAX_GROUPS`` row groups, the least recently used dropped first: memory bounded whatever the
    city's size, a balance a dictionary lookup once its row group has been read."""

    MAX_GROUPS = 256

    def __init__(self, lake: Lake, day: dt.date, paths: list | None = None):
        from collections import OrderedDict

        self.lake, self.day = lake, day
        self._paths = paths             # the partition's files (None: listed at the first get)
        self._footers: list | None = None
        self._groups: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, account_id: str) -> Settled | None:
        if not self.lake.is_local:
            return _settled_row(self.lake, self.day, account_id)
        if self._footers is None:       # the files do not change under one instance (settled_table)
            paths = self._paths
            if paths is None:
                paths = self.lake.current_files("billing_state", self.day.isoformat())
            self._footers = [(p, footer(p)) for p in paths]
        for path, f in self._footers:
            for g in _groups_of(path, f, account_id):
                hit = self._group(path, f, g).get(account_id)
                if hit is not None:
                    return hit
        return None

    def _group(self, path, f: _Footer, g: int) -> "_Group":
        import pyarrow.parquet as pq

        key = (str(path), g)
        with self._lock:
            hit = self._groups.get(key)
            if hit is not None:
                self._groups.move_to_end(key)
                return hit
        have = set(f.metadata.schema.to_arrow_schema().names)
        t = pq.ParquetFile(str(path), metadata=f.metadata).read_row_group(
            g, columns=[c for c in SETTLED_COLUMNS if c in have])
        hit = _Group(self.day, t)
        with self._lock:
            self._groups[key] = hit
            while len(self._groups) > self.MAX_GROUPS:
                self._groups.popitem(last=False)
        return hit


class _Group:
    """One row group of settled states as columns (cents as int64), a state built only when asked for."""

    def __init__(self, day: dt.date, t):
        import numpy as np
        import pyarrow as pa
        n, names = t.num_rows, set(t.column_names)
        self.day = day
        self.row = {a: i for i, a in enumerate(t.column("account_id").to_pylist())}
        self.states: dict[str, Settled] = {}     # the states asked for (frozen, so shared)

        def col(name, fill):
            return t.column(name).fill_null(fill) if name in names else pa.array([fill] * n)
        # DECIMAL(18,2) → cents: exact through float64 for any balance below 2^53 / 100
        self.cents = np.rint(col("balance", 0).cast(pa.float64()).to_numpy() * 100).astype(np.int64)
        self.level = col("level", 0).to_numpy()
        self.disconnected = np.asarray(col("disconnected", False).to_numpy(zero_copy_only=False), bool)
        self.since = t.column("arrears_since") if "arrears_since" in names else pa.nulls(n, pa.date32())

    def get(self, account_id: str) -> Settled | None:
        hit = self.states.get(account_id)
        if hit is not None:
            return hit
        i = self.row.get(account_id)
        if i is None:
            return None
        hit = self.states[account_id] = Settled(self.day, int(self.cents[i]), int(self.level[i]),
                                                self.since[i].as_py(), bool(self.disconnected[i]))
        return hit


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
