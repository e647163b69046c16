"""Load profiles and the register generator.

Consumption of meter i in the interval that ends at ``ts`` (thousandths of the unit):

    q = round(daily_milli[i] * F[profile[i], ts] * day_factor(i, local day) * noise(i, ts))

- ``F`` (:func:`factor_table`): the interval's share of a mean day from the profile's daily shape
  (morning/evening peaks, weekday/weekend) times its seasonal factor (summer cooling, winter heating).
- ``day_factor``: a per-(meter, day) level in [0.55, 1.45] (days differ).
- ``noise``: ``(1-w) + w·Exp(1)`` with the profile's weight ``w`` (shrunk for long intervals).

Every random number comes from a counter-based hash of (seed, meter_id, ts or day, salt), so any
slice of meters and intervals regenerates identically whatever the batching. Registers are
cumulative exact integers; they wrap at the meter's ``register_max_milli``.
"""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import numpy as np
from numba import njit, prange

# --------------------------------------------------------------------------------------------------
# profiles


@dataclass(frozen=True)
class Profile:
    name: str
    utility: int                       # 0 electricity, 1 water, 2 gas
    base: float                        # constant part of the daily shape
    weekday: tuple                     # bumps (hour, amplitude, width h)
    weekend: tuple
    weekend_level: float               # weekend day total relative to a weekday
    season: tuple                      # bumps (day of year, amplitude, width days)
    noise: float                       # weight w of the Exp(1) noise at 15-minute resolution


def _shift(bumps, h):
    return tuple((mu + h, a, s) for mu, a, s in bumps)


_ELEC_WD = ((7.5, 0.8, 0.8), (12.0, 0.5, 1.0), (19.8, 1.9, 1.6), (23.0, 0.35, 0.8))
_ELEC_WE = ((9.5, 0.9, 1.2), (13.0, 0.7, 1.5), (19.8, 1.9, 1.7), (23.2, 0.35, 0.8))
_ELEC_SEASON = ((205.0, 0.45, 32.0), (15.0, 0.15, 30.0))
_WATER_WD = ((7.3, 1.6, 0.9), (12.0, 0.6, 0.8), (20.8, 1.5, 1.4))
_WATER_WE = ((9.0, 1.4, 1.3), (12.5, 0.8, 1.0), (20.8, 1.5, 1.5))
_GAS_WD = ((7.0, 0.9, 0.7), (11.8, 0.9, 0.8), (18.3, 1.6, 0.9))
_GAS_WE = ((8.5, 0.9, 0.9), (12.0, 1.1, 0.9), (18.3, 1.6, 1.0))

PROFILES: tuple[Profile, ...] = (
    Profile("electricity", 0, 0.45, _ELEC_WD, _ELEC_WE, 1.10, _ELEC_SEASON, 0.55),
    Profile("electricity-early", 0, 0.45, _shift(_ELEC_WD, -1.0), _shift(_ELEC_WE, -1.0), 1.08, _ELEC_SEASON, 0.55),
    Profile("electricity-late", 0, 0.50, _shift(_ELEC_WD, 1.5), _shift(_ELEC_WE, 1.5), 1.12, _ELEC_SEASON, 0.55),
    Profile("water", 1, 0.06, _WATER_WD, _WATER_WE, 1.12, ((200.0, 0.2, 45.0),), 0.9),
    Profile("water-late", 1, 0.06, _shift(_WATER_WD, 1.0), _shift(_WATER_WE, 1.0), 1.12, ((200.0, 0.2, 45.0),), 0.9),
    Profile("gas-cooking", 2, 0.05, _GAS_WD, _GAS_WE, 1.10, ((15.0, 0.3, 45.0),), 0.8),
    Profile("gas-heating", 2, 0.9, _GAS_WD, _GAS_WE, 1.05, ((15.0, 6.0, 42.0),), 0.5),
)


