"""One billing day for a set of accounts: VEE → tariff engine → settlement → output tables.

:func:`compute` is a function of what :func:`billing.inputs.read_day` read (the state of D−1,
readings, payments, the first run's charges) and the account snapshot: it writes nothing and returns
a :class:`DayOutput`; the orchestrator (:mod:`billing.batch`) or a Dask shard (:mod:`billing.cluster`)
writes it. (Contacts of alerted accounts are read on demand by the ``recipients``.)
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import time
from dataclasses import dataclass, field, fields
from functools import cached_property

import numpy as np
import pyarrow as pa

from meters.errors import MetersError
from meters.schemas import UTC_MS

from . import alerts, heating, ledger, outputs, state, vee
from .accounts import Accounts
from .config import Config
from .days import NONE_DAY, day_number
from .guards import covered_meters
from .inputs import DayInputs
from .money import to_cents
from .engine import local_times, price_grid, price_intervals
from .settle import Settled, postpaid_notices, settle_prepaid


@dataclass
class Validated:
    """The VEE kernel's outcome for the day (:func:`billing.vee.vee_kernel_parts`)."""

    q: np.ndarray          # [accounts, slots] milli-units per interval (units after pricing's scaling)
    quality: np.ndarray    # [accounts, slots] vee.ACTUAL / ESTIMATED / SUBSTITUTED
    flag: np.ndarray       # [accounts, slots] reason of an estimate (vee.OK: none)
    base_pos: np.ndarray   # carried register base: position on the next day's grid (vee.NO_BASE: none)
    base_reg: np.ndarray   # … and its value
    avg: np.ndarray        # carried profile average
    pending: np.ndarray    # carried estimate to true-up
    step: np.ndarray       # carried reading step
    counts: np.ndarray     # outcome counts (vee.count_dict)

    @cached_property
    def estimated(self) -> np.ndarray:
        """Per account: the number of the day's intervals that are not actual readings (counted once:
        the settlement's shares and the alerts' data gaps both take them)."""
        return alerts.estimated_counts(self.quality)

    def estimated_share(self) -> np.ndarray:
        """Per account: the share of the day's intervals that are not actual readings."""
        return self.estimated / max(self.quality.shape[1], 1)


@dataclass
class Settlement:
    """The day's settlement of every account (int64 cents; masks)."""

    prepaid: np.ndarray            # prepaid accounts
    payments: np.ndarray           # paid during the day
    first: np.ndarray              # prepaid: the day's charge as first recorded (ledger ``charge``)
    adjust: np.ndarray             # prepaid: a re-run's correction (ledger ``adjustment``)
    prepaid_settled: Settled       # prepaid balances, top-ups and alert masks
    closed: np.ndarray             # postpaid: bill period closed today
    bill_cents: np.ndarray         # … its bill's total
    bill_start: np.ndarray         # day numbers of the bill period (a first bill: from the first billed day)
    bill_end: np.ndarray
    due_day: int                   # due day of today's bills
    balance: np.ndarray            # every account's balance after the day
    due: np.ndarray                # postpaid: due day of the oldest unpaid bill carried on
    notice: np.ndarray             # postpaid: overdue notice today
    overdue: np.ndarray            # … days overdue
    penalty: np.ndarray            # … late penalty so far (information)
    partial: np.ndarray            # postpaid: today's bill is the account's first, from its first billed day
    estimated: np.ndarray          # most of the account's intervals today were estimated
    held: np.ndarray               # prepaid: a due disconnection withheld (the day is mostly estimates)


@dataclass
class DayOutput:
    """The day's output tables and counts for a set of accounts (shards' outputs concatenate)."""

    accounts: int = 0
    readings: int = 0
    intervals: int = 0
    money_cents: int = 0
    adjustments_cents: int = 0
    bills_n: int = 0
    covered: int = 0                          # accounts whose meter has readings inside the day
    estimated_intervals: int = 0
    vee: dict = field(default_factory=dict)
    interval_rows: outputs.IntervalRows | None = None   # or, written by shards, the names of their files:
    intervals_files: list = field(default_factory=list)
    charges: pa.Table | None = None
    charge_lines: pa.Table | None = None
    ledger: pa.Table | None = None
    alerts: pa.Table | None = None
    alert_section: np.ndarray | None = None   # each alert's section (kinds in order: alerts.day_sections)
    bills: pa.Table | None = None
    bill_lines: pa.Table | None = None
    state: pa.Table | None = None
    # heating's rows, which follow every account's engine rows in their tables (billing/heating.py)
    heat_charge_lines: pa.Table | None = None
    heat_bills: pa.Table | None = None
    heat_bill_lines: pa.Table | None = None
    timings: dict = field(default_factory=dict)

    TAILS = {"charge_lines": "heat_charge_lines", "bills": "heat_bills", "bill_lines": "heat_bill_lines"}

    @classmethod
    def merge(cls, parts: list["DayOutput"]) -> "DayOutput":
        """Concatenate block outputs (contiguous meter ranges, in order)."""
        out = cls()
        for f in fields(cls):
            values = [getattr(p, f.name) for p in parts]
            known = [x for x in values if x is not None]
            if f.name == "vee":
                v = {n: sum(p.get(n, 0) for p in values) for n in values[0]}
            elif f.name == "timings":
                v = {}
            elif known and isinstance(known[0], (pa.Table, np.ndarray)):
                v = pa.concat_tables(known) if isinstance(known[0], pa.Table) else np.concatenate(known)
            elif isinstance(values[0], list):
                v = [x for p in values for x in p]
            elif isinstance(values[0], int):
                v = sum(values)
            else:
                v = values[0]
            setattr(out, f.name, v)
        return out

    def counts_of(self, part: "DayOutput") -> None:
        """Add a block's counts to this summary (its tables are written, not kept)."""
        for f in fields(self):
            v = getattr(part, f.name)
            if isinstance(v, int) and not isinstance(v, bool):
                setattr(self, f.name, getattr(self, f.name) + v)
        self.vee = {n: self.vee.get(n, 0) + c for n, c in part.vee.items()}


