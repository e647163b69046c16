"""Structural guards of billing: no kernel trades exactness for speed (fastmath), and the carried state's
Arrow mapping covers exactly the ``billing_state`` columns (a new state field is a two-place change)."""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import fields
from pathlib import Path

import numpy as np
import pyarrow as pa
from numba.core.dispatcher import Dispatcher

import billing
from billing import state
from billing.engine import CycleState
from meters.schemas import BILLING_STATE

BILLING = Path(billing.__file__).parent


def _modules():
    return [importlib.import_module(f"billing.{m.name}") for m in pkgutil.iter_modules(billing.__path__)]


def test_no_billing_kernel_uses_fastmath():
    """Money must not depend on reassociated floating point: every numba kernel is compiled without
    fastmath (its dispatcher's target options), and no billing source asks for it any other way."""
    kernels = [(m.__name__, name, obj) for m in _modules() for name, obj in vars(m).items()
               if isinstance(obj, Dispatcher)]
    assert {m for m, _, _ in kernels} >= {"billing.engine", "billing.vee"}   # the guard sees the kernels
    for module, name, d in kernels:
        assert not d.targetoptions.get("fastmath"), f"{module}.{name} is compiled with fastmath"
    for path in BILLING.glob("*.py"):
        assert "fastmath" not in path.read_text(), f"{path.name} mentions fastmath"


def test_state_mapping_covers_exactly_the_billing_state_columns():
    mapped = {n for n, _ in state.stored_fields()} | {f.name for f in fields(CycleState)}
    keys = {"account_id", "meter_id", "period_start"}   # the row's identity, and a derived column
    assert mapped | keys == set(BILLING_STATE.names)
    assert not mapped & keys


class _Accounts:
    """The part of billing.accounts.Accounts the state mapping reads."""

    def __init__(self, ids, meters, tables):
        self.n = len(ids)
        self.account_arrow = pa.array(ids, pa.string())
        self.meter_ids = np.asarray(meters, np.int64)
        self.opening = np.arange(self.n, dtype=np.int64) * 100
        self.tables = tables

    def index_of(self, ids):
        import pyarrow.compute as pc
        return pc.index_in(ids, value_set=self.account_arrow).fill_null(-1).to_numpy().astype(np.int64)


def test_state_round_trips_through_the_lake(lake):
    """Every field written is read back into the next day; a replaced meter restarts its per-meter
    fields; an account without state is fresh."""
    import datetime as dt

    from billing.tariff_arrays import compile_tariffs
    from meters.registry import load_tariffs

    tables = compile_tariffs(load_tariffs(lake))
    acc = _Accounts(["a", "b", "c"], [1, 2, 3], tables)
    rng = np.random.default_rng(5)
    s = state.Carried.fresh(3, tables, acc.opening)
    for name, meta in state.stored_fields():
        v = getattr(s, name)
        v[:] = rng.integers(1, 100, 3).astype(v.dtype) if v.dtype != bool else [True, False, True]
    s.base_ts[:] = [1_795_000_000, state.NO_TS, 1_795_000_900]
    for f in fields(CycleState):
        v = getattr(s.engine, f.name)
        v[...] = rng.integers(1, 100, v.shape).astype(v.dtype)
    day = dt.date(2026, 11, 2)
    state.commit(lake, day, state.to_table(s, acc.account_arrow, acc.meter_ids))
    nxt = _Accounts(["a", "b", "c", "d"], [1, 2, 9, 4], tables)   # c's meter was replaced; d is new
    got = state.load(lake, day + dt.timedelta(days=1), nxt)
    assert got.opening.tolist() == [False, False, False, True]
    for name, meta in state.stored_fields():
        want = getattr(s, name)
        if meta["per_meter"]:
            want = np.where([True, True, False], want, meta["default"])
        fresh = nxt.opening[3] if meta["default"] is None else meta["default"]
        np.testing.assert_array_equal(getattr(got, name), np.append(want, fresh), err_msg=name)
    for f in fields(CycleState):
        np.testing.assert_array_equal(getattr(got.engine, f.name)[:3], getattr(s.engine, f.name), err_msg=f.name)
