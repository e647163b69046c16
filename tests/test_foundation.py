"""Lake, registry (accounts import) and tariff catalog: the foundation's contracts."""
from __future__ import annotations

import json
import os
from decimal import Decimal

import pyarrow as pa
import pytest
from click.testing import CliRunner

from meters.cli import cli
from meters.errors import MetersError
from meters.lake import Lake, init_lake
from meters.registry import import_accounts, load_tariffs
from meters.schemas import TABLES
from meters.tariffs import builtin_catalog

HEADER = "account_id,meter_id,tariff_id,mode,billing_day,balance,warn_1,warn_2,topup_below,topup_amount,contacts\n"
GOOD = HEADER + (
    "310000001,1101000001,cn-gd-res-elec,prepaid,1,50.00,30,20,20,100,self:13800000001;daughter:13900000002\n"
    "310000002,1101000002,cn-bj-res-water,postpaid,15,,,,,,\n")


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_init_is_idempotent_and_keeps_timezone(tmp_path):
    lake = init_lake(tmp_path / "l", "Asia/Shanghai")
    assert lake.timezone_name == "Asia/Shanghai"
    assert set(load_tariffs(lake)) == {t.tariff_id for t in builtin_catalog()}
    init_lake(tmp_path / "l", "Asia/Shanghai")
    with pytest.raises(MetersError, match="refusing to change"):
        init_lake(tmp_path / "l", "Europe/London")
    with pytest.raises(MetersError, match="unknown time zone"):
        init_lake(tmp_path / "x", "Mars/Olympus")
    with pytest.raises(MetersError, match="meters init"):
        Lake(tmp_path / "nowhere")


def test_cli_init(tmp_path):
    r = run("init", "--lake", tmp_path / "l", "--timezone", "Europe/London")
    assert r.exit_code == 0 and "Europe/London" in r.output
    assert json.loads((tmp_path / "l" / "lake.json").read_text())["timezone"] == "Europe/London"


def test_atomic_write_and_replace_partition(lake):
    t = pa.table({"account_id": ["a"], "recipient": ["r"], "relation": ["self"]})
    lake.write("alerts", pa.table({"ts": pa.array([0], pa.timestamp("ms", tz="UTC")), "kind": ["x"],
                                   "recipient": ["op"], "message": ["m"]}), "2026-11-23")
    assert lake.partitions("alerts") == ["2026-11-23"]
    lake.replace_partition("contacts", None, t)
    lake.replace_partition("contacts", None, pa.concat_tables([t, t]))
    assert lake.read("contacts").num_rows == 2
    # no temporary file is left visible and exactly one data file remains
    files = os.listdir(lake.table_dir("contacts"))
    assert not any(f.endswith(".tmp") for f in files)
    assert len(lake.files("contacts")) == 1
    with pytest.raises(MetersError, match="unknown column"):
        lake.write("contacts", t.append_column("bogus", pa.array([1])))
    with pytest.raises(MetersError, match="required column 'recipient'"):
        lake.write("contacts", t.drop_columns(["recipient"]))


def test_replace_partition_crash_leaves_old_content(lake, monkeypatch):
    t1 = pa.table({"account_id": ["a"], "recipient": ["r1"], "relation": ["self"]})
    lake.write("contacts", t1)  # a plain write: no manifest yet
    import meters.lake as lk

    real = lk.atomic_write_bytes
    calls = []

    def crash_on_switch(path, data):
        calls.append(path)
        if len(calls) == 2:  # the switch to the new file
            raise OSError("power cut")
        real(path, data)

    monkeypatch.setattr(lk, "atomic_write_bytes", crash_on_switch)
    with pytest.raises(OSError):
        lake.replace_partition("contacts", None, pa.table({"account_id": ["b"], "recipient": ["r2"],
                                                            "relation": ["self"]}))
    monkeypatch.setattr(lk, "atomic_write_bytes", real)
    assert lake.read("contacts").column("recipient").to_pylist() == ["r1"]


def test_every_contract_table_has_a_schema():
    for name in ["readings", "deadletter", "meters", "accounts", "contacts", "tariffs", "intervals",
                 "charges", "bills", "bill_lines", "ledger", "alerts"]:
        assert name in TABLES


def test_accounts_import_roundtrip_and_idempotent(lake, tmp_path):
    f = tmp_path / "a.csv"
    f.write_text(GOOD)
    r = import_accounts(lake, f)
    assert r["accounts"] == 2 and r["contacts"] == 2 and r["accounts_changed"] == 2
    acc = {a["account_id"]: a for a in lake.read("accounts").to_pylist()}
    assert acc["310000001"]["balance"] == Decimal("50.00")
    assert acc["310000001"]["topup_amount"] == Decimal("100.00")
    assert acc["310000002"]["warn_1"] == Decimal("30.00") and acc["310000002"]["billing_day"] == 15
    assert acc["310000002"]["topup_below"] is None
    contacts = lake.read("contacts").to_pylist()
    assert {(c["relation"], c["recipient"]) for c in contacts} == {("self", "13800000001"),
                                                                   ("daughter", "13900000002")}
    meters = {m["meter_id"]: m for m in lake.read("meters").to_pylist()}
    assert meters[1101000002]["utility"] == "water" and meters[1101000002]["unit"] == "m3"
    before = {n: sorted(map(str, lake.files(n))) for n in ("accounts", "contacts", "meters")}
    assert import_accounts(lake, f)["accounts_changed"] == 0
    assert before == {n: sorted(map(str, lake.files(n))) for n in ("accounts", "contacts", "meters")}