def compute(inputs: DayInputs, acc: Accounts, cfg: Config, run_id: str, recipients: alerts.Recipients,
            lap) -> DayOutput:
    """VEE → price → settle → tables for the snapshot's accounts (``lap(name, t0)`` times the steps)."""
    grid, carried = inputs.grid, inputs.carried
    out = DayOutput(accounts=acc.n)
    I, S, start_s, slot_end = grid.interval_s, grid.slots, grid.start_s, grid.slot_end
    dn = day_number(grid.day)
    t0 = time.perf_counter()
    # 1. VEE
    out.readings = inputs.readings
    (main, extra), unknown = inputs.parts, inputs.unknown
    inputs.parts = None        # consumed
    out.covered = int(covered_meters((main, extra), acc.n).sum())
    has_base = carried.base_ts != state.NO_TS
    base_pos = np.full(acc.n, vee.NO_BASE)
    base_pos[has_base] = (carried.base_ts[has_base] - start_s) / I
    v = Validated(*vee.vee_kernel_parts(
        *main, *extra, base_pos, carried.base_reg_milli, carried.avg_milli, carried.pending_milli, acc.reg_max,
        acc.limit, carried.step, S))
    del main, extra
    out.vee = vee.count_dict(v.counts)
    out.vee["unknown_meter"] = unknown
    out.vee["duplicate"] += inputs.duplicates
    out.intervals = int(v.q.size)
    est_share = v.estimated_share()
    out.estimated_intervals = int(np.rint(est_share * S).sum())
    t0 = lap("vee", t0)
    # 2. price
    q_units = v.q
    q_units /= 1000.0  # in place: one 8-byte matrix per interval is enough
    engine_state = carried.engine
    off0 = grid.start.astimezone(grid.tz).utcoffset().total_seconds()
    off1 = grid.end.astimezone(grid.tz).utcoffset().total_seconds()
    if off0 == off1:
        priced = price_grid(acc.tables, q_units, start_s + int(off0) + I, I, acc.meter_tariff,
                            state=engine_state, billing_day=acc.billing_day)
    else:
        lts = local_times(slot_end, grid.tz)
        # when clocks go back, the repeated hour's local times repeat: the engine prices them in
        # that wall-clock hour again (its band), in UTC order
        lts = np.tile(lts, acc.n)
        priced = price_intervals(acc.tables, np.arange(acc.n + 1, dtype=np.int64) * S, lts, q_units.ravel(),
                                 acc.meter_tariff, state=engine_state, billing_day=acc.billing_day)
    if len(priced.day_meter) != acc.n or len(priced.bill_meter) != acc.n:
        raise MetersError("tariff engine returned an unexpected number of day rows")
    same_period = priced.state.bill_start == engine_state.bill_start
    total_cents = to_cents(priced.day_total)
    today = total_cents - np.where(same_period, carried.charged_cents, 0)
    day_qty = q_units.sum(axis=1)
    hd = heating.day_heating(acc.heat, acc.n, grid.day, inputs.heat_before, day_qty)
    today = today + hd.cents              # heating: the season's bills (billing/heating.py)
    t0 = lap("price", t0)
    # 3. settle
    is_heat = np.zeros(acc.n, bool)
    is_heat[acc.heat.idx] = True
    closed = ~acc.mode_prepaid & priced.bill_closed & ~is_heat
    billed_from = np.where(carried.opening, dn, carried.billed_from).astype(np.int32)
    partial = closed & (billed_from > priced.bill_start)    # (NONE_DAY: a state from before the column)
    bill_start = np.where(partial, billed_from, priced.bill_start)
    bill_lines, bill_cents = outputs.bill_lines(acc, priced, closed, bill_start)
    engine_closed, heat_bill = closed, ~acc.mode_prepaid & hd.billed
    closed = closed | heat_bill
    bill_cents = np.where(heat_bill, hd.cents, bill_cents)
    bill_start = np.where(heat_bill, hd.period_start, bill_start)
    s = _settle(dn, acc, carried, inputs, today, priced, closed, bill_cents, cfg, bill_start, partial, est_share)
    t0 = lap("settle", t0)
    # 4. output tables
    ts_end = pa.scalar(grid.end - dt.timedelta(milliseconds=1), UTC_MS)
    out.interval_rows = outputs.IntervalRows(acc.meter_ids, slot_end, q_units, v.quality, v.flag)
    out.charges = outputs.charges_table(acc, day_qty, today, run_id, s.estimated)
    out.charge_lines = outputs.charge_lines(acc, priced, engine_state, same_period)
    if hd.has_lines:
        out.heat_charge_lines = heating.line_rows(hd, acc.account_arrow, None, False).cast(out.charge_lines.schema)
    out.ledger = ledger.day_table(acc, grid, carried, s, ts_end)
    if inputs.paid_back:  # already ordered by `meters pay`: do not repeat
        s.prepaid_settled.reconnect &= ~np.isin(acc.account_ids, list(inputs.paid_back))
    out.alerts, out.alert_section = alerts.day_sections(acc, grid.day, ts_end, s, v.quality, v.flag, recipients,
                                                        estimated=v.estimated)
    out.bills = outputs.bills_table(acc, priced, dataclasses.replace(s, closed=engine_closed), run_id)
    out.bill_lines = bill_lines
    if heat_bill.any():
        out.heat_bills, out.heat_bill_lines = heating.add_bills(out.bills.schema.empty_table(),
                                                                bill_lines.schema.empty_table(), hd, heat_bill, s,
                                                                acc.account_arrow, run_id)
    out.money_cents = int(today.sum())
    out.adjustments_cents = int(s.adjust.sum())
    out.bills_n = int(s.closed.sum())
    carried_on = _carried_on(acc, grid, s, v, priced.state, total_cents, billed_from)
    heating.carry(carried_on, hd)         # heating: the season's heat so far (billing/heating.py)
    out.state = state.to_table(carried_on, acc.account_arrow, acc.meter_ids)
    lap("tables", t0)
    return out