def profile_index(utility: np.ndarray, archetype: np.ndarray, heating: np.ndarray) -> np.ndarray:
    """Profile per meter: electricity by archetype (0 standard, 1 early, 2 late), water standard
    or late, gas cooking or heating (wall boiler)."""
    out = np.where(utility == 0, archetype, 0)
    out = np.where(utility == 1, 3 + (archetype == 2), out)
    out = np.where(utility == 2, 5 + heating.astype(np.int64), out)
    return out.astype(np.int32)


def _circ(x, mu, period):
    d = np.abs(x - mu) % period
    return np.minimum(d, period - d)


def daily_shape(p: Profile, hours: np.ndarray, weekend: np.ndarray) -> np.ndarray:
    """Relative level at local ``hours`` (fractional); a weekday averages 1, a weekend day
    ``weekend_level``."""
    out = np.empty(len(hours))
    for flag, bumps, level in ((False, p.weekday, 1.0), (True, p.weekend, p.weekend_level)):
        grid = np.arange(0, 24, 1 / 12)
        def f(h):
            v = np.full(len(h), p.base)
            for mu, a, s in bumps:
                v += a * np.exp(-0.5 * (_circ(h, mu, 24.0) / s) ** 2)
            return v
        norm = level / f(grid).mean()
        m = weekend == flag
        out[m] = f(hours[m]) * norm
    return out


def season_factor(p: Profile, doy: np.ndarray) -> np.ndarray:
    v = np.ones(len(doy))
    for mu, a, s in p.season:
        v += a * np.exp(-0.5 * (_circ(doy, mu, 365.25) / s) ** 2)
    return v


def factor_table(ts_end: np.ndarray, interval_s: int, tz: ZoneInfo) -> np.ndarray:
    """``F[p, j]``: the share of a mean day used by profile ``p`` in the interval ending at
    ``ts_end[j]`` (Unix seconds), from the daily shape (averaged over 5-minute steps of the
    interval), the weekday and the season, all in local time ``tz``."""
    step = min(interval_s, 300)
    sub = np.arange(step / 2, interval_s, step)          # sample midpoints inside the interval
    t = (ts_end[:, None] - interval_s + sub[None, :]).ravel()
    hours, weekend, doy = _local_calendar(t, tz)
    out = np.empty((len(PROFILES), len(ts_end)))
    for i, p in enumerate(PROFILES):
        v = daily_shape(p, hours, weekend) * season_factor(p, doy)
        out[i] = v.reshape(len(ts_end), len(sub)).mean(axis=1) * (interval_s / 86400.0)
    return out


def _local_calendar(t: np.ndarray, tz: ZoneInfo):
    """Local fractional hour, weekend flag and day of year of Unix seconds ``t``."""
    off = local_offsets(t, tz)
    lt = t + off
    days = np.floor_divide(lt, 86400)
    hours = (lt - days * 86400) / 3600.0
    weekend = ((days + 3) % 7) >= 5                      # 1970-01-01 was a Thursday
    d64 = days.astype("datetime64[D]")
    doy = (d64 - d64.astype("datetime64[Y]")).astype(np.int64).astype(float) + 0.5
    return hours, weekend, doy


def local_offsets(t: np.ndarray, tz: ZoneInfo) -> np.ndarray:
    """UTC offset in seconds of ``tz`` at each Unix second in ``t`` (computed per hour)."""
    t = np.asarray(t, dtype=np.int64)
    hours = np.floor_divide(t, 3600)
    uniq, inv = np.unique(hours, return_inverse=True)
    offs = np.array([int(dt.datetime.fromtimestamp(int(h) * 3600, tz).utcoffset().total_seconds())
                     for h in uniq], dtype=np.int64)
    return offs[inv].reshape(t.shape)


def local_day_number(t: np.ndarray, tz: ZoneInfo) -> np.ndarray:
    """Local calendar day (days since 1970-01-01) of Unix seconds ``t``."""
    t = np.asarray(t, dtype=np.int64)
    return np.floor_divide(t + local_offsets(t, tz), 86400)


def noise_weights(interval_s: int) -> np.ndarray:
    """Noise weight per profile, shrunk for intervals longer than 15 minutes."""
    shrink = math.sqrt(min(1.0, 900.0 / interval_s))
    return np.array([p.noise * shrink for p in PROFILES])


