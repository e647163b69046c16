"""The heating charge (供暖费): a season's bills of many accounts under one heating tariff, in exact
integer cents (:mod:`meters.heating` describes the tariffs).

- ``area``: one bill on the season's first day: premise m² × area price (line: tier 0, band ``area``).
- ``two_part``: a bill at every month end inside the season and on its last day. Each bill charges
  the basic price accrued over its days (tier 0, band ``basic``: the season's basic charge spread
  over the season's days) and the heat read in it (tier 1, band ``energy``). The season's last bill
  also carries the true-up that brings the season total inside [floor, cap] × the area charge
  (tier 0, band ``floor`` or ``cap``). Amounts are differences of rounded season-to-date sums, so the
  bills of a season add up exactly to the season's charge.

Prepaid accounts are debited the bill's total on its day; postpaid accounts get it as a bill
(:func:`statements`). The engine works on arrays; ``reference/heating.py`` is its plain-Python
reference, held equal by hypothesis (tests/test_heating.py).

Exactness: prices and ratios are kept to 1e-4 (checked), areas in hundredths of m² and heat in
thousandths of a kWh, so every product fits int64 for areas up to 100 000 m², heat up to 10^9 kWh
per season and prices up to 10 000 per unit.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from meters.errors import MetersError
from meters.heating import HeatingTariff
from meters.tariffs import Period

P = 10_000                     # prices and ratios in 1e-4 currency units
MAX_AREA_CENTI = 10_000_000    # 100 000 m²
MAX_HEAT_MILLI = 10**12        # 10^9 kWh


def scaled(x: float, what: str) -> int:
    """``x`` in 1e-4 units, or a :class:`MetersError` when it has more than 4 decimals."""
    v = round(x * P)
    if abs(v - x * P) > 1e-6 * max(1.0, abs(x)):
        raise MetersError(f"heating tariff: {what} {x!r} has more than 4 decimal places")
    return int(v)


def round_div(x: np.ndarray, d: int) -> np.ndarray:
    """``x / d`` rounded half up, for int64 ``x ≥ 0`` (no overflow: divmod, not 2x + d)."""
    q, r = np.divmod(x, d)
    return q + (2 * r >= d)


def energy_factor(t: HeatingTariff) -> tuple[int, int]:
    """Cents = heat_milli × price_e4 × num // den: kWh (1e-3 kWh × 1e-4 → 1e-7 currency) or GJ
    (× 0.0036 GJ per kWh)."""
    return (1, 100_000) if t.energy_unit == "kWh" else (36, 1_000_000_000)


def area_cents(area_centi: np.ndarray, price: float) -> np.ndarray:
    """Premise area (hundredths of m²) × a price per m², in cents rounded half up."""
    return round_div(np.asarray(area_centi, np.int64) * scaled(price, "price per m²"), P)


def basic_to_date(t: HeatingTariff, area_centi: np.ndarray, days: int, season_days: int) -> np.ndarray:
    """The basic charge accrued over the season's first ``days`` days (cents)."""
    full = np.asarray(area_centi, np.int64) * scaled(t.basic_price, "basic_price")   # 1e-6 currency
    return round_div(full * days, P * season_days)


def energy_to_date(t: HeatingTariff, heat_milli: np.ndarray) -> np.ndarray:
    """The energy charge of the season's heat so far (thousandths of a kWh), in cents."""
    num, den = energy_factor(t)
    return round_div(np.asarray(heat_milli, np.int64) * (scaled(t.energy_price, "energy_price") * num), den)


