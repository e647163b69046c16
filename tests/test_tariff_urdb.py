"""OpenEI URDB import (the real files in tests/data/urdb), `meters tariffs import`, and bills on the real
London load against NREL SAM's Utilityrate5 (optional oracle: skipped when PySAM is not installed)."""
from __future__ import annotations

import dataclasses
import functools
import datetime as dt
import json

import numpy as np
import pytest
from click.testing import CliRunner

from billing.engine import price_intervals
from billing.tariff_arrays import compile_tariffs, day_number
from meters.cli import cli
from meters.errors import MetersError
from meters.iotools.urdb import import_file, load_records
from meters.registry import load_tariffs

PGE = "pge_E-1_region_T_tiered_60e4c63a5457a3a91679e0f2.json"
APS_ET2 = "aps_ET-2_residential_tou_574613aa5457a3557e906f5b.json"
APS_R2 = "aps_R-2_residential_tou_demand_5cacc9d15457a31d537780e2.json"
PYSAM = "pysam_urdbv7_tou_tiered.json"
REOPT = "reoptjl_multi_tier_urdb_response.json"
LP1 = "south_central_ppd_LP1_539f6a23ec4f024411ec8beb.json"
SIMPLE = ["clp_rate1_flat_adj_62fe87aff6dee418ab7bfcf9.json", "consumers_RSP_residential_tou_6793d5f0408c15764c05042b.json",
          "jea_RS_flat_fixedcharge_66905b9123dfda7f4b0d5691.json", APS_ET2, PGE]


@pytest.fixture(scope="module")
def urdb(test_data):
    return test_data / "urdb"


def test_pge_tiered_daily_units_and_minimum(urdb):
    (t,) = import_file(urdb / PGE).tariffs
    assert t.tariff_id == "urdb-60e4c63a5457a3a91679e0f2" and t.effective_from == dt.date(2021, 3, 1)
    assert t.tier_bound_unit == "day" and t.tier_method == "pro_rata" and t.tier_cycle == "month"
    assert t.tier_bounds[6] == (6.8, 27.2) and t.tier_bounds[0] == (8.2, 32.8)
    assert t.prices[0] == (0.25902, 0.32596, 0.40745) and t.minimum_charge == 10
    # July 700 kWh: 6.8 × 31 = 210.8 in tier 1, (27.2 − 6.8) × 31 = 632.4 wide tier 2
    tb = compile_tariffs([t])
    lts = day_number(dt.date(2023, 7, 1)) * 86400 + 3600 * np.arange(1, 31 * 24 + 1) - 1
    r = price_intervals(tb, [0, lts.size], lts, np.full(lts.size, 700 / lts.size), [0])
    np.testing.assert_allclose(r.line_quantity[0].sum(axis=0), [210.8, 489.2, 0], rtol=1e-12)
    assert r.bill_total[0] == pytest.approx(210.8 * 0.25902 + 489.2 * 0.32596, rel=1e-12)


def test_quirks_enddate_adj_fixed(urdb):
    (t,) = import_file(urdb / APS_ET2).tariffs
    assert t.effective_from == dt.date(2016, 5, 3)
    assert any("enddate" in n and "ignored" in n for n in t.notes)
    assert t.prices[0][0] == pytest.approx(0.24477 + 0.02824917) and t.fixed_charge == 16.91
    assert t.n_periods == 4 and t.weekday_schedule[6][12] == 0 and t.weekday_schedule[6][11] == 1


def test_float_schedules_old_fixed_field_and_demand_reported(urdb):
    with pytest.raises(MetersError, match=r"unsupported: TOU demand charges.*flat demand.*annual minimum"):
        import_file(urdb / PYSAM, tariff_id="pysam")
    r = import_file(urdb / PYSAM, tariff_id="pysam", ignore_unsupported=True)
    (t,) = r.tariffs
    assert len(r.omitted) == 3 and sum(n.startswith("NOT MODELLED") for n in t.notes) == 3
    assert t.fixed_charge == 35.28 and t.minimum_charge == 1.0
    assert t.weekday_schedule[0][0] == 1 and t.tier_bounds[0] == (100.0,)
    # PySAM's own test expects this energy matrix
    assert [round(p, 6) for p in t.prices[0]] == [0.070769, 0.082949]
    assert [round(p, 6) for p in t.prices[1]] == [0.056909, 0.069079]


def test_no_label_needs_an_id_and_per_day_fixed(urdb):
    with pytest.raises(MetersError, match="no label"):
        import_file(urdb / REOPT, ignore_unsupported=True)
    (t,) = import_file(urdb / REOPT, tariff_id="reopt", ignore_unsupported=True).tariffs
    assert t.fixed_charge == 3.298 and t.fixed_charge_unit == "day"
    assert t.tier_bounds[6] == (20000.0,) and t.prices[2] == (0.061731, 0.061731)


def test_twice_encoded_json_and_kwh_per_kw_refused(urdb):
    (rec,) = load_records(urdb / LP1)
    assert rec["label"] == "539f6a23ec4f024411ec8beb"
    with pytest.raises(MetersError, match="kWh/kW are not supported.*flat demand"):
        import_file(urdb / LP1, ignore_unsupported=True)


def test_bad_files(tmp_path, urdb):
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(MetersError, match="not JSON"):
        import_file(bad)
    rec = json.loads((urdb / PGE).read_text())["items"][0]
    rec["energyweekdayschedule"][0][0] = 7
    bad.write_text(json.dumps(rec))
    with pytest.raises(MetersError, match="refers to period 7"):
        import_file(bad)
    with pytest.raises(MetersError, match="bad.json: No such file|No such file"):
        import_file(tmp_path / "missing.json")


