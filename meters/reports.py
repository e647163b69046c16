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
from .heating import AREA_BANDS

if TYPE_CHECKING:
    import pandas as pd

    from .lake import Lake


@dataclass
class Report:
    name: str
    title: str
    data: "pd.DataFrame"
    chart: str            # "line" | "bar" (stacked by series) | "barh"
    x: str
    y: str
    series: str | None = None   # column whose values become separate lines / stacked bars
    facet: tuple[str, ...] = ()  # columns whose values get a chart each (utility, unit: never one axis)
    x_label: str = ""
    y_label: str = ""           # "{unit}" is filled from the facet's unit column
    top: int | None = None      # the chart shows the first rows of each facet only
    chart_data: "pd.DataFrame | None" = None   # what the chart draws, when not ``data``
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
OPERATOR = "operator"   # the recipient of operator alerts (docs/billing.md); the others reach customers
CHART_TOP = 20          # bars drawn when a report has more (the table keeps every row)


def _df(con, sql: str) -> "pd.DataFrame":
    """A query's result as pandas through Arrow: DECIMAL money stays exact (``Decimal``)."""
    return con.sql(sql).to_arrow_table().to_pandas(integer_object_nulls=True)


def _between(start: dt.date | None, end: dt.date | None, day: str = LOCAL_DAY) -> str:
    if start and end and start > end:
        raise MetersError(f"--from {start} is after --to {end}")
    cond = []
    if start:
        cond.append(f"{day} >= DATE '{start.isoformat()}'")
    if end:
        cond.append(f"{day} <= DATE '{end.isoformat()}'")
    return " AND ".join(cond) or "true"


def _month(month) -> str:
    if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", str(month)):
        raise MetersError(f"--month {month!r} must be a month YYYY-MM")
    return str(month)


@report("daily", "consumption by utility and region")
def daily(con, start=None, end=None, **_) -> Report:
    """Daily consumption by utility, unit and region."""
    df = _df(con, f"""
        SELECT {LOCAL_DAY} AS day, coalesce(m.utility, 'unknown') AS utility, coalesce(m.unit, '?') AS unit,
               coalesce(m.region, 'unknown') AS region,
               round(sum(c.quantity), 3) AS quantity, count(DISTINCT c.meter_id) AS meters
        FROM {_consumption(con)} c LEFT JOIN meters m USING (meter_id)
        WHERE {_between(start, end)}
        GROUP BY ALL ORDER BY day, utility, unit, region""")
    return Report("daily", "Daily consumption by utility and region", df, "line", "day", "quantity", "region",
                  facet=("utility", "unit"), x_label="local day", y_label="consumption ({unit} per day)")


@report("top", "consumers per utility and unit")
def top(con, start=None, end=None, limit=10, **_) -> Report:
    """Top consumers over the period (all data by default), ranked within each utility and unit."""
    df = _df(con, f"""
        SELECT coalesce(m.utility, 'unknown') AS utility, coalesce(m.unit, '?') AS unit,
               row_number() OVER (PARTITION BY m.utility, m.unit ORDER BY sum(c.quantity) DESC, c.meter_id) AS rank,
               c.meter_id, any_value(a.account_id) AS account_id, any_value(m.region) AS region,
               round(sum(c.quantity), 3) AS quantity
        FROM {_consumption(con)} c LEFT JOIN meters m USING (meter_id) LEFT JOIN accounts a USING (meter_id)
        WHERE {_between(start, end)}
        GROUP BY c.meter_id, m.utility, m.unit
        QUALIFY rank <= {int(limit)} ORDER BY utility, unit, rank""")
    df["label"] = df["meter_id"].astype(str)
    return Report("top", f"Top {int(limit)} consumers per utility", df, "barh", "label", "quantity",
                  facet=("utility", "unit"), x_label="meter", y_label="consumption ({unit})")


@report("load-curve", "one meter")
def load_curve(con, meter=None, start=None, end=None, **_) -> Report:
    """One meter's load curve: consumption per interval, in the meter's unit."""
    if meter is None:
        raise MetersError("report load-curve needs --meter METER_ID")
    df = _df(con, f"""
        SELECT c.ts, c.quantity, coalesce(m.unit, '?') AS unit, c.quality
        FROM {_consumption(con)} c LEFT JOIN meters m USING (meter_id)
        WHERE meter_id = {int(meter)} AND {_between(start, end)} ORDER BY ts""")
    if df.empty:
        raise MetersError(f"meter {meter} has no consumption in the lake for that period")
    return Report("load-curve", f"Load curve of meter {meter}", df, "line", "ts", "quantity",
                  facet=("unit",), x_label="interval end (local time)", y_label="consumption ({unit} per interval)")