def bounds(t: HeatingTariff, area_centi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The season total's floor and cap in cents (0 / int64 max where the tariff sets none)."""
    ref = area_cents(area_centi, t.area_price)
    lo = np.zeros_like(ref) if t.floor_ratio is None else round_div(ref * scaled(t.floor_ratio, "floor_ratio"), P)
    hi = (np.full_like(ref, np.iinfo(np.int64).max) if t.cap_ratio is None
          else round_div(ref * scaled(t.cap_ratio, "cap_ratio"), P))
    return lo, hi


@dataclass
class Charge:
    """One bill's money by line (int64 cents per account; zero where a line does not apply)."""

    basic: np.ndarray
    energy: np.ndarray
    adjust: np.ndarray         # the season-end true-up: > 0 floor, < 0 cap

    @property
    def total(self) -> np.ndarray:
        return self.basic + self.energy + self.adjust


def check_inputs(area_centi: np.ndarray, heat_milli: np.ndarray | None = None) -> None:
    a = np.asarray(area_centi)
    if len(a) and (a.min() < 0 or a.max() > MAX_AREA_CENTI):
        raise MetersError(f"premise area must be between 0 and {MAX_AREA_CENTI // 100} m²")
    if heat_milli is not None:
        h = np.asarray(heat_milli)
        if len(h) and (h.min() < 0 or h.max() > MAX_HEAT_MILLI):
            raise MetersError(f"season heat must be between 0 and {MAX_HEAT_MILLI // 1000} kWh")


def two_part_charge(t: HeatingTariff, area_centi, heat_prev, heat_now, day_prev: int, day_now: int,
                    season_days: int, closing: bool) -> Charge:
    """The charge of a two-part bill covering season days ``day_prev+1 .. day_now`` (1-based day
    counts into the season) whose season-to-date heat went from ``heat_prev`` to ``heat_now``
    (milli-kWh); ``closing`` for the season's last bill (adds the floor / cap true-up)."""
    area = np.asarray(area_centi, np.int64)
    heat_prev, heat_now = np.asarray(heat_prev, np.int64), np.asarray(heat_now, np.int64)
    check_inputs(area, heat_now)
    if (heat_now < heat_prev).any():
        raise MetersError("season heat to date cannot decrease")
    basic = basic_to_date(t, area, day_now, season_days) - basic_to_date(t, area, day_prev, season_days)
    energy = energy_to_date(t, heat_now) - energy_to_date(t, heat_prev)
    adjust = np.zeros_like(area)
    if closing:
        total = basic_to_date(t, area, season_days, season_days) + energy_to_date(t, heat_now)
        lo, hi = bounds(t, area)
        adjust = np.clip(total, lo, hi) - total
    return Charge(basic, energy, adjust)


def bill_days(t: HeatingTariff, first: dt.date, last: dt.date) -> list[dt.date]:
    """The days a season's bills are issued: area, its first day; two-part, every month end inside
    the season and its last day."""
    if t.method == "area":
        return [first]
    out, d = [], first
    while d < last:
        nxt = (d.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
        end = nxt - dt.timedelta(days=1)
        if end >= last:
            break
        out.append(end)
        d = nxt
    return out + [last]


@dataclass
class Statement:
    """One heating bill of many accounts: the period it covers and its lines."""

    issued: dt.date
    period_start: dt.date
    period_end: dt.date
    closing: bool
    heat_milli: np.ndarray     # heat read in the period (thousandths of a kWh)
    charge: Charge


def statements(t: HeatingTariff, day: dt.date, area_centi, heat_to_date=None) -> list[Statement]:
    """The bills issued on ``day`` (none, or one) for accounts of ``area_centi`` under ``t``;
    ``heat_to_date(d)`` gives each account's season heat (milli-kWh) read up to the end of day ``d``
    (two-part only)."""
    season = t.season(day)
    if season is None:
        return []
    first, last = season
    days = bill_days(t, first, last)
    if day not in days:
        return []
    area = np.asarray(area_centi, np.int64)
    if t.method == "area":
        check_inputs(area)
        z = np.zeros_like(area)
        return [Statement(day, first, last, True, z, Charge(area_cents(area, t.area_price), z, z.copy()))]
    k = days.index(day)
    prev = days[k - 1] if k else first - dt.timedelta(days=1)
    season_days = (last - first).days + 1
    h_prev = heat_to_date(prev) if k else np.zeros_like(area)
    h_now = heat_to_date(day)
    ch = two_part_charge(t, area, h_prev, h_now, (prev - first).days + 1 if k else 0, (day - first).days + 1,
                         season_days, day == last)
    return [Statement(day, prev + dt.timedelta(days=1), day, day == last, np.asarray(h_now) - h_prev, ch)]


TEST_AREA_CENTI = 10_000          # a test season: 100 m² …
TEST_DAY_MILLI = 50_000           # … reading 50 kWh a day


def check_version(t: HeatingTariff) -> None:
    """Bill a test season of ``t`` (its first after ``effective_from``, one 100 m² account reading 50
    kWh a day) so a version that cannot be billed exactly is refused at import, not on a bill day."""
    season = t.season(t.effective_from)
    if season is None:
        for k in range(366):
            season = t.season(t.effective_from + dt.timedelta(days=k))
            if season:
                break
    first, last = season
    area = np.array([TEST_AREA_CENTI], np.int64)
    try:
        for d in bill_days(t, first, last):
            statements(t, d, area, lambda x: np.array([((x - first).days + 1) * TEST_DAY_MILLI], np.int64))
    except MetersError as e:
        raise MetersError(f"heating tariff {t.tariff_id} version {t.effective_from} cannot bill a test season "
                          f"({first} to {last}): {e}") from None


@dataclass
class Lines:
    """Bill lines of many accounts (one row per line): ``pos`` the account's position in the
    statement's arrays, then the ``bill_lines`` fields (amount in cents)."""

    pos: np.ndarray
    tier: np.ndarray
    band: np.ndarray
    quantity: np.ndarray
    unit_price: np.ndarray
    amount_cents: np.ndarray

    @classmethod
    def concat(cls, parts: list["Lines"]) -> "Lines":
        if not parts:
            e = np.zeros(0)
            return cls(e.astype(np.int64), e.astype(np.int32), e.astype(object), e, e, e.astype(np.int64))
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in
                     ("pos", "tier", "band", "quantity", "unit_price", "amount_cents")))

    def take(self, order: np.ndarray) -> "Lines":
        return Lines(*(getattr(self, f)[order] for f in ("pos", "tier", "band", "quantity", "unit_price",
                                                          "amount_cents")))


