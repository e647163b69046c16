"""`meters bill` and `meters pay` through click's CliRunner."""
from __future__ import annotations

import json

from click.testing import CliRunner

from meters.cli import cli
from test_billing_batch import D0, feed, ledger, make_lake


def test_bill_and_pay_commands(tmp_path):
    lake = make_lake(tmp_path, "U-9,11,cn-bj-res-elec,prepaid,40,,,,,self:138;son:139\n")
    feed(lake, 11, D0, 3)
    run = CliRunner()
    lk = str(lake.root)
    r = run.invoke(cli, ["bill", "--lake", lk, "--date", "2026-11-01"])
    assert r.exit_code == 0, r.output
    assert "accounts" in r.output and "4.69" in r.output
    r = run.invoke(cli, ["pay", "U-9", "100", "--ref", "son-2026-11-02", "--at", "2026-11-02T10:00:00+08:00",
                         "--lake", lk])
    assert r.exit_code == 0 and "balance 135.31" in r.output
    r = run.invoke(cli, ["pay", "U-9", "100", "--ref", "son-2026-11-02", "--at", "2026-11-02T10:00:00+08:00",
                         "--lake", lk])
    assert r.exit_code == 0 and "already applied" in r.output
    r = run.invoke(cli, ["bill", "--lake", lk, "--from", "2026-11-02", "--to", "2026-11-03", "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output)
    assert summary["days"] == ["2026-11-02", "2026-11-03"] and summary["money"] == "9.37"
    assert [x["amount"] for x in ledger(lake) if x["kind"] == "topup"] == [100]


def test_cli_errors_are_one_line(tmp_path):
    lake = make_lake(tmp_path, "U-9,11,cn-bj-res-elec,prepaid,40,,,,,self:138\n")
    feed(lake, 11, D0, 1)
    run = CliRunner()
    lk = str(lake.root)
    for args, msg in [
        (["bill", "--lake", lk, "--from", "2026-11-02"], "--from and --to together"),
        (["bill", "--lake", lk, "--date", "2026-13-01"], "not a date"),
        (["bill", "--lake", lk, "--from", "2026-11-02", "--to", "2026-11-01"], "before --from"),
        (["pay", "nobody", "10", "--ref", "r", "--lake", lk], "unknown user number"),
        (["pay", "U-9", "ten", "--ref", "r", "--lake", lk], "not a number"),
        (["bill", "--lake", str(tmp_path / "nolake"), "--date", "2026-11-01"], "not a meters lake"),
    ]:
        r = run.invoke(cli, args)
        assert r.exit_code == 1, (args, r.output)
        assert msg in r.output and r.output.count("\n") == 1, r.output
    assert run.invoke(cli, ["bill", "--lake", lk, "--date", "2026-11-01"]).exit_code == 0
    r = run.invoke(cli, ["bill", "--lake", lk, "--date", "2026-11-03"])
    assert r.exit_code == 1 and "2026-11-02 is not settled" in r.output


def test_pay_negative_amount_is_a_clear_error_not_an_option(tmp_path):
    from meters.lake import init_lake

    lake = init_lake(tmp_path / "lake")
    r = CliRunner().invoke(cli, ["pay", "A1", "-5", "--ref", "R", "--lake", str(lake.root)])
    assert r.exit_code == 1 and "must be positive" in r.output
