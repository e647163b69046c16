"""Prometheus metrics of the billing batch, in node_exporter's textfile format.

After every run ``meters bill --metrics-file PATH`` writes PATH atomically (a temporary file renamed
over it) for the node_exporter textfile collector: when the last run finished, how it ended, when the
last successful run finished (kept across failed runs, read back from the previous file), its
duration, the money charged, the readings' coverage, the alerts by kind and the days billed. "Nothing
to do" (exit 3) is a success. Alert on ``time() - meters_billing_last_success_timestamp_seconds``.
"""
from __future__ import annotations

import datetime as dt
import os
import re
from collections import Counter
from pathlib import Path

from meters.lake import atomic_write_bytes

PREFIX = "meters_billing_"
SUCCESS = (0, 3)   # done, nothing to do


def _previous_success(path: Path) -> float | None:
    try:
        text = path.read_text()
    except OSError:
        return None
    m = re.search(rf"^{PREFIX}last_success_timestamp_seconds ([0-9.e+]+)$", text, re.M)
    return float(m.group(1)) if m else None


def render(results, *, exit_code: int, seconds: float, finished: dt.datetime,
           last_success: float | None, last_settled_end: dt.datetime | None = None) -> str:
    """The textfile's content for a run that returned ``results`` (:class:`billing.batch.DayResult`)."""
    lines: list[str] = []

    def metric(name, help_, value, kind="gauge", labels=None):
        full = PREFIX + name
        if not any(ln.startswith(f"# HELP {full} ") for ln in lines):
            lines.extend([f"# HELP {full} {help_}", f"# TYPE {full} {kind}"])
        lab = "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}" if labels else ""
        lines.append(f"{full}{lab} {value:.17g}" if isinstance(value, float) else f"{full}{lab} {value}")

    metric("last_run_timestamp_seconds", "When the last billing run finished (any outcome).", finished.timestamp())
    metric("last_run_exit_code", "Exit status of the last billing run (0 done, 3 nothing to do, 4 data not "
           "ready, 5 busy, 6 lake damaged, 1 other).", exit_code)
    if exit_code in SUCCESS:
        last_success = finished.timestamp()
    if last_success is not None:
        metric("last_success_timestamp_seconds", "When the last successful billing run finished.", last_success)
    metric("last_run_duration_seconds", "Wall time of the last billing run.", float(seconds))
    metric("last_run_days_billed", "Days billed (settled) by the last run.", len(results))
    metric("last_run_money", "Charges of the days billed by the last run, in currency units.",
           sum(r.money_cents for r in results) / 100)
    metric("last_run_adjustments", "Re-run corrections of the last run, in currency units.",
           sum(r.adjustments_cents for r in results) / 100)
    metric("last_run_bills", "Postpaid bills issued by the last run.", sum(r.bills for r in results))
    if results:
        metric("last_run_coverage_ratio", "Lowest share of meters with readings over the days of the last run.",
               float(min(r.coverage for r in results)))
        metric("last_run_estimated_days", "Days of the last run billed below the coverage minimum "
               "(--allow-estimates).", sum(r.estimated for r in results))
    alerts = sum((r.alerts for r in results), Counter())
    for kind, n in sorted(alerts.items()):
        metric("last_run_alerts", "Alerts raised by the last run, by kind.", n, labels={"kind": kind})
    if last_settled_end is not None:
        metric("last_settled_day_end_timestamp_seconds", "End of the last settled billing day.",
               last_settled_end.timestamp())
    return "\n".join(lines) + "\n"


def write(path: str | os.PathLike, results, *, exit_code: int, seconds: float,
          last_settled_end: dt.datetime | None = None, finished: dt.datetime | None = None) -> None:
    """Write the metrics of one run to ``path`` atomically."""
    path = Path(path)
    text = render(results, exit_code=exit_code, seconds=seconds,
                  finished=finished or dt.datetime.now(dt.timezone.utc),
                  last_success=_previous_success(path), last_settled_end=last_settled_end)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, text.encode())
