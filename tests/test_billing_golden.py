"""Golden billing: a fixed small simulated city billed over a month end (postpaid bills, prepaid
top-ups and alerts, VEE estimates, a payment, a re-run with late readings) gives exactly the ledger,
bills, bill lines, alerts, charges, charge lines, carried state and run summaries checked in under
tests/data/golden/ — byte for byte. Regenerate with ``python tests/data/make_golden.py`` only for a
change meant to change billing results."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
spec = importlib.util.spec_from_file_location("make_golden", HERE / "data" / "make_golden.py")
make_golden = importlib.util.module_from_spec(spec)
spec.loader.exec_module(make_golden)


@pytest.fixture(scope="module")
def billed(tmp_path_factory):
    return make_golden.golden_files(tmp_path_factory.mktemp("golden"))


def test_golden_files_are_all_checked_in(billed):
    assert sorted(billed) == sorted(p.name for p in make_golden.GOLDEN.glob("*.csv"))


@pytest.mark.parametrize("name", [f"{t}.csv" for t in make_golden.TABLES] + ["results.csv"])
def test_billing_output_equals_golden(billed, name):
    want = (make_golden.GOLDEN / name).read_text()
    got = billed[name]
    if got != want:  # name the first differing line
        for i, (a, b) in enumerate(zip(got.splitlines(), want.splitlines())):
            assert a == b, f"{name} line {i + 1} differs"
    assert got == want, f"{name}: {len(got.splitlines())} lines, golden has {len(want.splitlines())}"


def test_golden_city_covers_the_billing_paths():
    """The city exercises what the golden files are meant to pin down (a test that can fail when the
    scenario is changed so that a path disappears)."""
    ledger = (make_golden.GOLDEN / "ledger.csv").read_text()
    alerts = (make_golden.GOLDEN / "alerts.csv").read_text()
    for kind in ("opening", "charge", "adjustment", "auto_topup", "topup"):
        assert f",{kind}," in ledger, kind
    for kind in ("bill_issued", "auto_topup", "low_balance", "arrears", "disconnect", "data_gap", "payment"):
        assert f",{kind}," in alerts, kind
    assert len((make_golden.GOLDEN / "bills.csv").read_text().splitlines()) > 1