def line_arrays(t: HeatingTariff, st: Statement, area_centi) -> Lines:
    """Readable bill lines of every account of a statement, ordered by account then line: area (tier
    0, band ``area``); two-part: basic (tier 0), energy (tier 1, in the tariff's energy unit) and on
    the closing bill the floor or cap true-up (tier 0) where it is not zero."""
    area_m2 = np.asarray(area_centi, np.int64) / 100
    c = st.charge
    n = len(area_m2)
    j = np.arange(n, dtype=np.int64)

    def part(tier, band, qty, price, amount, keep=None):
        sel = j if keep is None else j[keep]
        return Lines(sel, np.full(len(sel), tier, np.int32), np.full(len(sel), band, object),
                     np.asarray(qty, np.float64)[sel], np.broadcast_to(np.asarray(price, np.float64), (n,))[sel],
                     np.asarray(amount, np.int64)[sel])
    if t.method == "area":
        return part(0, "area", area_m2, t.area_price, c.basic)
    scale = 1.0 if t.energy_unit == "kWh" else 0.0036
    parts = [part(0, "basic", area_m2, t.basic_price, c.basic),
             part(1, "energy", np.asarray(st.heat_milli, np.int64) / 1000 * scale, t.energy_price, c.energy)]
    if st.closing:
        up = c.adjust > 0
        price = np.where(up, t.area_price * (t.floor_ratio or 0.0), t.area_price * (t.cap_ratio or 0.0))
        band = np.where(up, "floor", "cap").astype(object)
        adj = part(0, "", area_m2, price, c.adjust, c.adjust != 0)
        adj.band = band[adj.pos]
        parts.append(adj)
    out = Lines.concat(parts)
    return out.take(np.argsort(out.pos, kind="stable"))


