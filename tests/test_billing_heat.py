"""Heat accounts in the nightly run: the area bill at the season's start (prepaid and postpaid), the
two-part monthly bills with lines, VEE on heat registers (rollover, replacement), exactly-once re-runs."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pyarrow as pa
import pytest

from billing.batch import bill_day, bill_range
from meters.errors import MetersError
from meters.lake import init_lake
from meters.registry import import_accounts, save_meters
from test_billing_batch import write_registers

HEADER = "account_id,meter_id,tariff_id,mode,balance,premise_area\n"
AREA_PRE, AREA_POST, METERED = "900000001", "900000002", "900000003"
ROWS = (f"{AREA_PRE},500000000001,cn-bj-res-heat-area,prepaid,3000,86.45\n"
        f"{AREA_POST},500000000002,cn-bj-res-heat-area,postpaid,,100\n"
        f"{METERED},500000000003,cn-bj-res-heat-metered,postpaid,,100\n")
SEASON0 = dt.date(2026, 11, 15)


def make(tmp_path, rows=ROWS):
    lake = init_lake(tmp_path / "lake")
    (tmp_path / "a.csv").write_text(HEADER + rows)
    import_accounts(lake, tmp_path / "a.csv")
    return lake


def feed(lake, first, n, step=400, regs=None, meters=(500000000001, 500000000002, 500000000003)):
    """400 Wh per quarter hour = 38.4 kWh a day on every heat meter."""
    regs = regs or {m: 1_000_000 for m in meters}
    for i in range(n):
        for m in meters:
            regs[m] = write_registers(lake, m, first + dt.timedelta(days=i), regs[m], step)
    return regs


def rows(lake, table, account=None):
    out = [r for r in lake.read(table).to_pylist() if account is None or r["account_id"] == account]
    for r in out:
        if isinstance(r.get("day"), str):
            r["day"] = dt.date.fromisoformat(r["day"])
    return out


def test_premise_area_is_required_for_a_heating_tariff(tmp_path):
    with pytest.raises(MetersError, match="premise_area .* required for heating tariff cn-bj-res-heat-area"):
        make(tmp_path, f"{AREA_PRE},500000000001,cn-bj-res-heat-area,prepaid,3000,\n")


def test_area_bill_at_the_season_start_and_two_part_month_bill(tmp_path):
    lake = make(tmp_path)
    assert lake.read("accounts").column("premise_area").to_pylist() == [Decimal("86.45"), Decimal("100.00"),
                                                                        Decimal("100.00")]
    feed(lake, dt.date(2026, 11, 13), 18)
    bill_range(lake, dt.date(2026, 11, 13), dt.date(2026, 11, 30))
    # prepaid area account: one charge of 86.45 m² × 24 = 2074.80 on the season's first day
    charges = {r["day"]: r["amount"] for r in rows(lake, "charges", AREA_PRE)}
    assert charges[SEASON0] == Decimal("2074.80")
    assert all(v == 0 for d, v in charges.items() if d != SEASON0)
    assert rows(lake, "billing_state", AREA_PRE)[-1]["balance"] == Decimal("925.20")
    lines = [r for r in rows(lake, "charge_lines", AREA_PRE) if r["band"] == "area"]
    assert [(r["tier"], r["quantity"], r["unit_price"], r["amount"]) for r in lines] == [(0, 86.45, 24.0, 2074.8)]
    # postpaid area account: a season bill issued on 15 Nov covering the season
    [bill] = rows(lake, "bills", AREA_POST)
    assert (bill["period_start"], bill["period_end"], bill["amount"]) == (SEASON0, dt.date(2027, 3, 15),
                                                                         Decimal("2400.00"))
    # two-part: the November bill (15–30 Nov: 16 of 121 days of the 12 CNY/m² basic, 16 × 38.4 kWh × 0.16)
    [bill] = rows(lake, "bills", METERED)
    assert (bill["period_start"], bill["period_end"]) == (SEASON0, dt.date(2026, 11, 30))
    assert bill["quantity"] == pytest.approx(16 * 38.4)
    blines = {r["band"]: r for r in rows(lake, "bill_lines", METERED)}
    assert blines["basic"]["amount"] == Decimal("158.68")         # 1200 × 16 / 121
    assert blines["energy"]["amount"] == Decimal("98.30")         # 614.4 kWh × 0.16
    assert blines["energy"]["unit_price"] == 0.16 and blines["basic"]["quantity"] == 100.0
    assert bill["amount"] == Decimal("256.98")
    # exactly once: re-running the season's first day re-runs every later day with the same money
    before = {t: sorted(map(str, rows(lake, t))) for t in ("bills", "bill_lines")}
    money = sorted((r["account_id"], r["day"], r["amount"]) for r in rows(lake, "charges"))
    bill_day(lake, SEASON0)
    assert sorted((r["account_id"], r["day"], r["amount"]) for r in rows(lake, "charges")) == money
    assert {t: sorted(map(str, [{k: v for k, v in r.items() if k != "run_id"} for r in rows(lake, t)]))
            for t in ("bill_lines",)} == {"bill_lines": before["bill_lines"]}
    assert len(rows(lake, "bills")) == 2
    assert sum(r["amount"] for r in rows(lake, "ledger", AREA_PRE) if r["kind"] == "charge") == Decimal("-2074.80")


def test_heat_register_rollover_and_replacement_by_vee(tmp_path):
    lake = make(tmp_path, f"{METERED},500000000003,cn-bj-res-heat-metered,postpaid,,100\n")
    meters = lake.read("meters")
    save_meters(lake, meters.set_column(meters.schema.get_field_index("register_max"), "register_max",
                                        pa.array([100_000.0])))      # the register wraps after 99 999.999 kWh
    m = 500000000003
    day = dt.date(2026, 11, 20)
    # rollover: the register passes 99 999.999 kWh and wraps to 0 at the 25th quarter hour
    write_registers(lake, m, day - dt.timedelta(days=1), 99_990_000 - 96 * 400, 400)
    write_registers(lake, m, day, 99_990_000, lambda k: 400 if k != 25 else 400 - 100_000_000)
    res = bill_range(lake, day - dt.timedelta(days=1), day)
    iv = [r for r in rows(lake, "intervals") if r["meter_id"] == m and r["day"] == day]
    assert sum(r["quantity"] for r in iv) == pytest.approx(38.4)
    assert res[-1].vee["rollover"] >= 1
    # replacement: a new meter starting near 0 in the middle of the next day
    nxt = day + dt.timedelta(days=1)
    write_registers(lake, m, nxt, (99_990_000 + 96 * 400) % 100_000_000, 400,
                    extra={k: 5_000 + 400 * (k - 50) for k in range(50, 97)})
    [res] = bill_day(lake, nxt)
    iv = [r for r in rows(lake, "intervals") if r["meter_id"] == m and r["day"] == nxt]
    assert res.vee["replacement"] >= 1, res.vee
    assert all(r["quantity"] >= 0 for r in iv) and sum(r["quantity"] for r in iv) < 50


def test_a_bill_day_reads_the_carried_season_heat_not_the_season(tmp_path):
    """The season's heat so far is carried in ``billing_state``: the month-end bill of a two-part
    account reads only its own day (the earlier days' charges may be gone); a state written before
    the columns existed falls back to summing the season's charges once."""
    lake = make(tmp_path)
    feed(lake, dt.date(2026, 11, 13), 18)
    bill_range(lake, dt.date(2026, 11, 13), dt.date(2026, 11, 30))
    [bill] = rows(lake, "bills", METERED)
    lines = sorted((r["band"], r["amount"]) for r in rows(lake, "bill_lines", METERED))
    state = {r["day"]: r for r in rows(lake, "billing_state", METERED)}
    assert state[dt.date(2026, 11, 14)]["heat_season_milli"] == 0                     # before the season
    assert state[dt.date(2026, 11, 29)]["heat_season_milli"] == 15 * 38_400          # 15–29 Nov, milli-kWh
    assert state[dt.date(2026, 11, 30)]["heat_billed_milli"] == 16 * 38_400
    assert state[dt.date(2026, 11, 29)]["heat_billed_milli"] == 0

    def rebill_month_end():
        bill_day(lake, dt.date(2026, 11, 30))
        [again] = rows(lake, "bills", METERED)
        assert (again["amount"], again["quantity"]) == (bill["amount"], bill["quantity"])
        assert sorted((r["band"], r["amount"]) for r in rows(lake, "bill_lines", METERED)) == lines
    # a state from before the columns: the season's charges are summed once
    day29 = "2026-11-29"
    st = lake.read("billing_state", day29)
    lake.replace_partition("billing_state", day29, st.drop_columns(["heat_season_milli", "heat_billed_milli"]))
    rebill_month_end()
    # the carried state: the earlier days' charges are not read
    lake.replace_partition("billing_state", day29, st)
    for d in range(15, 30):
        key = dt.date(2026, 11, d).isoformat()
        lake.replace_partition("charges", key, lake.read("charges", key).slice(0, 0))
    rebill_month_end()


def test_heating_tariff_imported_shown_billed_and_removed(tmp_path):
    """`meters tariffs import` takes a heating tariff file like the others (checked by billing a test
    season), `meters tariffs show` shows it beside the built-in version, billing uses the version in
    force, and `meters tariffs remove` drops it again."""
    import json

    from click.testing import CliRunner

    from meters.cli import cli
    from meters.heating import builtin_heating

    lake = make(tmp_path)
    runner = CliRunner()
    doc = builtin_heating()["cn-bj-res-heat-metered"][0].to_dict()
    doc.update(effective_from="2026-11-15", energy_price=0.2, floor_ratio=0.5, source="test: a 2026 price")
    f = tmp_path / "bj-2026.json"
    f.write_text(json.dumps(doc))
    r = runner.invoke(cli, ["tariffs", "import", str(f), "--lake", str(lake.root)])
    assert r.exit_code == 0, r.output
    assert "imported 1 tariff version(s) (1 new or changed)" in r.output and "energy 0.2 CNY/kWh" in r.output
    r = runner.invoke(cli, ["tariffs", "show", "cn-bj-res-heat-metered", "--lake", str(lake.root)])
    assert r.exit_code == 0 and "effective from 2010-11-15" in r.output and "effective from 2026-11-15" in r.output
    assert "floor 0.5 × the area charge" in r.output and "source: test: a 2026 price" in r.output
    r = runner.invoke(cli, ["tariffs", "list", "--json", "--lake", str(lake.root)])
    assert {x["tariff_id"]: x["versions"] for x in json.loads(r.output)}["cn-bj-res-heat-metered"] == 2
    feed(lake, dt.date(2026, 11, 13), 18)
    bill_range(lake, dt.date(2026, 11, 13), dt.date(2026, 11, 30))
    blines = {r["band"]: r for r in rows(lake, "bill_lines", METERED)}
    assert blines["energy"]["unit_price"] == 0.2 and blines["energy"]["amount"] == Decimal("122.88")  # 614.4 × 0.2
    # refused: more than 4 decimals cannot be billed exactly; a heating file under an interval tariff's id
    doc.update(effective_from="2027-11-15", energy_price=0.123456)
    f.write_text(json.dumps(doc))
    r = runner.invoke(cli, ["tariffs", "import", str(f), "--lake", str(lake.root)])
    assert r.exit_code == 1 and "cannot bill a test season" in r.output and "4 decimal places" in r.output
    doc.update(energy_price=0.25)
    f.write_text(json.dumps(doc))
    r = runner.invoke(cli, ["tariffs", "import", str(f), "--id", "cn-bj-res-elec", "--lake", str(lake.root)])
    assert r.exit_code == 1 and "is a heating tariff" in r.output
    # a version used on settled days stays; a later one goes
    r = runner.invoke(cli, ["tariffs", "remove", "cn-bj-res-heat-metered", "--version", "2026-11-15",
                            "--lake", str(lake.root)])
    assert r.exit_code == 1 and "in force on settled days" in r.output
    assert runner.invoke(cli, ["tariffs", "import", str(f), "--lake", str(lake.root)]).exit_code == 0
    r = runner.invoke(cli, ["tariffs", "remove", "cn-bj-res-heat-metered", "--version", "2027-11-15",
                            "--lake", str(lake.root)])
    assert r.exit_code == 0, r.output


def test_reports_show_heat_like_the_others(tmp_path):
    """`meters report daily|tiers|monthly` on a lake with heat accounts: heat in kWh, its money in CNY
    under the heating tariff, and the per-m² lines counted in m² (never added to the heat)."""
    from meters.reports import run_report

    lake = make(tmp_path)
    feed(lake, dt.date(2026, 11, 13), 18)
    bill_range(lake, dt.date(2026, 11, 13), dt.date(2026, 11, 30))
    daily = run_report(lake, "daily").data
    heat = daily[(daily["utility"] == "heat") & (daily["day"].astype(str) == "2026-11-20")]
    assert heat["unit"].tolist() == ["kWh"] and heat["quantity"].tolist() == [pytest.approx(3 * 38.4)]
    tiers = run_report(lake, "tiers", month="2026-11").data
    got = {(r.tariff_id, r.unit, r.band): (r.quantity, r.amount, r.currency) for r in tiers.itertuples()}
    assert got[("cn-bj-res-heat-metered", "kWh", "energy")] == (pytest.approx(16 * 38.4), Decimal("98.30"), "CNY")
    assert got[("cn-bj-res-heat-metered", "m²", "basic")][1:] == (Decimal("158.68"), "CNY")
    assert got[("cn-bj-res-heat-area", "m²", "area")] == (pytest.approx(186.45), Decimal("4474.80"), "CNY")
    monthly = run_report(lake, "monthly", month="2026-11").data
    totals = monthly[(monthly["account_id"] == METERED) & (monthly["band"] == "total")]
    assert sorted(zip(totals["unit"], totals["amount"])) == [("kWh", Decimal("98.30")), ("m²", Decimal("158.68"))]