def test_cli_import_show_and_catalog(tmp_path, urdb):
    runner = CliRunner()
    lake = tmp_path / "lake"
    assert runner.invoke(cli, ["init", "--lake", str(lake)]).exit_code == 0
    r = runner.invoke(cli, ["tariffs", "import", str(urdb / PGE), "--id", "pge-e1", "--lake", str(lake)])
    assert r.exit_code == 0, r.output
    assert "imported 1 tariff version(s)" in r.output and "8.2, 32.8" in r.output
    r = runner.invoke(cli, ["tariffs", "import", str(urdb / APS_R2), "--lake", str(lake)])
    assert r.exit_code == 1 and "demand" in r.output and "--ignore-unsupported" in r.output
    r = runner.invoke(cli, ["tariffs", "import", str(urdb / APS_R2), "--ignore-unsupported", "--lake", str(lake)])
    assert r.exit_code == 0 and "not modelled" in r.output
    cat = load_tariffs(__import__("meters.lake", fromlist=["open_lake"]).open_lake(lake))
    assert "pge-e1" in cat and "urdb-5cacc9d15457a31d537780e2" in cat and "cn-gd-res-elec" in cat
    r = runner.invoke(cli, ["tariffs", "show", "pge-e1", "--lake", str(lake)])
    assert r.exit_code == 0 and "minimum charge 10" in r.output and "day × days in month" in r.output
    # our own tariff files import too
    own = tmp_path / "own.json"
    own.write_text(cat["cn-gd-res-elec"][0].to_json())
    r = runner.invoke(cli, ["tariffs", "import", str(own), "--id", "gz-copy", "--lake", str(lake)])
    assert r.exit_code == 0, r.output


# -- NREL SAM oracle ------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=2)
def london_hourly(test_data, household="MAC000002") -> np.ndarray:
    """8 760 hourly kWh of one complete LCL household in 2013 (half-hours summed; tstp = start)."""
    import pandas as pd

    df = pd.read_csv(test_data / "real-load" / "lcl_2013_MAC000002_halfhourly.csv.gz",
                     dtype={"energy(kWh/hh)": str})
    one = df[df["LCLid"] == household]
    hh = ((pd.to_datetime(one["tstp"]) - pd.Timestamp("2013-01-01")).dt.total_seconds() // 1800).astype(int)
    x = np.zeros(17520)
    x[hh.to_numpy()] = one["energy(kWh/hh)"].str.strip().astype(float).to_numpy()
    assert (x > 0).sum() > 17000
    return x.reshape(8760, 2).sum(axis=1)


def sam_monthly(rec: dict, load: np.ndarray, fixed_monthly: float | None) -> dict[str, np.ndarray]:
    import PySAM.Utilityrate5 as ur
    from PySAM.UtilityRateTools import URDBv8_to_ElectricityRates

    rates = URDBv8_to_ElectricityRates(json.loads(json.dumps(rec)))
    m = ur.new()
    m.ElectricityRates.assign(rates)
    m.ElectricityRates.ur_dc_enable = 0            # demand charges: not modelled by us (reported on import)
    m.ElectricityRates.ur_annual_min_charge = 0
    if fixed_monthly is not None:
        m.ElectricityRates.ur_monthly_fixed_charge = fixed_monthly
    m.ElectricityRates.rate_escalation = [0]
    m.Lifetime.analysis_period = 1
    m.Lifetime.system_use_lifetime_output = 0
    m.Lifetime.inflation_rate = 0
    m.SystemOutput.gen = [0.0] * 8760
    m.SystemOutput.degradation = [0]
    m.Load.load = load.tolist()
    m.Load.load_escalation = [0]
    m.execute()
    o = m.Outputs
    return {"energy": np.asarray(o.charge_w_sys_ec_ym)[1], "fixed": np.asarray(o.charge_w_sys_fixed_ym)[1],
            "bill": np.asarray(o.utility_bill_w_sys_ym)[1]}


@pytest.mark.parametrize("name", SIMPLE + [APS_R2, PYSAM, REOPT])
def test_bills_agree_with_sam_month_by_month(test_data, urdb, name):
    pytest.importorskip("PySAM.Utilityrate5")
    load = london_hourly(test_data)
    (rec,) = load_records(urdb / name)
    (t,) = import_file(urdb / name, tariff_id="t", ignore_unsupported=True).tariffs
    tb = compile_tariffs([dataclasses.replace(t, effective_from=dt.date(2000, 1, 1))])
    # SAM's year starts on a Monday with no leap day: 2018 is such a year
    lts = day_number(dt.date(2018, 1, 1)) * 86400 + 3600 * np.arange(1, 8761) - 1
    r = price_intervals(tb, [0, 8760], lts, load, [0])
    assert r.bill_start.size == 12 and r.bill_closed.all()
    if name in (PGE, PYSAM):                # the load does reach the upper tiers: the split is compared
        assert r.line_quantity[:, :, 1:].sum() > 100
    sam = sam_monthly(rec, load, t.fixed_charge if t.fixed_charge_unit == "month" else 0.0)
    np.testing.assert_allclose(r.bill_energy, sam["energy"], rtol=1e-6)
    if t.fixed_charge_unit == "day":    # SAM spreads $/day as 365/12 days a month; we charge each day
        days = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])
        np.testing.assert_allclose(r.bill_fixed, t.fixed_charge * days, rtol=1e-12)
    else:
        np.testing.assert_allclose(r.bill_total, sam["bill"], rtol=1e-6)
