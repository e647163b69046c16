"""Plain-Python reference of the tariff engine's semantics (tests only: slow, obviously written; not shipped).

It reads :class:`meters.tariffs.Tariff` objects directly (not the compiled tables) and uses
``datetime`` for the calendar, so it checks the compiler and the calendar arithmetic too.
Rules: see the module docstring of :mod:`billing.engine` and docs/tariffs.md.
"""
from __future__ import annotations

import calendar
import datetime as dt

from meters.tariffs import Tariff, in_force

EPOCH = dt.datetime(1970, 1, 1)


def _period(day: dt.date, billing_day: int) -> tuple[dt.date, dt.date]:
    if billing_day > 1:
        y, m = day.year, day.month
        if day.day < billing_day:
            y, m = (y, m - 1) if m > 1 else (y - 1, 12)
        ny, nm = (y, m + 1) if m < 12 else (y + 1, 1)
        return dt.date(y, m, billing_day), dt.date(ny, nm, billing_day) - dt.timedelta(days=1)
    return (dt.date(day.year, day.month, 1),
            dt.date(day.year, day.month, calendar.monthrange(day.year, day.month)[1]))


def new_state() -> dict:
    return {"bill_start": None, "cycle_key": None, "cycle_qty": 0.0, "pq": {}, "lines": {},
            "fixed": 0.0, "days": 0, "charged": 0.0, "last": None,
            "year_end": None}


def price_meter(versions: list[Tariff], local_ts: list[int], quantity: list[float], *,
                billing_day: int = 1, state: dict | None = None) -> dict:
    """Price one meter's intervals. ``local_ts``: local wall-clock seconds of (interval end − 1 s).

    Returns ``{"days": [...], "bills": [...], "state": {...}}``; days are
    ``(day, quantity, amount, total)`` and bills dicts with lines ``{(period, tier): [qty, amount]}``.
    """
    st = new_state() if state is None else {**state, "pq": dict(state["pq"]),
                                           "lines": {k: list(v) for k, v in state["lines"].items()}}
    first = versions[0]
    cycle, prorata = first.tier_cycle, first.tier_method == "pro_rata"
    days: dict[dt.date, list[tuple[int, float]]] = {}
    for t, q in zip(local_ts, quantity):
        days.setdefault((EPOCH + dt.timedelta(seconds=int(t))).date(), []).append((int(t), float(q)))
    out_days, out_bills = [], []
    bill = None
    seen = False
    for day in sorted(days):
        ps, pe = _period(day, billing_day)
        if bill is None or bill["start"] != ps:
            if st["bill_start"] is not None and ps < st["bill_start"]:
                raise ValueError("data before the carried state")
            if st["bill_start"] != ps:
                key = ps.year if cycle == "year" else (ps - EPOCH.date()).days
                if key == st["cycle_key"]:
                    if st["bill_start"] is not None:
                        st["cycle_qty"] += sum(st["pq"].values())
                else:
                    st["cycle_qty"] = 0.0
                st.update(cycle_key=key, bill_start=ps, pq={}, lines={}, fixed=0.0, days=0, charged=0.0,
                          year_end=None)
            vp = in_force(versions, ps)
            scale = (pe - ps).days + 1 if vp.tier_bound_unit == "day" else 1
            bounds = [b * scale for b in vp.tier_bounds[ps.month - 1]] + [float("inf")]
            bill = {"start": ps, "end": pe, "version": vp}
            out_bills.append(bill)
        vp = bill["version"]
        pv = vp if prorata else in_force(versions, day)
        weekend = day.weekday() >= 5
        sched = pv.weekend_schedule if weekend else pv.weekday_schedule
        if st["last"] is None or (EPOCH + dt.timedelta(seconds=st["last"])).date() != day:
            st["days"] += 1
            if vp.fixed_charge_unit == "day":
                st["fixed"] += vp.fixed_charge
            elif st["days"] == 1:
                st["fixed"] = vp.fixed_charge
        if cycle == "year" and day.year != st["cycle_key"]:
            # New Year inside the bill period: the annual counter restarts from 0 today
            used = st["cycle_qty"] + sum(st["pq"].values())
            st.update(year_end=used, cycle_qty=-sum(st["pq"].values()), cycle_key=day.year)
        c0 = st["cycle_qty"]
        day_qty = 0.0
        for t, q in days[day]:       # in input (UTC) order
            if st["last"] is not None and t <= st["last"]:
                # clocks going back repeat up to an hour of local times within the day: allowed
                # after an interval of this call; anything else goes backwards
                if not (seen and t > st["last"] - 3600 and t // 86400 == st["last"] // 86400):
                    raise ValueError("intervals not increasing")
            seen = True
            if not q >= 0:
                raise ValueError("negative quantity")
            st["last"] = t if st["last"] is None else max(st["last"], t)
            hour = (t % 86400) // 3600
            p = sched[day.month - 1][hour]
            day_qty += q
            if prorata:
                st["pq"][p] = st["pq"].get(p, 0.0) + q
                continue
            used = c0 + sum(st["pq"].values())
            st["pq"][p] = st["pq"].get(p, 0.0) + q
            rest = q
            for tier, upper in enumerate(bounds):
                if rest <= 0:
                    break
                if used >= upper and tier < len(bounds) - 1:
                    continue
                take = min(rest, upper - used)
                line = st["lines"].setdefault((p, tier), [0.0, 0.0])
                line[0] += take
                line[1] += take * pv.prices[p][min(tier, pv.n_tiers - 1)]
                used += take
                rest -= take
        if prorata:
            total = sum(st["pq"].values())
            st["lines"] = {}
            if st["year_end"] is None:
                segments = [(c0, c0 + total)]
            else:   # before the reset: the counter's last part of the old year; after: from 0
                segments = [(st["year_end"] + c0, st["year_end"]), (0.0, c0 + total)]
            lower = 0.0
            for tier, upper in enumerate(bounds):
                tq = sum(max(0.0, min(b, upper) - max(a, lower)) for a, b in segments)
                for p, qp in st["pq"].items():
                    if tq > 0 and qp > 0:
                        share = tq * qp / total
                        st["lines"][(p, tier)] = [share, share * vp.prices[p][min(tier, vp.n_tiers - 1)]]
                lower = upper
        energy = sum(a for _, a in st["lines"].values())
        top = max(0.0, vp.minimum_charge - energy - st["fixed"]) if day == pe else 0.0
        cost = energy + st["fixed"] + top
        out_days.append((day, day_qty, cost - st["charged"], cost))
        st["charged"] = cost
        bill.update(quantity=sum(st["pq"].values()), energy=energy, fixed=st["fixed"], minimum=top, total=cost,
                    closed=day == pe, lines={k: list(v) for k, v in st["lines"].items()})
    return {"days": out_days, "bills": out_bills, "state": st}


def ordered_run_totals(qty: list[list[float]], run_ends: list[int]) -> list[float]:
    """Reference of ``benchmarks.bench_tariff.ordered_sum_floor``: per meter, each day's runs of slots
    (``run_ends``: their ends, the last = slots per day) summed interval by interval in index order,
    the run sums added up in turn (no ``sum()``: Python's float ``sum`` compensates)."""
    per_day = run_ends[-1]
    out = []
    for row in qty:
        tot = 0.0
        for d in range(len(row) // per_day):
            j = d * per_day
            for e in run_ends:
                s = 0.0
                for x in row[j:d * per_day + e]:
                    s += x
                tot += s
                j = d * per_day + e
        out.append(tot)
    return out
