"""``meters check``: is the lake whole? Every Parquet file readable (footer, pages, page checksums),
every ``_current`` manifest valid and naming files that exist, and the money consistent (each settled
day's ``billing_state`` balances re-add from the ``ledger``).

With ``repair``, a corrupt file is moved to ``<lake>/_quarantine/<its path in the lake>`` (and dropped
from its partition's manifest) so that it no longer breaks the views of its table, and the report is
written next to it (``check-<time>.json`` and ``.txt``). What cannot be repaired by moving a file (a
manifest naming a missing file, balances that do not re-add) is reported for a restore from backup.
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .damage import verify_parquet
from .lake import MANIFEST, QUARANTINE, Lake, atomic_write_bytes
from .schemas import TABLES

MAX_EXAMPLES = 5  # balance mismatches listed one by one; the rest are counted


@dataclass
class Finding:
    """One problem: ``kind`` (corrupt_file, bad_manifest, missing_file, balance_mismatch), the path
    relative to the lake, what is wrong, and what the repair did (None: not repaired)."""

    kind: str
    path: str
    detail: str
    repaired: str | None = None


@dataclass
class CheckReport:
    lake: str
    files: int = 0                  # Parquet files verified
    manifests: int = 0
    balances: int = 0               # (day, account) balances re-added from the ledger
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    written: list[str] = field(default_factory=list)   # report files of a repair

    @property
    def unrepaired(self) -> list[Finding]:
        return [f for f in self.findings if f.repaired is None]

    def as_dict(self) -> dict:
        return {**asdict(self), "damaged": bool(self.unrepaired)}

    def summary(self) -> str:
        lines = [f"check {self.lake}: {self.files} Parquet files, {self.manifests} manifests, "
                 f"{self.balances} balances re-added from the ledger"]
        for f in self.findings:
            lines.append(f"  {f.kind}: {f.path}: {f.detail}" + (f" -> {f.repaired}" if f.repaired else ""))
        lines += [f"  note: {n}" for n in self.notes]
        n_bad, n_fixed = len(self.unrepaired), len(self.findings) - len(self.unrepaired)
        lines.append("lake is whole" if not self.findings else
                     f"{len(self.findings)} problem(s): {n_fixed} repaired, {n_bad} left"
                     + (" (run with --repair to quarantine corrupt files)"
                        if any(f.kind == "corrupt_file" and not f.repaired for f in self.findings) else ""))
        return "\n".join(lines)


def check_lake(lake: Lake, repair: bool = False) -> CheckReport:
    """Check ``lake`` (a local lake); with ``repair`` quarantine its corrupt files. See the module."""
    root = lake.require_local("meters check")
    report = CheckReport(str(root))
    for name in TABLES:
        d = lake.table_dir(name)
        if not d.exists():
            continue
        for p in sorted(d.rglob("*.parquet")):
            if any(part.startswith(".") for part in p.relative_to(root).parts):
                continue  # temporary files of a writer
            try:
                why = verify_parquet(p)
            except FileNotFoundError:
                continue  # replaced while we looked (compaction, a re-run): not damage
            report.files += 1
            if why:
                f = Finding("corrupt_file", str(p.relative_to(root)), why)
                if repair:
                    try:
                        f.repaired = f"moved to {lake.quarantine(p).relative_to(root)}"
                    except OSError as e:  # e.g. a read-only lake: reported, left in place
                        f.detail += f"; cannot quarantine it: {e.strerror or e}"
                report.findings.append(f)
        for m in sorted(d.rglob(MANIFEST)):
            report.manifests += 1
            report.findings += _check_manifest(root, m)
    _check_balances(lake, report)
    if repair and report.findings:
        report.written = _write_report(lake, report)
    return report


def _check_manifest(root: Path, m: Path) -> list[Finding]:
    rel = str(m.relative_to(root))
    try:
        names = json.loads(m.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        return [Finding("bad_manifest", rel, f"not JSON: {e}")]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        return [Finding("bad_manifest", rel, "not a JSON list of file names")]
    return [Finding("missing_file", rel, f"names {n}, which does not exist (restore it from a backup)")
            for n in names if not (m.parent / n).exists()]


def _check_balances(lake: Lake, report: CheckReport) -> None:
    """Each settled day's balance per account = the sum of that account's ledger amounts up to the
    end of the day (lake-local)."""
    import duckdb

    if not lake.partitions("billing_state"):
        return
    broken = {f.path.split("/")[0] for f in report.unrepaired if f.kind == "corrupt_file"}
    if broken & {"ledger", "billing_state"}:
        report.notes.append("balances not re-added: ledger or billing_state files are damaged")
        return
    state = lake.read("billing_state", columns=["account_id", "balance"])
    ledger = lake.read("ledger", columns=["account_id", "ts", "amount"])
    con = duckdb.connect()
    con.register("state", state)
    con.register("ledger", ledger)
    tz = lake.timezone_name.replace("'", "''")
    rows = con.sql(f"""
        WITH daily AS (SELECT account_id, CAST(timezone('{tz}', ts) AS DATE) AS d, sum(amount) AS amount
                       FROM ledger GROUP BY ALL),
             cum AS (SELECT account_id, d, sum(amount) OVER (PARTITION BY account_id ORDER BY d) AS total
                     FROM daily),
             s AS (SELECT account_id, CAST(day AS DATE) AS day, balance FROM state)
        SELECT s.day, s.account_id, s.balance, coalesce(cum.total, 0) AS total
        FROM s ASOF LEFT JOIN cum ON s.account_id = cum.account_id AND s.day >= cum.d
        WHERE s.balance <> coalesce(cum.total, 0)
        ORDER BY s.day, s.account_id""").fetchall()
    report.balances = state.num_rows
    con.close()
    for day, account, balance, total in rows[:MAX_EXAMPLES]:
        path = lake.partition_dir("billing_state", day.isoformat()).relative_to(lake.root)
        report.findings.append(Finding("balance_mismatch", str(path),
                                       f"account {account}: balance {balance}, the ledger re-adds to {total}"))
    if len(rows) > MAX_EXAMPLES:
        report.findings.append(Finding("balance_mismatch", "billing_state",
                                       f"{len(rows) - MAX_EXAMPLES} more balances do not re-add from the ledger"))


def _write_report(lake: Lake, report: CheckReport) -> list[str]:
    d = lake.root / QUARANTINE
    d.mkdir(exist_ok=True)
    stem = d / f"check-{dt.datetime.now(dt.timezone.utc).strftime('%Y%m%dT%H%M%S%fZ')}"
    out = [stem.with_suffix(".json"), stem.with_suffix(".txt")]
    report.written = [str(p.relative_to(lake.root)) for p in out]
    atomic_write_bytes(out[0], (json.dumps(report.as_dict(), indent=2, default=str) + "\n").encode())
    atomic_write_bytes(out[1], (report.summary() + "\n").encode())
    return report.written