@pytest.mark.parametrize("body, message", [
    ("account_id,meter_id,mode\nA,1,prepaid\n", "missing column(s) tariff_id"),
    (HEADER + "A,1,cn-nowhere,prepaid,1,,,,,,\n", "line 2: unknown tariff 'cn-nowhere'"),
    (HEADER + "A,1,cn-gd-res-elec,prepaid,1,,,,,,\nA,2,cn-gd-res-elec,prepaid,1,,,,,,\n",
     "line 3: duplicate account 'A' (first on line 2)"),
    (HEADER + "A,1,cn-gd-res-elec,prepaid,1,12a,,,,,\n", "line 2: balance '12a' is not a number"),
    (HEADER + "A,x1,cn-gd-res-elec,prepaid,1,,,,,,\n", "line 2: meter_id 'x1' is not an integer"),
    (HEADER + "A,1,cn-gd-res-elec,cash,1,,,,,,\n", "line 2: mode 'cash'"),
    (HEADER + "A,1,cn-gd-res-elec,prepaid,31,,,,,,\n", "line 2: billing_day '31'"),
    (HEADER + "A,1,cn-gd-res-elec,prepaid,1,,,,20,,\n", "line 2: topup_below and topup_amount go together"),
    (HEADER + "A,1,cn-gd-res-elec,prepaid,1,,,,,,daughter\n", "line 2: contact 'daughter'"),
    (HEADER + "A,1,cn-bj-res-water,prepaid,1,,,,,,\n" + "B,1,cn-bj-res-water,prepaid,1,,,,,,\n",
     "line 3: meter 1 already belongs"),
])
def test_accounts_import_bad_rows_import_nothing(lake, tmp_path, body, message):
    f = tmp_path / "bad.csv"
    f.write_text(body)
    with pytest.raises(MetersError) as e:
        import_accounts(lake, f)
    assert message in str(e.value)
    assert lake.read("accounts").num_rows == 0 and lake.read("contacts").num_rows == 0
    r = run("accounts", "import", f, "--lake", lake.root)
    assert r.exit_code == 1 and message in r.output


def test_bad_row_after_good_rows_imports_nothing(lake, tmp_path):
    f = tmp_path / "a.csv"
    f.write_text(GOOD + "310000003,1101000003,cn-gd-res-elec,prepaid,1,abc,,,,,\n")
    with pytest.raises(MetersError, match="line 4: balance 'abc'"):
        import_accounts(lake, f)
    assert lake.read("accounts").num_rows == 0


def test_tariffs_list_and_show(lake):
    r = run("tariffs", "list", "--lake", lake.root, "--json")
    assert r.exit_code == 0
    ids = {t["tariff_id"] for t in json.loads(r.output)}
    assert ids == {"cn-gd-res-elec", "cn-bj-res-elec", "cn-sh-res-elec-tou", "cn-bj-res-water", "cn-bj-res-gas",
                   "cn-bj-res-heat-area", "cn-bj-res-heat-boiler-area", "cn-bj-res-heat-metered",
                   "cn-hrb-res-heat-metered"}
    r = run("tariffs", "show", "cn-gd-res-elec", "--lake", lake.root)
    assert r.exit_code == 0
    assert "months 5–10: tier bounds 260, 600 kWh" in r.output
    assert "months 1–4,11–12: tier bounds 200, 400 kWh" in r.output
    assert "0.59886875 / 0.64886875 / 0.89886875" in r.output
    r = run("tariffs", "show", "cn-sh-res-elec-tou", "--lake", lake.root)
    assert "weekday hours 06–22" in r.output and "weekday hours 00–06, 22–24" in r.output
    assert "0.617 / 0.677 / 0.977" in r.output and "0.307 / 0.337 / 0.487" in r.output
    r = run("tariffs", "show", "nope", "--lake", lake.root)
    assert r.exit_code == 1 and "unknown tariff 'nope'" in r.output


def test_builtin_tariff_figures():
    cat = {t.tariff_id: t for t in builtin_catalog()}
    assert cat["cn-bj-res-elec"].tier_cycle == "year"
    assert cat["cn-bj-res-elec"].tier_bounds[0] == (2880.0, 4800.0)
    assert cat["cn-bj-res-water"].prices[0] == (5.0, 7.0, 9.0)
    assert cat["cn-bj-res-gas"].tier_bounds[11] == (350.0, 500.0)
    gd = cat["cn-gd-res-elec"]
    assert gd.tier_bounds[6] == (260.0, 600.0) and gd.tier_bounds[0] == (200.0, 400.0)
    assert gd.prices[0][1] - gd.prices[0][0] == pytest.approx(0.05)
    assert gd.prices[0][2] - gd.prices[0][0] == pytest.approx(0.30)
