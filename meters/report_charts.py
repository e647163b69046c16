"""Charts of :mod:`meters.reports` (matplotlib, Agg backend, PNG).

One chart per facet (utility and unit, or alert audience): quantities of different units never
share an axis. Axes say what and in which unit; bars start at zero; many labels become horizontal
bars of the first ``report.top`` rows; several series of bars are stacked.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any   # Any: a meters.reports.Report (imported there, not here)

MIN_SLOTS = 8   # bar slots of a vertical bar chart, however few bars it has

if TYPE_CHECKING:
    import pandas as pd


def _facets(report: Any, df: "pd.DataFrame") -> list[tuple[str | None, "pd.DataFrame"]]:
    if not report.facet or df.empty:
        return [(None, df)]
    keys = list(report.facet)
    return [(" ".join(str(v) for v in (k if isinstance(k, tuple) else (k,))), part)
            for k, part in df.groupby(keys if len(keys) > 1 else keys[0], sort=True)]


def save_png(report: Any, path: str | Path) -> Path:
    """Draw the report's chart and save it as a PNG at ``path``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    df = report.chart_data if report.chart_data is not None else report.data
    facets = _facets(report, df)
    heights = [_height(report, part) for _, part in facets]
    fig, axes = plt.subplots(len(facets), 1, figsize=(11, sum(heights) + 0.6), dpi=100, squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    for ax, (name, part) in zip(axes[:, 0], facets):
        if report.top and len(part) > report.top:
            name = f"{name + ', ' if name else ''}first {report.top} of {len(part)}"
            part = part.head(report.top)
        _draw(ax, report, part)
        unit = str(part["unit"].iloc[0]) if "unit" in part.columns and len(part) else ""
        y_label = report.y_label.replace("{unit}", unit) if report.y_label else report.y
        ax.set_title(report.title if name is None else f"{report.title}: {name}", fontsize="medium")
        if report.chart == "barh":
            ax.set_xlabel(y_label)
            ax.set_ylabel(report.x_label or report.x)
        else:
            ax.set_ylabel(y_label)
            ax.set_xlabel(report.x_label or report.x)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    plt.close(fig)
    return path


def _height(report: Any, part: "pd.DataFrame") -> float:
    if report.chart == "barh":
        rows = min(len(part), report.top or len(part))
        return max(2.5, 0.3 * rows + 1.2)
    return 3.4


def _draw(ax, report: Any, df: "pd.DataFrame") -> None:
    if df.empty:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        return
    y = df[report.y].astype(float)
    if report.chart == "line":
        if report.x == "day":
            import matplotlib.dates as mdates
            days = max(1, (df[report.x].max() - df[report.x].min()).days + 1)
            ax.xaxis.set_major_locator(mdates.DayLocator(interval=max(1, -(-days // 12))))
            ax.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d"))
        if report.series:
            for key, part in df.groupby(report.series):
                ax.plot(part[report.x], part[report.y].astype(float), marker="o", label=str(key))
            ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.01, 0.5),
                      ncol=1 if df[report.series].nunique() <= 12 else 2)
        else:
            ax.plot(df[report.x], y)
        ax.set_ylim(bottom=min(0.0, float(y.min())))
    elif report.chart == "barh":
        ax.barh(df[report.x].astype(str)[::-1], y[::-1])
        ax.set_xlim(left=min(0.0, float(y.min())))
    elif report.series:          # stacked bars, one colour per series
        table = df.pivot_table(index=report.x, columns=report.series, values=report.y, aggfunc="sum",
                               fill_value=0).astype(float)
        bottom = None
        for col in table.columns:
            ax.bar(table.index.astype(str), table[col], bottom=bottom, label=str(col))
            bottom = table[col] if bottom is None else bottom + table[col]
        ax.legend(fontsize="small")
        ax.set_xlim(-0.5, max(len(table.index), MIN_SLOTS) - 0.5)
    else:
        labels = df[report.x].astype(str)
        ax.bar(labels, y)
        ax.set_xlim(-0.5, max(len(labels), MIN_SLOTS) - 0.5)   # a few bars stay bars, not walls
        if len(labels) > 6:
            ax.tick_params(axis="x", labelrotation=30)
            for t in ax.get_xticklabels():
                t.set_horizontalalignment("right")
    ax.grid(axis="x" if report.chart == "barh" else "y", alpha=0.3)