# a month's lines by tier and band with their utility, unit, tariff and currency: the daily charge
# lines (tariff of the day's charge) where the month has them, else the bill lines (account's tariff);
# a heating line priced per m² of the premise (meters.heating.AREA_BANDS) counts m², not heat
MONTH_LINES = """
WITH acc AS (SELECT account_id, any_value(meter_id) AS meter_id, any_value(tariff_id) AS tariff_id
             FROM accounts GROUP BY account_id),
cl AS (SELECT strftime(l.day, '%Y-%m') AS month, l.account_id, c.tariff_id, l.tier, l.band, l.quantity,
              l.amount_unrounded AS amount, 'charge_lines' AS source
       FROM charge_lines l LEFT JOIN (SELECT account_id, day, any_value(tariff_id) AS tariff_id FROM charges
                                      GROUP BY ALL) c USING (account_id, day)),
bl AS (SELECT month, account_id, NULL AS tariff_id, tier, band, quantity, CAST(amount AS DOUBLE) AS amount,
              'bill_lines' AS source FROM bill_lines),
lines AS (SELECT * FROM cl UNION ALL BY NAME SELECT * FROM bl
          WHERE month NOT IN (SELECT DISTINCT month FROM cl))
SELECT l.month, l.source, l.account_id, coalesce(t.utility, m.utility, 'unknown') AS utility,
       CASE WHEN l.band IN {area_bands} AND coalesce(t.utility, m.utility) = 'heat' THEN 'm²'
            ELSE coalesce(t.unit, m.unit, '?') END AS unit, coalesce(t.currency, '?') AS currency,
       coalesce(l.tariff_id, a.tariff_id, '?') AS tariff_id, l.tier, l.band, l.quantity, l.amount
FROM lines l LEFT JOIN acc a USING (account_id)
     LEFT JOIN tariffs t ON t.tariff_id = coalesce(l.tariff_id, a.tariff_id)
     LEFT JOIN meters m ON m.meter_id = a.meter_id
""".replace("{area_bands}", "(" + ", ".join(f"'{b}'" for b in AREA_BANDS) + ")")
MONEY_SQL = "CAST(round(sum(amount), 2) AS DECIMAL(18,2))"   # lines summed unrounded, rounded once


def _month_lines(con, month) -> tuple[str | None, str]:
    """The month asked for (default: the latest with lines) and the SELECT of its lines."""
    if month is None:
        month = con.sql(f"SELECT max(month) FROM ({MONTH_LINES})").fetchall()[0][0]
        if month is None:
            return None, ""
    month = _month(month)
    return month, f"SELECT * FROM ({MONTH_LINES}) WHERE month = '{month}'"


def _empty(name: str, title: str, columns: list[str], x: str, y: str) -> Report:
    import pandas as pd

    return Report(name, title, pd.DataFrame(columns=columns), "bar", x, y,
                  notes=["no charge or bill lines in the lake yet"])


@report("tiers", "the month's revenue by utility, tariff, tier and band")
def tiers(con, month=None, **_) -> Report:
    """How the month's revenue splits over tiers and bands, per utility, unit and tariff (bands differ
    between tariffs): the daily charge lines of the month (every account), or the month's bill lines
    where the lake has no charge lines. ``share``: % of the month's revenue in that currency."""
    columns = ["utility", "unit", "tariff_id", "tier", "band", "quantity", "currency", "amount", "share"]
    month, lines = _month_lines(con, month)
    if month is None:
        return _empty("tiers", "Revenue by tier (no charges yet)", columns, "tier", "amount")
    df = _df(con, f"""
        SELECT utility, unit, tariff_id, tier, band, round(sum(quantity), 3) AS quantity, currency,
               {MONEY_SQL} AS amount,
               round(100 * sum(amount) / nullif(sum(sum(amount)) OVER (PARTITION BY currency), 0), 2) AS share,
               any_value(source) AS source
        FROM ({lines}) GROUP BY utility, unit, tariff_id, tier, band, currency
        ORDER BY utility, unit, tariff_id, tier, band""")
    source = df["source"].iloc[0] if len(df) else "no lines"
    df = df.drop(columns=["source"])
    df["label"] = df["tariff_id"] + " t" + df["tier"].astype(str) + " " + df["band"]
    currency = "/".join(sorted(set(df["currency"]))) or "money"
    return Report("tiers", f"Revenue by tier and band, {month} (share in %, from {source})", df, "bar",
                  "label", "amount", facet=("utility", "unit"), x_label="tariff, tier and band",
                  y_label=f"revenue ({currency})", top=CHART_TOP)


