"""Canned reports for operators and analysts: one SQL query over the lake views each, plus a chart.

A report is a function ``(con, **options) -> Report`` registered in ``REPORTS`` under its name (the
``meters report`` choices); :func:`run_report` opens the lake, runs it and (optionally) saves its chart
as a PNG with matplotlib's Agg backend.

Consumption comes from the billing stage's ``intervals`` (validated and estimated) when they exist for
the period; otherwise it is derived from ``readings``: register differences between consecutive reads
of a meter, plus the interval quantities of imported data, each counted on the local day its interval
ends in (a read at midnight closes the previous day).
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path

from typing import TYPE_CHECKING, Callable

from .errors import MetersError

if TYPE_CHECKING:
    import pandas as pd

    from .lake import Lake


@dataclass
class Report:
    name: str
    title: str
    data: "pd.DataFrame"
    chart: str            # "line" | "bar" | "barh"
    x: str
    y: str
    series: str | None = None   # column whose values become separate lines / bars
    facet: str | None = None    # column whose values get a chart each (e.g. utility: different units)
    notes: list[str] = field(default_factory=list)


# consumption per meter and interval end, from intervals when billed, else from readings
CONSUMPTION_SQL = """
WITH derived AS (
    SELECT meter_id, ts,
           CASE WHEN quantity IS NOT NULL THEN quantity
                ELSE register - lag(register) OVER (PARTITION BY meter_id, register IS NULL ORDER BY ts) END
               AS quantity,
           CASE WHEN {actual} THEN 'actual' ELSE 'estimated' END AS quality
    FROM readings
)
SELECT meter_id, ts, quantity, quality FROM intervals
UNION ALL
SELECT meter_id, ts, quantity, quality FROM derived
WHERE quantity IS NOT NULL AND quantity >= 0 AND NOT EXISTS (SELECT 1 FROM intervals)
"""


def _consumption(con) -> str:
    from .iotools import quality_is_actual_sql

    return "(" + CONSUMPTION_SQL.replace("{actual}", quality_is_actual_sql("quality")) + ")"


REPORTS: dict[str, Callable] = {}   # name -> report function (its ``about``: a few words for --help)


def report(name: str, about: str):
    """Register the decorated function as report ``name``."""
    def register(fn):
        fn.about = about
        REPORTS[name] = fn
        return fn
    return register


LOCAL_DAY = "CAST(ts - INTERVAL 1 SECOND AS DATE)"  # the local day an interval ending at ts belongs to


def _between(start: dt.date | None, end: dt.date | None) -> str:
    cond = []
    if start:
        cond.append(f"{LOCAL_DAY} >= DATE '{start.isoformat()}'")
    if end:
        cond.append(f"{LOCAL_DAY} <= DATE '{end.isoformat()}'")
    return " AND ".join(cond) or "true"


@report("daily", "consumption by utility and region")
def daily(con, start=None, end=None, **_) -> Report:
    """Daily consumption by utility and region."""
    df = con.sql(f"""
        SELECT {LOCAL_DAY} AS day, coalesce(m.utility, 'unknown') AS utility,
               coalesce(m.region, 'unknown') AS region, coalesce(m.unit, '') AS unit,
               round(sum(c.quantity), 3) AS quantity, count(DISTINCT c.meter_id) AS meters
        FROM {_consumption(con)} c LEFT JOIN meters m USING (meter_id)
        WHERE {_between(start, end)}
        GROUP BY ALL ORDER BY day, utility, region""").df()
    return Report("daily", "Daily consumption by utility and region", df, "line", "day", "quantity", "region",
                  facet="utility")


@report("top", "consumers")
def top(con, start=None, end=None, limit=10, **_) -> Report:
    """Top consumers over the period (all data by default)."""
    df = con.sql(f"""
        SELECT c.meter_id, a.account_id, m.utility, m.unit, m.region,
               round(sum(c.quantity), 3) AS quantity
        FROM {_consumption(con)} c LEFT JOIN meters m USING (meter_id) LEFT JOIN accounts a USING (meter_id)
        WHERE {_between(start, end)}
        GROUP BY ALL ORDER BY quantity DESC, meter_id LIMIT {int(limit)}""").df()
    df["label"] = df["meter_id"].astype(str)
    return Report("top", f"Top {int(limit)} consumers", df, "barh", "label", "quantity")


@report("load-curve", "one meter")
def load_curve(con, meter=None, start=None, end=None, **_) -> Report:
    """One meter's load curve: consumption per interval."""
    if meter is None:
        raise MetersError("report load-curve needs --meter METER_ID")
    df = con.sql(f"""
        SELECT ts, quantity, quality FROM {_consumption(con)}
        WHERE meter_id = {int(meter)} AND {_between(start, end)} ORDER BY ts""").df()
    if df.empty:
        raise MetersError(f"meter {meter} has no consumption in the lake for that period")
    return Report("load-curve", f"Load curve of meter {meter}", df, "line", "ts", "quantity")


