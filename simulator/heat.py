"""Heat meters: a seeded degree-day model of district heating (docs/simulator.md, "Heat meters").

Outdoor temperature of an interval = the city's climatology of its day (monthly normals, linearly
interpolated between mid-months) + a day anomaly (a moving average of seeded normals over five days:
weather spells) + a diurnal swing (coldest before dawn, warmest at 15:00). A home draws heat in
proportion to how far the outdoor temperature is below its balance point, 18 °C by day and 15 °C
from 22:00 to 06:00 (night setback), only inside the heating season:

    heat_milli = round(UA_i [W/K] × max(0, T_balance − T_out) × interval_h × (0.85 + 0.3 u))

where ``UA_i`` = premise area × ``ua_per_m2`` × a lognormal spread and ``u`` a seeded uniform of
(seed, meter, ts). The network runs on a heating curve: supply 40 °C + 1.2 K per K of outdoor
temperature below 18 °C (at most 75 °C), return 3 K + 0.5 K per K below; the volume through the
meter is heat / (c·ρ·ΔT) (0.86 m³ per kWh·K). Outside the season registers stand still and both
temperatures read the room (20 °C).

Registers are exact integers: energy in Wh (thousandths of a kWh, wrapping at the meter's
``register_max_milli``), volume in litres, temperatures in hundredths of a °C. Every random number
is a counter-based hash (:func:`simulator.profiles.uniform_grid`), so any slice of meters and
intervals regenerates identically. ``reference/heat.py`` is the kernel's plain-Python reference.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import numpy as np
from numba import njit, prange

from . import profiles as P
from .profiles import _uniform

SALT_HEAT, SALT_FLOW, SALT_WX1, SALT_WX2, SALT_UA, SALT_REG0 = 41, 42, 43, 44, 45, 46
ROOM_C = 20.0
MA_WEIGHTS = np.array([0.5, 0.6, 0.5, 0.3, 0.2])


@dataclass(frozen=True)
class Climate:
    """A city's monthly normals (mean daily high and low, °C, January first) and day-to-day spread."""

    name: str
    high: tuple[float, ...]
    low: tuple[float, ...]
    anomaly_sigma: float = 3.0          # K, standard deviation of a day's mean around the normal
    source: str = ""

    def normal(self, doy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(daily mean, diurnal half-range) on day of year ``doy`` (1-based), interpolated between
        mid-months."""
        mid = np.array([15.5 + 30.4 * m for m in range(12)])
        mean = (np.array(self.high) + np.array(self.low)) / 2
        half = (np.array(self.high) - np.array(self.low)) / 2
        x = np.concatenate([mid - 365, mid, mid + 365])
        return (np.interp(doy, x, np.tile(mean, 3)), np.interp(doy, x, np.tile(half, 3)))


# China Meteorological Administration normals 1971–2000, Beijing station (as tabulated in
# "Geography of Beijing — Climate"): mean daily high / low per month.
BEIJING = Climate("beijing", high=(1.8, 5.0, 11.6, 20.3, 26.0, 30.2, 30.9, 29.7, 25.8, 19.1, 10.1, 3.7),
                  low=(-8.4, -5.6, 0.4, 7.9, 13.6, 18.8, 22.0, 20.8, 14.8, 7.9, 0.0, -5.8),
                  source="CMA normals 1971-2000, Beijing")
CLIMATES = {c.name: c for c in (BEIJING,)}


@dataclass(frozen=True)
class HeatModel:
    climate: Climate = BEIJING
    season: tuple[str, str] = ("11-15", "03-15")    # MM-DD, both included (the tariff's season)
    ua_per_m2: float = 1.45                          # W/K per m²: ~75 kWh/m² over a Beijing season
    ua_sigma: float = 0.25                           # lognormal spread of homes of equal area
    balance_day: float = 18.0
    balance_night: float = 15.0                      # night setback 22:00–06:00


def _normals(seed: int, keys: np.ndarray) -> np.ndarray:
    u1 = P.uniform_grid(np.int64(seed), SALT_WX1, np.zeros(1, np.int64), keys)[0]
    u2 = P.uniform_grid(np.int64(seed), SALT_WX2, np.zeros(1, np.int64), keys)[0]
    return np.sqrt(-2 * np.log(u1)) * np.cos(2 * np.pi * u2)


def day_mean(seed: int, dayno: np.ndarray, climate: Climate) -> np.ndarray:
    """The city's mean outdoor temperature (°C) on local days ``dayno`` (days since 1970-01-01)."""
    dayno = np.asarray(dayno, np.int64)
    lags = len(MA_WEIGHTS)
    z = _normals(seed, (dayno[:, None] - np.arange(lags)[None, :]).ravel()).reshape(len(dayno), lags)
    w = MA_WEIGHTS / np.sqrt((MA_WEIGHTS ** 2).sum())
    doy = np.array([(dt.date(1970, 1, 1) + dt.timedelta(days=int(d))).timetuple().tm_yday for d in dayno])
    mean, _ = climate.normal(doy)
    return mean + climate.anomaly_sigma * (z @ w)


def in_season(dates: list[dt.date], season: tuple[str, str]) -> np.ndarray:
    s, e = season
    md = np.array([f"{d.month:02d}-{d.day:02d}" for d in dates])
    return (md >= s) | (md <= e) if e < s else (md >= s) & (md <= e)


@dataclass
class Drive:
    """Per interval (city-wide): the degree drive (K), supply and return temperatures (°C)."""

    ts: np.ndarray           # interval end, Unix seconds
    outdoor: np.ndarray
    drive: np.ndarray        # max(0, balance − outdoor) inside the season, else 0
    supply: np.ndarray
    ret: np.ndarray


def drive(ts: np.ndarray, interval_s: int, tz: ZoneInfo, seed: int, model: HeatModel = HeatModel()) -> Drive:
    """The weather and network of the intervals ending at ``ts``."""
    ts = np.asarray(ts, np.int64)
    start = ts - interval_s
    mid = ts - interval_s // 2
    dayno = P.local_day_number(start, tz)
    days = np.unique(dayno)
    mean_by_day = dict(zip(days.tolist(), day_mean(seed, days, model.climate).tolist()))
    doy = np.array([(dt.date(1970, 1, 1) + dt.timedelta(days=int(d))).timetuple().tm_yday for d in dayno])
    _, half = model.climate.normal(doy)
    hour = ((mid + P.local_offsets(mid, tz)) % 86400) / 3600.0
    out = np.array([mean_by_day[d] for d in dayno.tolist()]) + half * np.cos(2 * np.pi * (hour - 15.0) / 24.0)
    night = (hour >= 22.0) | (hour < 6.0)
    balance = np.where(night, model.balance_night, model.balance_day)
    dates = [dt.date(1970, 1, 1) + dt.timedelta(days=int(d)) for d in dayno]
    on = in_season(dates, model.season)
    cold = np.maximum(0.0, 18.0 - out)
    return Drive(ts, out, np.where(on, np.maximum(0.0, balance - out), 0.0),
                 np.where(on, np.minimum(75.0, 40.0 + 1.2 * cold), ROOM_C),
                 np.where(on, np.minimum(75.0, 40.0 + 1.2 * cold) - (3.0 + 0.5 * cold), ROOM_C))


def conductance(seed: int, meter_id: np.ndarray, area_centi: np.ndarray, model: HeatModel = HeatModel()) -> np.ndarray:
    """Each home's heat loss UA (W/K): area × ``ua_per_m2`` × a seeded lognormal spread."""
    z = _normals_meter(seed, meter_id)
    s = model.ua_sigma
    return np.asarray(area_centi) / 100.0 * model.ua_per_m2 * np.exp(s * z - s * s / 2)


def _normals_meter(seed: int, meter_id: np.ndarray) -> np.ndarray:
    key = np.zeros(1, np.int64)
    u1 = P.uniform_grid(np.int64(seed), SALT_UA, np.asarray(meter_id, np.int64), key)[:, 0]
    u2 = P.uniform_grid(np.int64(seed), SALT_UA + 100, np.asarray(meter_id, np.int64), key)[:, 0]
    return np.sqrt(-2 * np.log(u1)) * np.cos(2 * np.pi * u2)


@njit(cache=True, parallel=True)
def heat_block(seed, meter_id, ua, ts, drive_k, supply, ret, interval_s, opening, acc, vol, reg_max,
               out_e, out_v, out_supply, out_ret):
    """Registers of ``meter_id`` at ``ts`` (call blocks in order): energy (Wh, wraps at ``reg_max``),
    volume (litres) and the meter's supply / return temperatures (hundredths of a °C). ``acc`` and
    ``vol`` carry the registers between blocks; ``opening`` makes column 0 the opening read."""
    n, nk = out_e.shape
    hours = interval_s / 3600.0
    for i in prange(n):
        a = acc[i]
        v = vol[i]
        for j in range(nk):
            u = _uniform(seed, meter_id[i], ts[j], SALT_HEAT)
            uf = _uniform(seed, meter_id[i], ts[j], SALT_FLOW)
            jitter = 0.6 * (uf - 0.5) * (ret[j] != supply[j])     # off season: both read the room
            s = supply[j] + jitter
            r = ret[j] + jitter
            out_supply[i, j] = int(np.floor(s * 100.0 + 0.5))
            out_ret[i, j] = int(np.floor(r * 100.0 + 0.5))
            if not (j == 0 and opening):
                q = int(ua[i] * drive_k[j] * hours * (0.85 + 0.3 * u) + 0.5)
                dk = supply[j] - ret[j]
                if q > 0 and dk > 0.0:
                    v += int(q * 0.86 / dk + 0.5)
                a = (a + q) % reg_max[i]
            out_e[i, j] = a
            out_v[i, j] = v
        acc[i] = a
        vol[i] = v


@dataclass
class HeatReads:
    """Reads of heat meters (rows: meters, columns: instants)."""

    ts: np.ndarray
    energy_milli: np.ndarray       # int64 Wh
    volume_milli: np.ndarray       # int64 litres (thousandths of a m³)
    supply_centi: np.ndarray       # int32 hundredths of a °C
    return_centi: np.ndarray
    drive: Drive


def simulate(meter_id, area_centi, start: int, days: float, interval_s: int, seed: int,
             tz: ZoneInfo = ZoneInfo("Asia/Shanghai"), model: HeatModel = HeatModel(),
             start_milli=None, register_max_milli=None) -> HeatReads:
    """Reads every ``interval_s`` from ``start`` (Unix seconds, the opening read) over ``days``."""
    meter_id = np.asarray(meter_id, np.int64)
    n = len(meter_id)
    k = int(round(days * 86400)) // interval_s
    ts = start + np.arange(k + 1, dtype=np.int64) * interval_s
    d = drive(ts, interval_s, tz, seed, model)
    acc = np.zeros(n, np.int64) if start_milli is None else np.array(start_milli, np.int64)
    reg_max = np.full(n, 10**12, np.int64) if register_max_milli is None else np.asarray(register_max_milli, np.int64)
    vol = np.zeros(n, np.int64)
    shape = (n, len(ts))
    e, v = np.empty(shape, np.int64), np.empty(shape, np.int64)
    sup, ret = np.empty(shape, np.int32), np.empty(shape, np.int32)
    heat_block(np.int64(seed), meter_id, conductance(seed, meter_id, area_centi, model), ts, d.drive, d.supply,
               d.ret, interval_s, True, acc, vol, reg_max, e, v, sup, ret)
    return HeatReads(ts, e, v, sup, ret, d)


# -- heat meters in a simulated city (``meters simulate --heat SHARE``) -----------------------------
HEAT_DIGIT = 5                       # meter_id 500000000001 is household 1's heat meter
HEAT_ACCOUNT_PREFIX = 94             # user numbers 94 + 10 digits
HEAT_TARIFFS = (("cn-bj-res-heat-area", 0.6), ("cn-bj-res-heat-metered", 0.4))
HEAT_CONC_SIZE = 250
HEAT_REGISTER_MAX_MILLI = 10**11     # heat meters' registers wrap at 10^8 kWh (the registry's register_max)
OPENING_MAX_MILLI = 50_000_000       # opening registers: up to 50 000 kWh (years of service)


@dataclass
class HeatFleet:
    """Heat meters of a share of a fleet's households, under their own concentrators."""

    meter_id: np.ndarray
    household: np.ndarray
    area_centi: np.ndarray           # premise floor area, hundredths of m²
    tariff_ids: list
    prepaid: np.ndarray
    conc_ids: list
    conc_start: np.ndarray

    def registry(self):
        """(meters, accounts, contacts) rows for the lake's registry."""
        import pyarrow as pa

        from meters.schemas import ACCOUNTS, CONTACTS, METERS

        n = len(self.meter_id)
        conc = np.repeat(np.arange(len(self.conc_ids)), np.diff(self.conc_start))
        acc = pa.array((HEAT_ACCOUNT_PREFIX * 10**10 + self.household).astype(str).tolist(), pa.string())
        cents = np.where(self.prepaid, 300000, 0)
        from decimal import Decimal
        meters = pa.table({"meter_id": self.meter_id, "external_id": pa.nulls(n, pa.string()),
                           "utility": ["heat"] * n, "unit": ["kWh"] * n,
                           "concentrator": np.array(self.conc_ids, dtype=object)[conc].tolist(),
                           "region": pa.nulls(n, pa.string()),
                           "register_max": np.full(n, HEAT_REGISTER_MAX_MILLI / 1000)}, schema=METERS)
        accounts = pa.Table.from_pylist([{
            "account_id": a, "meter_id": int(m), "tariff_id": t, "mode": "prepaid" if p else "postpaid",
            "billing_day": 1, "balance": Decimal(int(c)) / 100, "warn_1": Decimal(30), "warn_2": Decimal(20),
            "premise_area": Decimal(int(ar)) / 100}
            for a, m, t, p, c, ar in zip(acc.to_pylist(), self.meter_id, self.tariff_ids, self.prepaid, cents,
                                         self.area_centi)], ACCOUNTS)
        contacts = pa.table({"account_id": acc, "recipient": pa.array(
            (138 * 10**8 + self.household % 10**8).astype(str).tolist()), "relation": ["self"] * n,
            "language": pa.nulls(n, pa.string())}, schema=CONTACTS)
        return meters, accounts, contacts


def heat_fleet(households: np.ndarray, share: float, seed: int) -> HeatFleet:
    """Heat meters for a seeded ``share`` of ``households`` (floor areas lognormal around 85 m²)."""
    from meters.errors import MetersError

    if not 0 < share <= 1:
        raise MetersError(f"--heat {share} must be a share of households in (0, 1]")
    hh = np.unique(households)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x4EA7]))
    hh = hh[rng.random(len(hh)) < share]
    n = len(hh)
    area = np.clip(np.rint(rng.lognormal(np.log(85), 0.35, n) * 100), 3500, 25000).astype(np.int64)
    p = np.array([w for _, w in HEAT_TARIFFS])
    tariff = [HEAT_TARIFFS[i][0] for i in rng.choice(len(HEAT_TARIFFS), n, p=p / p.sum())]
    starts = np.arange(0, n, HEAT_CONC_SIZE).tolist() + [n]
    return HeatFleet(HEAT_DIGIT * 10**11 + hh, hh, area, tariff, rng.random(n) < 0.3,
                     [f"hdcu-{c + 1:06d}" for c in range(len(starts) - 1)], np.array(starts, np.int64))