def _settle(dn: int, acc: Accounts, carried: state.Carried, inputs: DayInputs, today, priced, closed,
            bill_cents, cfg: Config, bill_start, partial, est_share) -> Settlement:
    """Prepaid: payments, the day's charge (the first run's, plus a re-run's adjustment), top-ups,
    levels (no disconnection on a day priced mostly from estimates). Postpaid: payments, the bills of
    closed periods, due dates and overdue notices."""
    prepaid, post = acc.mode_prepaid, ~acc.mode_prepaid
    original = inputs.original
    first = np.where(original >= 0, original, today) if original is not None else today
    first = np.where(prepaid, first, 0)
    charge = np.where(prepaid, today, 0)
    mostly_estimated = est_share > cfg.policy.disconnect_max_estimated
    args = (dn, carried.balance, inputs.payments, charge, carried.level, carried.arrears_since,
            carried.disconnected, acc.warn_1, acc.warn_2, acc.topup_below, acc.topup_amount, cfg.policy)
    st = settle_prepaid(*args, hold_disconnect=mostly_estimated)
    held = prepaid & mostly_estimated & settle_prepaid(*args).disconnect if mostly_estimated.any() else \
        np.zeros(acc.n, bool)
    balance = np.where(prepaid, st.balance, carried.balance + inputs.payments - bill_cents)
    due = np.where(closed & (carried.due_date == NONE_DAY), dn + cfg.policy.due_days, carried.due_date)
    notice, overdue, penalty, due = postpaid_notices(dn, balance, due.astype(np.int32), cfg.policy)
    return Settlement(prepaid=prepaid, payments=inputs.payments, first=first, adjust=charge - first,
                      prepaid_settled=st, closed=closed, bill_cents=bill_cents, bill_start=bill_start,
                      bill_end=priced.bill_end, due_day=dn + cfg.policy.due_days, balance=balance,
                      due=np.where(post, due, NONE_DAY), notice=notice & post, overdue=overdue, penalty=penalty,
                      partial=partial, estimated=est_share > 0.5, held=held)


def _carried_on(acc: Accounts, grid, s: Settlement, v: Validated, engine, total_cents,
               billed_from) -> state.Carried:
    """The state this day hands to the next."""
    has = v.base_pos > vee.NO_BASE
    base_ts = np.full(acc.n, state.NO_TS, np.int64)
    base_ts[has] = grid.start_s + np.round((v.base_pos[has] + grid.slots) * grid.interval_s).astype(np.int64)
    st, prepaid = s.prepaid_settled, s.prepaid
    return state.Carried(
        base_ts=base_ts, base_reg_milli=v.base_reg, avg_milli=v.avg, pending_milli=v.pending, step=v.step,
        charged_cents=total_cents, balance=s.balance, level=np.where(prepaid, st.level, 0).astype(np.int8),
        arrears_since=np.where(prepaid, st.arrears_since, NONE_DAY), disconnected=np.where(prepaid, st.disconnected, False),
        due_date=s.due, billed_from=billed_from, engine=engine, opening=np.zeros(acc.n, bool))