# --------------------------------------------------------------------------------------------------
# counter-based random numbers

M64 = (1 << 64) - 1
SALT_NOISE, SALT_DAY1, SALT_DAY2 = 1, 2, 3


def splitmix_py(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & M64
    z = x
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def uniform_py(seed: int, meter: int, key: int, salt: int) -> float:
    """Reference: a uniform in (0, 1) from (seed, meter, key, salt)."""
    h = splitmix_py((seed & M64) ^ splitmix_py((meter & M64) ^ splitmix_py(((key & M64) + salt * 0x632BE59BD9B4E019) & M64)))
    return ((h >> 11) + 0.5) * (1.0 / 9007199254740992.0)


@njit(cache=True, inline="always")
def _splitmix(x):
    x = x + np.uint64(0x9E3779B97F4A7C15)
    z = x
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@njit(cache=True, inline="always")
def _uniform(seed, meter, key, salt):
    h = _splitmix(np.uint64(seed) ^ _splitmix(np.uint64(meter) ^ _splitmix(
        np.uint64(key) + np.uint64(salt) * np.uint64(0x632BE59BD9B4E019))))
    return (float(h >> np.uint64(11)) + 0.5) * (1.0 / 9007199254740992.0)


@njit(cache=True, parallel=True)
def uniform_grid(seed, salt, meter_id, keys):
    """``U[i, j]``: uniform in (0, 1) for (seed, meter_id[i], keys[j], salt)."""
    n, m = len(meter_id), len(keys)
    out = np.empty((n, m))
    for i in prange(n):
        for j in range(m):
            out[i, j] = _uniform(seed, meter_id[i], keys[j], salt)
    return out


def uniform_grid_py(seed, salt, meter_id, keys) -> np.ndarray:
    return np.array([[uniform_py(int(seed), int(m), int(k), int(salt)) for k in keys] for m in meter_id],
                    dtype=float).reshape(len(meter_id), len(keys))


# --------------------------------------------------------------------------------------------------
# the generator


@njit(cache=True, parallel=True)
def generate_block(seed, meter_id, profile, daily_milli, noise_w, F, ts, dayno, day_idx, opening,
                   acc, reg_max, rep_ts, rep_start, out, day_q, day_state, dayf_state):
    """Advance the registers of ``n`` meters over ``nk`` intervals ending at ``ts``.

    ``acc`` (in/out) holds each meter's register before the block; ``out[i, j]`` receives the
    register read at ``ts[j]``. ``opening`` means ``ts[0]`` is the run's opening read (no
    consumption). ``day_q[i, day_idx[j]]`` accumulates the true consumption (``day_idx < 0``: not
    counted). A meter with ``rep_ts[i] == ts[j]`` is replaced in that interval: its register
    restarts at ``rep_start[i]`` before the interval's use is added. Registers wrap at
    ``reg_max``. ``day_state``/``dayf_state`` (in/out) cache each meter's current day and its day
    factor between calls (start with ``day_state = -1``). Returns nothing."""
    n, nk = out.shape
    for i in prange(n):
        a = acc[i]
        m = meter_id[i]
        p = profile[i]
        base = daily_milli[i]
        w = noise_w[p]
        prev_day = day_state[i]
        dayf = dayf_state[i]
        for j in range(nk):
            if j == 0 and opening:
                out[i, j] = a
                continue
            d = dayno[j]
            if d != prev_day:
                dayf = 0.55 + 0.45 * (_uniform(seed, m, d, 2) + _uniform(seed, m, d, 3))
                prev_day = d
            u = _uniform(seed, m, ts[j], 1)
            q = np.int64(base * F[p, j] * dayf * ((1.0 - w) - w * math.log(u)) + 0.5)
            if rep_ts[i] == ts[j]:
                a = rep_start[i]
            a = (a + q) % reg_max[i]
            out[i, j] = a
            if day_idx[j] >= 0:
                day_q[i, day_idx[j]] += q
        acc[i] = a
        day_state[i] = prev_day
        dayf_state[i] = dayf
