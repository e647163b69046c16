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


@pytest.fixture
def billed_lake(small_lake):
    """Accounts on meters 1 (electricity, Beijing tiers), 2 (electricity, Shanghai TOU: other bands)
    and 3 (water) with two days of charges and charge lines, and an operator alert."""
    from meters.registry import save_accounts
    from meters.schemas import ACCOUNTS

    save_accounts(small_lake, pa.Table.from_pylist([
        {"account_id": "A1", "meter_id": 1, "tariff_id": "cn-bj-res-elec", "mode": "prepaid", "billing_day": 1},
        {"account_id": "A2", "meter_id": 2, "tariff_id": "cn-sh-res-elec-tou", "mode": "postpaid", "billing_day": 1},
        {"account_id": "W3", "meter_id": 3, "tariff_id": "cn-bj-res-water", "mode": "prepaid", "billing_day": 1},
    ], ACCOUNTS))
    tariff = {"A1": "cn-bj-res-elec", "A2": "cn-sh-res-elec-tou", "W3": "cn-bj-res-water"}
    lines = {  # account -> [(tier, band, quantity, unrounded amount)] per day
        "A1": [(1, "all", 4.0, 1.9585), (2, "all", 1.0, 0.5335)],
        "A2": [(1, "day", 8.0, 4.9124), (1, "night", 4.0, 1.2312)],
        "W3": [(1, "all", 0.2, 1.0005), (0, "fixed", 0.0, 0.5)],
    }
    for day in ("2026-11-23", "2026-11-24"):
        small_lake.write("charges", pa.table({
            "account_id": list(lines), "quantity": [sum(q for _, _, q, _ in v) for v in lines.values()],
            "amount": pa.array([Decimal(str(round(sum(a for *_, a in v), 2))) for v in lines.values()], MONEY),
            "tariff_id": [tariff[a] for a in lines]}), day)
        rows = [(a, t, b, q, m) for a, v in lines.items() for t, b, q, m in v]
        small_lake.write("charge_lines", pa.table({
            "account_id": [r[0] for r in rows], "tier": pa.array([r[1] for r in rows], pa.int32()),
            "band": [r[2] for r in rows], "quantity": [r[3] for r in rows], "amount": [r[4] for r in rows]}), day)
    small_lake.write("alerts", pa.table({
        "account_id": ["A1"], "ts": pa.array([dt.datetime(2026, 11, 23, 3, tzinfo=UTC)], pa.timestamp("ms", tz="UTC")),
        "kind": ["data_gap"], "recipient": ["operator"], "message": ["gap"]}), "2026-11-23")
    return small_lake


QUANTITY_REPORTS = [("daily", {}), ("top", {}), ("tiers", {"month": "2026-11"}), ("monthly", {"month": "2026-11"}),
                    ("load-curve", {"meter": 3})]


@pytest.mark.parametrize("name,options", QUANTITY_REPORTS)
def test_no_report_adds_different_units(billed_lake, name, options):
    """Every quantity sits beside its unit, and per unit the report's quantities add up to that unit's
    consumption only."""
    r = run_report(billed_lake, name, **options)
    assert "unit" in r.data.columns and r.data["unit"].notna().all()
    assert set(r.data["unit"]) <= {"kWh", "m3"}
    per_unit = r.data.groupby("unit")["quantity"].sum().to_dict() if name != "monthly" else \
        r.data[r.data["band"] != "total"].groupby("unit")["quantity"].sum().to_dict()
    expected = {"daily": {"kWh": 32.0, "m3": 0.4}, "top": {"kWh": 32.0, "m3": 0.4},
                "tiers": {"kWh": 34.0, "m3": 0.4}, "monthly": {"kWh": 34.0, "m3": 0.4},
                "load-curve": {"m3": 0.4}}[name]
    assert per_unit == pytest.approx(expected)


def test_tiers_split_per_tariff_where_bands_differ(billed_lake):
    r = run_report(billed_lake, "tiers", month="2026-11")
    got = {(u, t, tier, b): (q, a) for u, t, tier, b, q, a in
           r.data[["unit", "tariff_id", "tier", "band", "quantity", "amount"]].itertuples(index=False)}
    assert got[("kWh", "cn-sh-res-elec-tou", 1, "day")] == (16.0, Decimal("9.82"))   # 2 × 4.9124, rounded once
    assert got[("kWh", "cn-bj-res-elec", 2, "all")] == (2.0, Decimal("1.07"))
    assert got[("m3", "cn-bj-res-water", 0, "fixed")] == (0.0, Decimal("1.00"))
    assert len(got) == 6
    assert float(r.data["share"].sum()) == pytest.approx(100.0, abs=0.02)