@dataclass
class HeatUpload:
    """One concentrator's upload of heat reads (after faults); ``malformed``: an extra garbage payload."""

    conc: int
    meter_id: np.ndarray
    ts: np.ndarray
    register_milli: np.ndarray
    heat: object                     # meters.wire.HeatColumns
    malformed: bytes | None = None


class HeatRun:
    """The heat meters' reads of a run with the simulator's fault model applied as for the other
    utilities (:mod:`simulator.faults`): per meter ``rollover`` (starts just below its register
    maximum and wraps), ``replacement`` (its registers restart at 0–5 kWh once during the run; not
    for a rolled-over meter, whose new register would read as a wrap) and ``skew``; per reading ``lost``, ``duplicate``, ``late`` and ``spike`` (a misread 20–200 days of
    design-day use too high); per upload ``malformed``. ``truth``: the true registers; ``counts``
    the faults injected, by kind."""

    def __init__(self, hf: "HeatFleet", start: int, days: float, interval_s: int, seed: int,
                 tz: ZoneInfo = ZoneInfo("Asia/Shanghai"), faults=None, batch_intervals: int = 4):
        from .engine import (SALT_DELAY, SALT_FATE, SALT_REP, SALT_REP_AT, SALT_REP_START, SALT_ROLL,
                             SALT_ROLL_POS, SALT_SKEW, SALT_SKEW_S, SALT_SPIKE, SALT_SPIKE_SIZE)
        from .faults import MAX_LATE_UPLOADS, Faults

        self.hf, self.seed, self.batch_intervals = hf, int(seed), batch_intervals
        self.faults = fl = faults or Faults()
        r = simulate(hf.meter_id, hf.area_centi, start, days, interval_s, seed, tz)
        self.reads = r
        n, nk = r.energy_milli.shape
        E, V = r.energy_milli, r.volume_milli            # true use since the opening read (no wrap)
        self.reg_max = np.full(n, HEAT_REGISTER_MAX_MILLI, np.int64)
        sd = np.int64(seed)
        key0 = np.array([start], np.int64)
        u = lambda salt: P.uniform_grid(sd, salt, hf.meter_id, key0)[:, 0]  # noqa: E731
        self.counts = {k: 0 for k in ("rollover", "replacement", "skew", "lost", "duplicate", "late", "spike",
                                      "malformed")}
        start_milli = (u(SALT_REG0) * OPENING_MAX_MILLI).astype(np.int64)   # meters in service for years
        if fl.rollover > 0:
            roll = u(SALT_ROLL) < fl.rollover
            use = (E[:, -1] * (0.1 + 0.6 * u(SALT_ROLL_POS))).astype(np.int64) + 1
            start_milli = np.where(roll, self.reg_max - use, start_milli)
            self.counts["rollover"] = int(roll.sum())
        true = start_milli[:, None] + E
        vol = V.copy()
        self.rep_k = np.zeros(n, np.int64)
        if fl.replacement > 0 and nk > 1:
            # not a rolled-over meter too: a new register near 0 after one near its maximum reads as a wrap
            rep = (u(SALT_REP) < fl.replacement) & (start_milli < self.reg_max // 2)
            k = 1 + np.minimum((u(SALT_REP_AT) * (nk - 1)).astype(np.int64), nk - 2)
            rep_start = (u(SALT_REP_START) * 5000).astype(np.int64)
            after = rep[:, None] & (np.arange(nk)[None, :] >= k[:, None])
            prev = np.take_along_axis(E, (k - 1)[:, None], 1)
            true = np.where(after, rep_start[:, None] + E - prev, true)
            vol = np.where(after, V - np.take_along_axis(V, (k - 1)[:, None], 1), vol)
            self.rep_k = np.where(rep, k, 0)
            self.counts["replacement"] = int(rep.sum())
        self.truth = true % self.reg_max[:, None]
        self.volume = vol
        self.skew = np.zeros(n, np.int64)
        if fl.skew > 0:
            su = u(SALT_SKEW_S)
            mag = (10 + 590 * np.abs(2 * su - 1)).astype(np.int64)
            self.skew = np.where(u(SALT_SKEW) < fl.skew, np.where(su < 0.5, -mag, mag), 0)
            self.counts["skew"] = int((self.skew != 0).sum())
        fate = P.uniform_grid(sd, SALT_FATE, hf.meter_id, r.ts)
        self.lost = fate < fl.lost
        self.dup = (fate >= fl.lost) & (fate < fl.lost + fl.duplicate)
        self.late = (fate >= fl.lost + fl.duplicate) & (fate < fl.lost + fl.duplicate + fl.late)
        self.delay = 1 + (P.uniform_grid(sd, SALT_DELAY, hf.meter_id, r.ts) * MAX_LATE_UPLOADS).astype(np.int64)
        self.published = self.truth
        if fl.spike > 0:
            spike = P.uniform_grid(sd, SALT_SPIKE, hf.meter_id, r.ts) < fl.spike
            daily = (conductance(seed, hf.meter_id, hf.area_centi) * 240).astype(np.int64)   # 10 K all day, Wh
            size = P.uniform_grid(sd, SALT_SPIKE_SIZE, hf.meter_id, r.ts)
            jump = (daily[:, None] * (20 + 180 * size)).astype(np.int64)
            self.published = np.where(spike, (self.truth + jump) % self.reg_max[:, None], self.truth)
            self.counts["spike"] = int(spike.sum())
        for k in ("lost", "dup", "late"):
            self.counts["duplicate" if k == "dup" else k] = int(getattr(self, k).sum())
        self.conc = np.repeat(np.arange(len(hf.conc_ids)), np.diff(hf.conc_start))
        self._pending: dict[int, list] = {}

    @property
    def n_blocks(self) -> int:
        return -(-len(self.reads.ts) // self.batch_intervals)

    def uploads(self, b: int) -> list[HeatUpload]:
        """The uploads of block ``b`` (call in order), faults applied."""
        k0, k1 = b * self.batch_intervals, min(len(self.reads.ts), (b + 1) * self.batch_intervals)
        sl = (slice(None), slice(k0, k1))
        ii, jj = np.nonzero(~(self.lost[sl] | self.late[sl]))
        parts = [(ii, jj + k0)]
        di, dj = np.nonzero(self.dup[sl])
        if len(di):
            self._pending.setdefault(b + 1, []).append((di, dj + k0))
        li, lj = np.nonzero(self.late[sl])
        for d in np.unique(self.delay[sl][li, lj]):
            sel = self.delay[sl][li, lj] == d
            self._pending.setdefault(b + int(d), []).append((li[sel], lj[sel] + k0))
        ups = self._group(parts + self._pending.pop(b, []))
        return self._malformed(int(self.reads.ts[k0]), ups)

    def leftovers(self) -> list[HeatUpload]:
        """Late reads and duplicates still pending after the last block."""
        parts = [x for b in sorted(self._pending) for x in self._pending.pop(b)]
        return self._group(parts) if parts else []

    def _group(self, parts) -> list[HeatUpload]:
        from meters.wire import HeatColumns

        ii = np.concatenate([p[0] for p in parts])
        jj = np.concatenate([p[1] for p in parts])
        order = np.lexsort((jj, self.conc[ii]))
        ii, jj = ii[order], jj[order]
        r, out = self.reads, []
        bounds = np.searchsorted(self.conc[ii], np.arange(len(self.hf.conc_ids) + 1))
        for c in range(len(self.hf.conc_ids)):
            a, z = bounds[c], bounds[c + 1]
            if z > a:
                i, j = ii[a:z], jj[a:z]
                out.append(HeatUpload(c, self.hf.meter_id[i], r.ts[j] + self.skew[i], self.published[i, j],
                                      HeatColumns(r.supply_centi[i, j].astype(np.int16),
                                                  r.return_centi[i, j].astype(np.int16), self.volume[i, j])))
        return out

    def _malformed(self, key: int, ups: list[HeatUpload]) -> list[HeatUpload]:
        from .engine import SALT_MAL, SALT_MAL_KIND, malformed_payload

        if self.faults.malformed <= 0:
            return ups
        concs = HEAT_DIGIT * 10**6 + np.arange(len(self.hf.conc_ids), dtype=np.int64)
        k = np.array([key], np.int64)
        bad = P.uniform_grid(np.int64(self.seed), SALT_MAL, concs, k)[:, 0] < self.faults.malformed
        kinds = P.uniform_grid(np.int64(self.seed), SALT_MAL_KIND, concs, k)[:, 0]
        byc = {u.conc: u for u in ups}
        for c in np.flatnonzero(bad):
            up = byc.get(int(c))
            if up is None:
                e = np.zeros(0, np.int64)
                up = byc[int(c)] = HeatUpload(int(c), e, e, e, None)
                ups.append(up)
            up.malformed = malformed_payload(self.seed, int(concs[c]), key, float(kinds[c]))
            self.counts["malformed"] += 1
        return ups


def publish_heat(hf: HeatFleet, start: int, days: float, interval_s: int, batch_intervals: int, seed: int,
                 tz: ZoneInfo, url, passwords, single_sender, window: int, client_prefix: str, faults=None) -> dict:
    """Simulate the heat meters (with ``faults``, :class:`HeatRun`) and publish their reads as binary
    ``HEAT`` batches, one upload per concentrator every ``batch_intervals`` reads."""
    from meters.wire import binary

    from .publish import Publisher

    run = HeatRun(hf, start, days, interval_s, seed, tz, faults, batch_intervals)
    pub = Publisher(url, passwords, window=window, client_prefix=client_prefix + "-heat", tz=tz)
    readings = 0
    try:
        pub.connect_all([single_sender] if single_sender else hf.conc_ids)
        for b in list(range(run.n_blocks)) + [None]:
            for up in run.uploads(b) if b is not None else run.leftovers():
                sender = single_sender or hf.conc_ids[up.conc]
                if len(up.meter_id):
                    pub.publish(sender, binary.encode_batch(up.meter_id, up.ts, up.register_milli, up.heat))
                    readings += len(up.meter_id)
                if up.malformed is not None:
                    pub.publish(sender, up.malformed)
        pub.close()
    except BaseException:
        pub.abort()
        raise
    E = run.reads.energy_milli
    return {"meters": len(hf.meter_id), "concentrators": len(hf.conc_ids), "readings": readings,
            "energy_kwh": round(float((E[:, -1] - E[:, 0]).sum()) / 1000, 3), "faults": run.counts}