def lines(t: HeatingTariff, st: Statement, area_centi, i: int) -> list[dict]:
    """Readable bill lines of account ``i`` (``bill_lines`` rows without the account and period)."""
    ln = line_arrays(t, st, area_centi)
    return [{"tier": int(ln.tier[k]), "band": str(ln.band[k]), "quantity": float(ln.quantity[k]),
             "unit_price": float(ln.unit_price[k]), "amount_cents": int(ln.amount_cents[k])}
            for k in np.flatnonzero(ln.pos == i)]


# -- the nightly run: heat accounts among the others ------------------------------------------------
def split(catalog: dict) -> tuple[dict, dict]:
    """A catalog (``meters.registry.load_tariffs(lake, heating=True)``) as (interval, heating) tariffs."""
    heat = {k: v for k, v in catalog.items() if isinstance(v[0], HeatingTariff)}
    return {k: v for k, v in catalog.items() if k not in heat}, heat


def stand_ins(heating: dict) -> dict:
    """Zero-priced interval tariffs under the heating tariffs' ids: heat accounts go through VEE and
    the interval engine like the others (their quantities, intervals and rollovers), and their money
    comes from :func:`day_heating`."""
    from meters.tariffs import Tariff, uniform_schedule

    out = {}
    for tid, versions in heating.items():
        t = versions[0]
        out[tid] = [Tariff(tariff_id=tid, utility="heat", unit="kWh", currency=t.currency,
                           description=f"{t.description} (priced per season by billing/heating.py)",
                           effective_from=min(v.effective_from for v in versions), periods=(Period("all"),),
                           weekday_schedule=tuple(map(tuple, uniform_schedule())),
                           weekend_schedule=tuple(map(tuple, uniform_schedule())),
                           tier_bounds=((),) * 12, prices=((0.0,),), source=t.source)]
    return out


@dataclass
class HeatAccounts:
    """The snapshot's heat accounts: rows, heating tariff (index into ``ids``), premise areas
    (hundredths of m²), and the heating catalog."""

    idx: np.ndarray
    code: np.ndarray
    ids: list
    area_centi: np.ndarray
    catalog: dict

    @classmethod
    def of(cls, tariff_id, premise_area, catalog: dict) -> "HeatAccounts":
        """From the snapshot's ``tariff_id`` and ``premise_area`` (Arrow) columns."""
        import pyarrow as pa
        import pyarrow.compute as pc

        mask = pc.is_in(tariff_id, value_set=pa.array(sorted(catalog), pa.string()))
        idx = np.flatnonzero(mask.to_numpy(zero_copy_only=False))
        take = pa.array(idx, pa.int64())
        area = premise_area.take(take)
        if area.null_count:
            raise MetersError(f"{area.null_count} heat account(s) have no premise area; set premise_area in the "
                              "accounts registry")
        centi = pc.multiply(area.cast(pa.decimal128(14, 2)), 100).cast(pa.int64()).to_numpy(zero_copy_only=False)
        tids = tariff_id.take(take)
        enc = pc.dictionary_encode(tids.combine_chunks() if isinstance(tids, pa.ChunkedArray) else tids) \
            if len(idx) else None
        code = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64) if enc is not None else np.zeros(0, np.int64)
        ids = enc.dictionary.to_pylist() if enc is not None else []
        return cls(idx, code, ids, np.asarray(centi, np.int64), catalog)

    def in_season(self, day: dt.date) -> dict[str, tuple[HeatingTariff, np.ndarray, tuple]]:
        """Heating tariffs of the accounts whose season contains ``day``: (version, positions in
        ``idx``, (first, last) day of the season)."""
        from meters.heating import heating_in_force

        out = {}
        for c, tid in enumerate(self.ids):
            try:
                t = heating_in_force(self.catalog[tid], day)
            except MetersError:
                continue
            season = t.season(day)
            if season is not None:
                out[tid] = (t, np.flatnonzero(self.code == c), season)
        return out


