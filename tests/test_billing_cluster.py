"""`bill --cluster local:N`: the day mapped over meter shards with dask.distributed is identical to
the cent to the single-process run (and so are every other output and the carried state)."""
from __future__ import annotations

import datetime as dt

import pytest

pytest.importorskip("dask.distributed")
pytest.importorskip("simulator.engine")

from billing.batch import bill_range  # noqa: E402
from meters.errors import MetersError  # noqa: E402
from test_billing_simulated import D0, simulated_lake  # noqa: E402


def rows(lake, name):
    t = lake.read(name)
    t = t.drop_columns([c for c in ("run_id", "day", "month") if c in t.column_names])
    return sorted(t.to_pylist(), key=repr)


def test_cluster_run_identical_to_single_process(tmp_path):
    faults = "lost=0.02,duplicate=0.02,spike=0.003,replacement=0.05"
    one, _ = simulated_lake(tmp_path / "one", faults, n=120)
    many, _ = simulated_lake(tmp_path / "many", faults, n=120)
    last = D0 + dt.timedelta(days=1)
    a = bill_range(one, D0, last)
    b = bill_range(many, D0, last, cluster="local:2")
    assert [r.money_cents for r in a] == [r.money_cents for r in b]
    assert [r.vee for r in a] == [r.vee for r in b]
    for name in ("ledger", "charges", "charge_lines", "alerts", "billing_state", "intervals", "bills"):
        assert rows(one, name) == rows(many, name), name


def test_cluster_spec_errors(tmp_path):
    lake, _ = simulated_lake(tmp_path / "x", "none", n=10)
    for spec in ("local:0", "local:x", "yarn://q"):
        with pytest.raises(MetersError, match="--cluster"):
            bill_range(lake, D0, D0, cluster=spec)
