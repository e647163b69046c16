"""meters report: every canned report on a small lake, its numbers, and its PNG."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pyarrow as pa
import pytest
from click.testing import CliRunner

from meters.cli import cli
from meters.errors import MetersError
from meters.registry import save_meters
from meters.reports import REPORTS, run_report
from meters.schemas import METERS

UTC = dt.timezone.utc
MONEY = pa.decimal128(18, 2)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def small_lake(lake):
    """3 meters (2 regions), registers over 2 local days, intervals for meter 1, bill lines, alerts."""
    save_meters(lake, pa.Table.from_pylist([
        {"meter_id": 1, "utility": "electricity", "unit": "kWh", "concentrator": "dcu-a", "region": "north"},
        {"meter_id": 2, "utility": "electricity", "unit": "kWh", "concentrator": "dcu-a", "region": "south"},
        {"meter_id": 3, "utility": "water", "unit": "m3", "concentrator": "dcu-b", "region": "north"},
    ], METERS))
    # local midnight 2026-11-23 in Asia/Shanghai is 16:00 UTC the day before; 6-hour reads for 2 days
    start = dt.datetime(2026, 11, 22, 16, tzinfo=UTC)
    rows = []
    per_step = {1: 1000, 2: 3000, 3: 50}     # thousandths per 6 hours
    for meter, step in per_step.items():
        for k in range(9):                   # 00:00 day 1 .. 00:00 day 3: 8 intervals
            rows.append((meter, start + dt.timedelta(hours=6 * k), 100_000 + k * step))
    for day in ("2026-11-23", "2026-11-24", "2026-11-25"):
        part = [r for r in rows if lake.local_day(r[1]).isoformat() == day]
        lake.write("readings", pa.table({
            "meter_id": pa.array([r[0] for r in part], pa.int64()),
            "ts": pa.array([r[1] for r in part], pa.timestamp("s", tz="UTC")),
            "register_milli": pa.array([r[2] for r in part], pa.int64()),
            "sender": ["dcu-a"] * len(part),
            "received_at": pa.array([r[1] for r in part], pa.timestamp("ms", tz="UTC"))}), day)
    lake.write("bill_lines", pa.table({
        "account_id": ["A1", "A1", "A2"], "period_start": [dt.date(2026, 11, 1)] * 3,
        "tier": pa.array([1, 2, 1], pa.int32()), "band": ["all", "all", "all"],
        "quantity": [200.0, 50.0, 100.0], "unit_price": [0.5, 0.55, 0.5],
        "amount": pa.array([Decimal("100.00"), Decimal("27.50"), Decimal("50.00")], MONEY)}), "2026-11")
    lake.write("alerts", pa.table({
        "account_id": ["A1", "A1", "A2"], "ts": pa.array([start] * 3, pa.timestamp("ms", tz="UTC")),
        "kind": ["low_balance", "low_balance", "arrears"], "recipient": ["138", "139", "137"],
        "message": ["m1", "m2", "m3"]}), "2026-11-23")
    return lake


def test_daily_by_utility_and_region(small_lake):
    r = run_report(small_lake, "daily")
    got = {(str(d.date()) if hasattr(d, "date") else str(d), u, reg): q
           for d, u, reg, q in r.data[["day", "utility", "region", "quantity"]].itertuples(index=False)}
    # 4 intervals per day; meter 1 (north, 1 kWh each) and 3 (water north) and 2 (south, 3 kWh each)
    assert got[("2026-11-23", "electricity", "north")] == pytest.approx(4.0)
    assert got[("2026-11-23", "electricity", "south")] == pytest.approx(12.0)
    assert got[("2026-11-24", "water", "north")] == pytest.approx(0.2)
    assert len(got) == 6


def test_top_consumers_are_ranked_per_utility_and_unit(small_lake):
    r = run_report(small_lake, "top", limit=2)
    assert r.data[["utility", "unit", "rank", "meter_id"]].values.tolist() == [
        ["electricity", "kWh", 1, 2], ["electricity", "kWh", 2, 1], ["water", "m3", 1, 3]]
    assert r.data["quantity"].tolist() == pytest.approx([24.0, 8.0, 0.4])
    assert run_report(small_lake, "top", limit=1).data["meter_id"].tolist() == [2, 3]


def test_load_curve(small_lake):
    r = run_report(small_lake, "load-curve", meter=2)
    assert len(r.data) == 8 and set(r.data["quantity"].round(6)) == {3.0}
    with pytest.raises(MetersError, match="--meter"):
        run_report(small_lake, "load-curve")
    with pytest.raises(MetersError, match="no consumption"):
        run_report(small_lake, "load-curve", meter=999)


def test_tiers_share_of_revenue(small_lake):
    r = run_report(small_lake, "tiers")
    d = {t: (float(a), s) for t, a, s in r.data[["tier", "amount", "share"]].itertuples(index=False)}
    assert d[1][0] == 150.0 and d[2][0] == 27.5
    assert d[1][1] == pytest.approx(100 * 150 / 177.5, abs=0.01)


def test_alerts_by_kind(small_lake):
    r = run_report(small_lake, "alerts")
    assert r.data[["kind", "alerts", "accounts"]].values.tolist() == [["low_balance", 2, 1], ["arrears", 1, 1]]


def test_quality_prefers_billing_intervals(small_lake):
    r = run_report(small_lake, "quality")
    assert set(r.data["estimated"]) == {0}          # device registers only: all actual
    t = pa.timestamp("s", tz="UTC")
    ts = [dt.datetime(2026, 11, 23, h, tzinfo=UTC) for h in (1, 2, 3, 4)]
    small_lake.write("intervals", pa.table({"meter_id": pa.array([1, 1, 1, 3], pa.int64()), "ts": pa.array(ts, t),
                                            "quantity": [1.0, 1.0, 1.0, 1.0],
                                            "quality": ["actual", "estimated", "estimated", "actual"]}), "2026-11-23")
    r = run_report(small_lake, "quality")
    got = dict(zip(r.data["concentrator"], r.data["estimated_pct"]))
    assert got == {"dcu-a": pytest.approx(66.667, abs=0.001), "dcu-b": 0.0}


@pytest.mark.parametrize("name", sorted(REPORTS))
def test_each_report_saves_a_png_via_cli(small_lake, tmp_path, name):
    png = tmp_path / f"{name}.png"
    args = ["report", name, "--lake", str(small_lake.root), "--png", str(png)]
    if name == "load-curve":
        args += ["--meter", "1"]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 5000


def test_report_csv_output(small_lake):
    r = CliRunner().invoke(cli, ["report", "alerts", "--lake", str(small_lake.root), "--format", "csv"])
    assert r.output.splitlines()[:2] == ["audience,kind,alerts,accounts,recipients", "customer,low_balance,2,1,2"]


def test_tiers_prefer_the_months_charge_lines(small_lake):
    small_lake.write("charge_lines", pa.table({
        "account_id": ["A1", "A2", "A1"], "tier": pa.array([1, 1, 3], pa.int32()), "band": ["peak", "peak", "all"],
        "quantity": [10.0, 5.0, 2.0], "amount": [6.0, 3.0, 2.0]}), "2026-11-23")
    r = run_report(small_lake, "tiers", month="2026-11")
    assert "charge_lines" in r.title
    assert r.data[["tier", "band", "amount"]].values.tolist() == [[1, "peak", 9.0], [3, "all", 2.0]]
    assert r.data["share"].tolist() == pytest.approx([81.82, 18.18])
    with pytest.raises(MetersError, match="YYYY-MM"):
        run_report(small_lake, "tiers", month="Nov")