def carried_heat(lake, day: dt.date, acc, carried) -> tuple[np.ndarray, np.ndarray]:
    """(season heat read up to yesterday, season heat to the last bill) of every account, milli-kWh:
    the carried state's (``heat_season_milli``, ``heat_billed_milli``), so a bill day reads only its
    own day. Where the state has none (−1: an account's first night, or a state written before
    the columns existed) and the season began before ``day``, it is summed from the settled days'
    ``charges`` (one read of the season so far, on that night only)."""
    season_milli = np.asarray(carried.heat_season_milli, np.int64).copy()
    billed_milli = np.asarray(carried.heat_billed_milli, np.int64).copy()
    heat = acc.heat
    for tid, (t, pos, (first, last)) in heat.in_season(day).items():
        rows = heat.idx[pos]
        unknown = rows[season_milli[rows] < 0]
        if day == first or not len(unknown):
            continue
        days = [d for d in bill_days(t, first, last) if d < day]
        to_day, to_bill = _charged_heat(lake, first, day, days[-1] if days else None, acc.account_arrow, unknown)
        season_milli[unknown], billed_milli[unknown] = to_day, to_bill
    return season_milli, billed_milli


def _charged_heat(lake, first: dt.date, day: dt.date, last_bill: dt.date | None, account_ids, rows):
    """Heat (milli-kWh) of accounts ``rows`` in the settled ``charges`` of days ``first`` .. ``day``−1,
    and of those up to ``last_bill`` (0 when None)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    ids = account_ids.take(pa.array(rows, pa.int64()))
    to_day, to_bill = np.zeros(len(rows), np.int64), np.zeros(len(rows), np.int64)
    d = first
    while d < day:
        part = lake.read("charges", d.isoformat(), columns=["account_id", "quantity"])
        if part.num_rows:
            at = pc.index_in(ids, value_set=part.column("account_id").combine_chunks())
            got = at.is_valid().to_numpy(zero_copy_only=False)
            q = np.zeros(len(rows), np.int64)
            qty = part.column("quantity").combine_chunks().to_numpy(zero_copy_only=False)
            q[got] = np.rint(qty[at.to_numpy(zero_copy_only=False)[got].astype(np.int64)] * 1000).astype(np.int64)
            to_day += q
            if last_bill is not None and d <= last_bill:
                to_bill += q
        d += dt.timedelta(days=1)
    return to_day, to_bill


@dataclass
class HeatDay:
    """The day's heating money of every account of the snapshot (zeros for others), and the season
    heat the day hands on (``billing_state.heat_season_milli`` / ``heat_billed_milli``)."""

    cents: np.ndarray                 # int64 [n]
    billed: np.ndarray                # bool [n]: a heating bill issued today
    period_start: np.ndarray          # day numbers of the bill's period
    period_end: np.ndarray
    quantity: np.ndarray              # kWh read in the period
    season_milli: np.ndarray          # season heat read up to the end of the day (−1: not a heat account in season)
    billed_milli: np.ndarray          # … up to the season's last bill
    rows: np.ndarray = None           # the accounts (snapshot rows) of ``lines``
    lines: Lines = None

    @property
    def has_lines(self) -> bool:
        return len(self.rows) > 0


def day_heating(heat: HeatAccounts, n: int, day: dt.date, before: tuple, day_qty: np.ndarray) -> HeatDay:
    """The heating bills issued on ``day`` (area: the season's start; two-part: month ends and the
    season's end), from the carried season heat ``before`` (:func:`carried_heat`) and today's
    ``day_qty`` (units). Arrays per heating tariff, no loop over accounts."""
    from .days import day_number

    season_before, billed_before = before
    hd = HeatDay(np.zeros(n, np.int64), np.zeros(n, bool), np.zeros(n, np.int64), np.zeros(n, np.int64),
                 np.zeros(n), np.zeros(n, np.int64), np.zeros(n, np.int64))
    rows_l, lines_l = [], []
    for tid, (t, pos, (first, last)) in heat.in_season(day).items():
        rows = heat.idx[pos]
        area = heat.area_centi[pos]
        fresh = day == first                                  # a new season: nothing carried
        to_yday = np.zeros(len(rows), np.int64) if fresh else np.maximum(season_before[rows], 0)
        to_bill = np.zeros(len(rows), np.int64) if fresh else np.maximum(billed_before[rows], 0)
        to_day = to_yday + np.rint(np.asarray(day_qty)[rows] * 1000).astype(np.int64)
        hd.season_milli[rows], hd.billed_milli[rows] = to_day, to_bill
        sts = statements(t, day, area, lambda d: to_day if d == day else to_bill)
        for st_ in sts:
            hd.cents[rows] = st_.charge.total
            hd.billed[rows] = True
            hd.period_start[rows] = day_number(st_.period_start)
            hd.period_end[rows] = day_number(st_.period_end)
            hd.quantity[rows] = st_.heat_milli / 1000
            hd.billed_milli[rows] = to_day
            ln = line_arrays(t, st_, area)
            rows_l.append(rows[ln.pos])
            lines_l.append(ln)
    hd.rows = np.concatenate(rows_l) if rows_l else np.zeros(0, np.int64)
    hd.lines = Lines.concat(lines_l)
    return hd


def carry(state, hd: HeatDay) -> None:
    """Hand the day's season heat on in the carried state (``state``: :class:`billing.state.Carried`)."""
    state.heat_season_milli, state.heat_billed_milli = hd.season_milli, hd.billed_milli


def line_rows(hd: HeatDay, account_ids, rows_mask: np.ndarray | None, period_start: bool):
    """The day's heating lines as a ``charge_lines`` table (``period_start`` False; amount in
    currency) or a ``bill_lines`` table (the bill's ``period_start``) of the rows in ``rows_mask``
    (``account_ids``: the snapshot's Arrow array)."""
    import pyarrow as pa

    from meters.schemas import BILL_LINES, CHARGE_LINES
    from .days import date_array
    from .money_io import money

    keep = np.arange(len(hd.rows)) if rows_mask is None else np.flatnonzero(rows_mask[hd.rows])
    r, ln = hd.rows[keep], hd.lines.take(keep)
    cols = {"account_id": account_ids.take(pa.array(r, pa.int64())), "tier": pa.array(ln.tier, pa.int32()), "band": pa.array(ln.band.tolist(), pa.string()),
            "quantity": pa.array(ln.quantity, pa.float64()), "unit_price": pa.array(ln.unit_price, pa.float64())}
    if period_start:
        return pa.table({**cols, "period_start": date_array(hd.period_start[r]),
                         "amount": money(ln.amount_cents)}).select(BILL_LINES.names).cast(BILL_LINES)
    return pa.table({**cols, "amount": ln.amount_cents / 100}).select(CHARGE_LINES.names).cast(CHARGE_LINES)


def add_bills(bills, bill_lines, hd: HeatDay, heat_bill: np.ndarray, s, account_ids, run_id: str):
    """The day's ``bills`` and ``bill_lines`` with the postpaid heating bills (``heat_bill``) added."""
    import pyarrow as pa

    from meters.schemas import BILLS
    from .days import date_array
    from .money_io import money

    a = np.flatnonzero(heat_bill)
    ids = account_ids.take(pa.array(a, pa.int64()))
    heat = pa.table({"account_id": ids,
                     "period_start": date_array(hd.period_start[a]), "period_end": date_array(hd.period_end[a]),
                     "quantity": hd.quantity[a], "amount": money(hd.cents[a]),
                     "due_date": date_array(np.full(len(a), s.due_day)), "run_id": pa.repeat(pa.scalar(run_id, pa.string()), len(a)),
                     "partial": np.zeros(len(a), bool), "estimated": s.estimated[a]}, schema=BILLS)
    lines = line_rows(hd, account_ids, heat_bill, True).cast(bill_lines.schema)
    return pa.concat_tables([bills, heat]), pa.concat_tables([bill_lines, lines])