def test_monthly_statement_per_account_and_utility(billed_lake):
    r = run_report(billed_lake, "monthly", month="2026-11")
    d = r.data
    totals = d[d["band"] == "total"].set_index("account_id")
    assert totals.loc["A2", ["utility", "unit", "tariff_id"]].tolist() == ["electricity", "kWh", "cn-sh-res-elec-tou"]
    assert totals.loc["A2", "quantity"] == pytest.approx(24.0) and totals.loc["A2", "amount"] == Decimal("12.28")
    assert totals.loc["W3", ["unit", "quantity"]].tolist() == ["m3", pytest.approx(0.4)]
    assert totals.loc["W3", "amount"] == Decimal("3.00")
    for account, part in d[d["band"] != "total"].groupby("account_id"):   # a total is the sum of its lines
        assert sum(part["amount"]) == totals.loc[account, "amount"]
        assert part["quantity"].sum() == pytest.approx(totals.loc[account, "quantity"])
    assert d["account_id"].tolist()[:3] == ["A1", "A1", "A1"] and d["band"].iloc[0] == "total"
    csv = CliRunner().invoke(cli, ["report", "monthly", "--lake", str(billed_lake.root), "--format", "csv"])
    assert csv.exit_code == 0, csv.output
    assert "2026-11,A2,electricity,kWh,cn-sh-res-elec-tou,,total,24.0,CNY,12.28" in csv.stdout
    assert "2026-11,W3,water,m3,cn-bj-res-water,0,fixed,0.0,CNY,1.00" in csv.stdout


def test_alerts_keep_customer_and_operator_apart(billed_lake):
    r = run_report(billed_lake, "alerts")
    assert r.data[["audience", "kind", "alerts"]].values.tolist() == [
        ["customer", "low_balance", 2], ["customer", "arrears", 1], ["operator", "data_gap", 1]]


@pytest.mark.parametrize("args,message", [
    (["tiers", "--month", "2026-13"], "is not a month YYYY-MM"),
    (["monthly", "--month", "Nov"], "is not a month YYYY-MM"),
    (["daily", "--from", "2026-11-24", "--to", "2026-11-23"], "is after --to"),
    (["top", "--from", "2026-11-31"], "is not a date"),
])
def test_bad_report_arguments_exit_2_with_a_message(billed_lake, args, message):
    r = CliRunner().invoke(cli, ["report", *args, "--lake", str(billed_lake.root)])
    assert r.exit_code == 2 and message in r.stderr, r.output
    assert r.stdout == ""


@pytest.mark.parametrize("name", sorted(REPORTS))
def test_charts_are_drawn_not_blank(billed_lake, tmp_path, name):
    import matplotlib.image as mpimg

    png = tmp_path / f"{name}.png"
    run_report(billed_lake, name, png=png, meter=1 if name == "load-curve" else None)
    img = mpimg.imread(png)
    assert png.stat().st_size > 10_000 and img.shape[0] >= 250 and img.shape[1] >= 1000
    rgb = img[..., :3]
    ink = (rgb.min(axis=2) < 0.5).mean()          # share of dark or coloured pixels: text, axes, marks
    assert 0.005 < ink < 0.5, ink
    assert len({tuple(p) for p in rgb.reshape(-1, 3)[::97].round(2)}) > 5     # more than axes and text


def test_chart_axes_name_their_units(billed_lake):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from meters.report_charts import save_png

    seen = {}
    real_savefig = plt.Figure.savefig

    def spy(fig, *a, **kw):
        seen["labels"] = [(ax.get_title(), ax.get_xlabel(), ax.get_ylabel(), ax.get_ylim()) for ax in fig.axes]
        return real_savefig(fig, *a, **kw)

    plt.Figure.savefig = spy
    try:
        save_png(run_report(billed_lake, "daily"), "/dev/null")
        titles = {t.split(": ")[-1]: y for t, _, y, _ in seen["labels"]}
        assert titles == {"electricity kWh": "consumption (kWh per day)", "water m3": "consumption (m3 per day)"}
        assert all(lim[0] == 0 for *_, lim in seen["labels"])
        save_png(run_report(billed_lake, "tiers", month="2026-11"), "/dev/null")
        assert {y for _, _, y, _ in seen["labels"]} == {"revenue (CNY)"}
        save_png(run_report(billed_lake, "quality"), "/dev/null")
        assert seen["labels"][0][1] == "estimated intervals (%)"
    finally:
        plt.Figure.savefig = real_savefig