@report("monthly", "per account and utility: consumption, money, tier and band split")
def monthly(con, month=None, **_) -> Report:
    """The month per account and utility: a ``total`` row (consumption in the utility's unit, money)
    followed by its tier and band lines."""
    columns = ["month", "account_id", "utility", "unit", "tariff_id", "tier", "band", "quantity", "currency",
               "amount"]
    month, lines = _month_lines(con, month)
    if month is None:
        return _empty("monthly", "Monthly statement (no charges yet)", columns, "utility", "amount")
    df = _df(con, f"""
        WITH l AS ({lines}),
        per_line AS (SELECT month, account_id, utility, unit, tariff_id, tier, band,
                            round(sum(quantity), 3) AS quantity, currency, {MONEY_SQL} AS amount
                     FROM l GROUP BY ALL),
        per_account AS (SELECT month, account_id, utility, unit, string_agg(DISTINCT tariff_id, ',') AS tariff_id,
                               NULL::INTEGER AS tier, 'total' AS band, round(sum(quantity), 3) AS quantity,
                               currency, CAST(sum(amount) AS DECIMAL(18,2)) AS amount
                        FROM per_line GROUP BY month, account_id, utility, unit, currency)
        SELECT {', '.join(columns)} FROM (SELECT * FROM per_account UNION ALL SELECT * FROM per_line)
        ORDER BY account_id, utility, unit, tier NULLS FIRST, band""")
    source = con.sql(f"SELECT any_value(source) FROM ({lines})").fetchall()[0][0]
    currency = "/".join(sorted(set(df["currency"]))) or "money"
    chart = df[df["band"] != "total"].copy()
    chart["series"] = "tier " + chart["tier"].astype(str)
    chart = chart.groupby(["utility", "series"], as_index=False)["amount"].sum()
    return Report("monthly", f"Monthly statement {month} per account and utility (from {source})", df, "bar",
                  "utility", "amount", series="series", x_label="utility", y_label=f"revenue ({currency})",
                  chart_data=chart)


@report("alerts", "by kind, customer and operator alerts apart")
def alerts(con, start=None, end=None, **_) -> Report:
    """Alerts by audience (customer or operator) and kind, with the accounts and recipients reached."""
    df = _df(con, f"""
        SELECT CASE WHEN recipient = '{OPERATOR}' THEN 'operator' ELSE 'customer' END AS audience,
               kind, count(*) AS alerts, count(DISTINCT account_id) AS accounts,
               count(DISTINCT recipient) AS recipients
        FROM alerts WHERE {_between(start, end, "day")} GROUP BY ALL ORDER BY audience, alerts DESC, kind""")
    return Report("alerts", "Alerts by kind", df, "bar", "kind", "alerts", facet=("audience",),
                  x_label="alert kind", y_label="alerts")


@report("quality", "estimated share by concentrator")
def quality(con, start=None, end=None, **_) -> Report:
    """Data quality: the estimated share of intervals by data concentrator (worst first)."""
    df = _df(con, f"""
        SELECT coalesce(m.concentrator, 'unknown') AS concentrator, count(*) AS intervals,
               count(*) FILTER (WHERE c.quality <> 'actual') AS estimated,
               round(100.0 * count(*) FILTER (WHERE c.quality <> 'actual') / count(*), 3) AS estimated_pct
        FROM {_consumption(con)} c LEFT JOIN meters m USING (meter_id)
        WHERE {_between(start, end)}
        GROUP BY ALL ORDER BY estimated_pct DESC, concentrator""")
    return Report("quality", "Estimated share of intervals by concentrator", df, "barh",
                  "concentrator", "estimated_pct", x_label="concentrator", y_label="estimated intervals (%)",
                  top=CHART_TOP)


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
    """Draw the report's chart (:mod:`meters.report_charts`) and save it as a PNG."""
    from .report_charts import save_png as save

    return save(report, path)