@report("tiers", "the month's revenue by tier and band")
def tiers(con, month=None, **_) -> Report:
    """How the month's revenue splits over tiers and bands: the daily charge lines of the month (every
    account), or the month's bill lines where the lake has no charge lines."""
    lines = """SELECT strftime(day, '%Y-%m') AS month, tier, band, quantity, CAST(amount AS DOUBLE) AS amount,
                      'charge_lines' AS source FROM charge_lines
               UNION ALL
               SELECT month, tier, band, quantity, CAST(amount AS DOUBLE), 'bill_lines' FROM bill_lines"""
    if month is None:
        month = con.sql(f"SELECT max(month) FROM ({lines})").fetchall()[0][0]
    if month is None:
        import pandas as pd

        return Report("tiers", "Revenue by tier (no charges yet)",
                      pd.DataFrame(columns=["tier", "band", "quantity", "amount", "share"]),
                      "bar", "tier", "amount", notes=["no charge or bill lines in the lake yet"])
    if not re.fullmatch(r"\d{4}-\d{2}", str(month)):
        raise MetersError(f"--month {month!r} must be YYYY-MM")
    source = con.sql(f"SELECT CASE WHEN count(*) FILTER (WHERE source = 'charge_lines') > 0 THEN 'charge_lines' "
                     f"ELSE 'bill_lines' END FROM ({lines}) WHERE month = '{month}'").fetchall()[0][0]
    df = con.sql(f"""
        SELECT tier, band, round(sum(quantity), 3) AS quantity, round(sum(amount), 2) AS amount,
               round(100 * sum(amount) / nullif(sum(sum(amount)) OVER (), 0), 2) AS share
        FROM ({lines}) WHERE month = '{month}' AND source = '{source}' GROUP BY ALL ORDER BY tier, band""").df()
    df["label"] = "tier " + df["tier"].astype(str) + " " + df["band"]
    return Report("tiers", f"Revenue by tier and band, {month} (share in %, from {source})", df, "bar",
                  "label", "amount")


@report("alerts", "by kind")
def alerts(con, start=None, end=None, **_) -> Report:
    """Alerts by kind (and the number of accounts and recipients reached)."""
    cond = []
    if start:
        cond.append(f"day >= DATE '{start.isoformat()}'")
    if end:
        cond.append(f"day <= DATE '{end.isoformat()}'")
    df = con.sql(f"""
        SELECT kind, count(*) AS alerts, count(DISTINCT account_id) AS accounts,
               count(DISTINCT recipient) AS recipients
        FROM alerts WHERE {' AND '.join(cond) or 'true'} GROUP BY kind ORDER BY alerts DESC, kind""").df()
    return Report("alerts", "Alerts by kind", df, "bar", "kind", "alerts")


@report("quality", "estimated share by concentrator")
def quality(con, start=None, end=None, **_) -> Report:
    """Data quality: the estimated share of intervals by data concentrator."""
    df = con.sql(f"""
        SELECT coalesce(m.concentrator, 'unknown') AS concentrator, count(*) AS intervals,
               count(*) FILTER (WHERE c.quality <> 'actual') AS estimated,
               round(100.0 * count(*) FILTER (WHERE c.quality <> 'actual') / count(*), 3) AS estimated_pct
        FROM {_consumption(con)} c LEFT JOIN meters m USING (meter_id)
        WHERE {_between(start, end)}
        GROUP BY ALL ORDER BY estimated_pct DESC, concentrator""").df()
    return Report("quality", "Estimated share of intervals by concentrator (%)", df, "bar",
                  "concentrator", "estimated_pct")


def run_report(lake: Lake | str, name: str, *, png: str | Path | None = None, **options) -> Report:
    """Run report ``name`` over the lake; save its chart to ``png`` when given."""
    import duckdb

    from .errors import LakeDamaged
    from .sql import connect, sql_error

    if name not in REPORTS:
        raise MetersError(f"unknown report {name!r}; choose one of: {', '.join(REPORTS)}")
    con = connect(lake)
    try:
        report = REPORTS[name](con, **options)
    except duckdb.Error as e:
        err = sql_error(e)
        if isinstance(err, LakeDamaged):  # a damaged lake file: named, exit 6
            raise err from None
        raise MetersError(f"report {name}: {str(e).splitlines()[0]}") from None
    finally:
        con.close()
    if png is not None:
        save_png(report, png)
    return report


def save_png(report: Report, path: str | Path) -> Path:
    """Draw the report's chart with matplotlib (Agg) and save it as a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    df = report.data
    facets = sorted(df[report.facet].unique()) if report.facet and not df.empty else [None]
    fig, axes = plt.subplots(len(facets), 1, figsize=(11, 3.2 * len(facets) + 1), dpi=100, squeeze=False)
    for ax, facet in zip(axes[:, 0], facets):
        part = df if facet is None else df[df[report.facet] == facet]
        _draw(ax, report, part)
        unit = part["unit"].iloc[0] if "unit" in part.columns and len(part) else ""
        ax.set_title(report.title if facet is None else f"{report.title}: {facet}")
        ax.set_ylabel(f"{report.y} ({unit})" if unit else report.y)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    plt.close(fig)
    return path


def _draw(ax, report: Report, df: "pd.DataFrame") -> None:
    if df.empty:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    elif report.chart == "line" and report.series:
        if report.x == "day":
            import matplotlib.dates as mdates
            ax.xaxis.set_major_locator(mdates.DayLocator())
            ax.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d"))
        for key, part in df.groupby(report.series):
            ax.plot(part[report.x], part[report.y], marker="o", label=str(key))
        ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.01, 0.5),
                  ncol=1 if df[report.series].nunique() <= 12 else 2)
    elif report.chart == "line":
        ax.plot(df[report.x], df[report.y])
    elif report.chart == "barh":
        ax.barh(df[report.x].astype(str)[::-1], df[report.y].astype(float)[::-1])
    else:
        ax.bar(df[report.x].astype(str), df[report.y].astype(float))
        ax.tick_params(axis="x", labelrotation=30)
