"""A seeded fleet: households with electricity (all), water (most) and gas (many) meters, grouped
under data concentrators, with accounts, tariffs, prepaid/postpaid mix, balances and contacts.

Everything is a numpy array per meter (struct of arrays). Meters are ordered by utility, then
household, so the meters of one concentrator are contiguous: ``fleet.conc_start[c] ..
fleet.conc_start[c+1]``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from meters.errors import MetersError
from meters.schemas import ACCOUNTS, CONTACTS, METERS, UNITS
from meters.tariffs import builtin_catalog

UTILITY_NAMES = ("electricity", "water", "gas")
ELEC, WATER, GAS = 0, 1, 2
# meter_id = UTILITY_DIGIT * 10**11 + household number: 100000000001 is household 1's electricity meter
UTILITY_DIGIT = np.array([1, 2, 3], dtype=np.int64)
ID_BASE = 10**11
ACCOUNT_PREFIX = ("31", "52", "73")          # user numbers: prefix + 10 digits
REGISTER_MAX = np.array([1_000_000, 100_000, 100_000], dtype=np.int64)  # units: XXXXXX.XX kWh, XXXXX.XXX m3
REGIONS = ("dongcheng", "xicheng", "chaoyang", "haidian", "fengtai", "shijingshan", "tongzhou",
           "changping", "daxing", "shunyi")


@dataclass(frozen=True)
class FleetConfig:
    """The knobs of a fleet (defaults: a Chinese city)."""

    water_share: float = 0.8            # households with a water meter
    gas_share: float = 0.6              # households with a gas meter
    conc_size: tuple[int, int] = (200, 300)   # meters per concentrator (uniform range)
    household_size_p: tuple[float, ...] = (0.15, 0.30, 0.30, 0.15, 0.10)  # 1..5 persons
    elec_tariffs: tuple[tuple[str, float], ...] = (("cn-bj-res-elec", 0.5), ("cn-gd-res-elec", 0.25),
                                                   ("cn-sh-res-elec-tou", 0.25))
    water_tariffs: tuple[tuple[str, float], ...] = (("cn-bj-res-water", 1.0),)
    gas_tariffs: tuple[tuple[str, float], ...] = (("cn-bj-res-gas", 1.0),)
    prepaid_share: tuple[float, float, float] = (0.7, 0.3, 0.5)   # per utility
    topup_share: float = 0.2            # prepaid accounts with auto top-up
    family_share: float = 0.15          # households with a daughter/son as extra contact
    heating_share: float = 0.4          # gas households with a wall boiler (winter heating)
    # mean daily use per utility before household size, season and noise (kWh, m3, m3)
    daily_mean: tuple[float, float, float] = (5.0, 0.33, 0.55)
    household_sigma: float = 0.45       # lognormal spread of households of equal size


@dataclass
class Fleet:
    """N meters as arrays; see the module docstring for the ordering."""

    seed: int
    meter_id: np.ndarray        # int64
    utility: np.ndarray         # int8: 0 electricity, 1 water, 2 gas
    household: np.ndarray       # int64, 1-based household number
    household_size: np.ndarray  # int8
    region: np.ndarray          # int16 index into REGIONS
    concentrator: np.ndarray    # int32 index into conc_ids
    conc_ids: list[str]
    conc_start: np.ndarray      # int64[n_conc + 1]
    profile: np.ndarray         # int32 index into simulator.profiles.PROFILES
    daily_milli: np.ndarray     # float64 mean daily use, thousandths of the unit
    register_max_milli: np.ndarray  # int64
    start_milli: np.ndarray     # int64 opening register
    tariff: np.ndarray          # int16 index into tariff_ids
    tariff_ids: list[str]
    prepaid: np.ndarray         # bool
    balance_cents: np.ndarray   # int64 opening balance
    topup_below: np.ndarray     # int64 cents, 0 = none
    topup_amount: np.ndarray    # int64 cents
    billing_day: np.ndarray     # int8
    family: np.ndarray          # int8 per meter: 0 none, 1 daughter, 2 son
    config: FleetConfig = field(default_factory=FleetConfig)

    def __len__(self) -> int:
        return len(self.meter_id)

    @property
    def n_concentrators(self) -> int:
        return len(self.conc_ids)

    def account_ids(self) -> list[str]:
        """User numbers: a utility prefix and the household number (10 digits)."""
        return self.account_id_array().to_pylist()

    def meters_table(self) -> pa.Table:
        """The ``meters`` registry rows (meters.schemas.METERS)."""
        util = np.array(UTILITY_NAMES, dtype=object)[self.utility]
        return pa.table({
            "meter_id": pa.array(self.meter_id, pa.int64()),
            "external_id": pa.nulls(len(self), pa.string()),
            "utility": pa.array(util, pa.string()),
            "unit": pa.array([UNITS[u] for u in UTILITY_NAMES], pa.string()).take(pa.array(self.utility)),
            "concentrator": pa.array(np.array(self.conc_ids, dtype=object)[self.concentrator], pa.string()),
            "region": pa.array(np.array(REGIONS, dtype=object)[self.region], pa.string()),
            "register_max": pa.array(self.register_max_milli / 1000.0, pa.float64()),
        }, schema=METERS)

    def account_id_array(self) -> pa.Array:
        pre = np.array([int(p) for p in ACCOUNT_PREFIX], dtype=np.int64)[self.utility]
        return pa.array(pre * 10**10 + self.household, pa.int64()).cast(pa.string())

    def accounts_table(self) -> pa.Table:
        """The ``accounts`` registry rows (one account per meter)."""
        n = len(self)
        has_topup = self.topup_below > 0
        return pa.table({
            "account_id": self.account_id_array(),
            "meter_id": pa.array(self.meter_id, pa.int64()),
            "tariff_id": pa.array(np.array(self.tariff_ids, dtype=object)[self.tariff], pa.string()),
            "mode": pa.array(np.where(self.prepaid, "prepaid", "postpaid").astype(object), pa.string()),
            "billing_day": pa.array(self.billing_day, pa.int8()),
            "balance": _money(self.balance_cents),
            "warn_1": _money(np.full(n, 3000)),
            "warn_2": _money(np.full(n, 2000)),
            "topup_below": _money(self.topup_below, has_topup),
            "topup_amount": _money(self.topup_amount, has_topup),
            "premise_area": pa.nulls(n, ACCOUNTS.field("premise_area").type),
        }, schema=ACCOUNTS)

    def contacts_table(self) -> pa.Table:
        """``self`` for every account (the household's phone) plus a daughter or son for some."""
        acc = self.account_id_array()
        phone = self.household % 10**8
        fam = np.nonzero(self.family)[0]
        account = pa.concat_arrays([acc, acc.take(pa.array(fam))])
        recipient = np.concatenate([138 * 10**8 + phone, 139 * 10**8 + phone[fam]])
        relation = np.concatenate([np.full(len(self), "self", dtype=object),
                                   np.where(self.family[fam] == 1, "daughter", "son").astype(object)])
        order = np.argsort(np.concatenate([np.arange(len(self)), fam]), kind="stable")
        return pa.table({"account_id": account.take(pa.array(order)),
                         "recipient": pa.array(recipient[order], pa.int64()).cast(pa.string()),
                         "relation": pa.array(relation[order], pa.string()),
                         "language": pa.nulls(len(order), pa.string())}, schema=CONTACTS)

    def concentrator_slice(self, c: int) -> slice:
        return slice(int(self.conc_start[c]), int(self.conc_start[c + 1]))


def _money(cents: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """Exact decimal128(18, 2) from integer cents (null where not ``valid``), without Python objects."""
    cents = np.asarray(cents, dtype=np.int64)
    words = np.empty((len(cents), 2), np.int64)
    words[:, 0] = cents
    words[:, 1] = np.where(cents < 0, -1, 0)
    bitmap = None if valid is None else pa.py_buffer(np.packbits(valid.astype(bool), bitorder="little").tobytes())
    nulls = 0 if valid is None else int((~valid.astype(bool)).sum())
    return pa.Array.from_buffers(pa.decimal128(18, 2), len(cents), [bitmap, pa.py_buffer(words.tobytes())],
                                 null_count=nulls)


def _pick(rng, n, choices: tuple[tuple[str, float], ...], offset: int) -> np.ndarray:
    p = np.array([w for _, w in choices], dtype=float)
    return (rng.choice(len(choices), size=n, p=p / p.sum()) + offset).astype(np.int16)


def make_fleet(n: int, seed: int = 0, config: FleetConfig | None = None) -> Fleet:
    """A fleet of exactly ``n`` meters, identical for the same (n, seed, config)."""
    from .profiles import profile_index

    cfg = config or FleetConfig()
    if n < 1:
        raise MetersError(f"--meters must be at least 1 (got {n})")
    if n > 10**10:
        raise MetersError(f"--meters {n} is too many (at most 10^10)")
    known = {t.tariff_id for t in builtin_catalog()}
    for tid, _ in cfg.elec_tariffs + cfg.water_tariffs + cfg.gas_tariffs:
        if tid not in known:
            raise MetersError(f"fleet tariff {tid!r} is not in the built-in catalog ({', '.join(sorted(known))})")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x51E7]))
    # households until we have n meters: electricity always, water and gas by share
    h_n = int(n / (1 + cfg.water_share + cfg.gas_share)) + 16
    while True:
        has_w = rng.random(h_n) < cfg.water_share
        has_g = rng.random(h_n) < cfg.gas_share
        if h_n + has_w.sum() + has_g.sum() >= n:
            break
        h_n *= 2
    hh = np.arange(1, h_n + 1, dtype=np.int64)
    order_total = np.cumsum(1 + has_w.astype(np.int64) + has_g.astype(np.int64))
    h_used = int(np.searchsorted(order_total, n) + 1)   # households needed (last may be partial)
    hh, has_w, has_g = hh[:h_used], has_w[:h_used], has_g[:h_used]
    # the last household may be cut: drop its gas, then its water, to land on n exactly
    excess = int(order_total[h_used - 1] - n)
    if excess >= 1 and has_g[-1]:
        has_g[-1] = False
        excess -= 1
    if excess >= 1 and has_w[-1]:
        has_w[-1] = False
        excess -= 1
    assert excess == 0
    size = (rng.choice(len(cfg.household_size_p), size=h_used, p=np.array(cfg.household_size_p) /
                       sum(cfg.household_size_p)) + 1).astype(np.int8)
    region = ((hh - 1) * len(REGIONS) // h_used).astype(np.int16)
    family = np.where(rng.random(h_used) < cfg.family_share, rng.integers(1, 3, h_used), 0).astype(np.int8)
    heating = rng.random(h_used) < cfg.heating_share
    person_f = size.astype(float) ** 0.6 / 2.0 ** 0.6

    parts = []
    for u, mask in ((ELEC, np.ones(h_used, bool)), (WATER, has_w), (GAS, has_g)):
        idx = np.nonzero(mask)[0]
        parts.append((u, idx))
    meter_id = np.concatenate([UTILITY_DIGIT[u] * ID_BASE + hh[idx] for u, idx in parts])
    utility = np.concatenate([np.full(len(idx), u, np.int8) for u, idx in parts])
    hidx = np.concatenate([idx for _, idx in parts])
    assert len(meter_id) == n
    # concentrators: consecutive runs of meters of one utility
    conc = np.empty(n, np.int32)
    starts = [0]
    pos = 0
    lo, hi = cfg.conc_size
    for u, idx in parts:
        end = pos + len(idx)
        while pos < end:
            pos = min(end, pos + int(rng.integers(lo, hi + 1)))
            starts.append(pos)
    conc_start = np.array(starts, dtype=np.int64)
    for c in range(len(conc_start) - 1):
        conc[conc_start[c]:conc_start[c + 1]] = c
    conc_ids = [f"dcu-{c + 1:06d}" for c in range(len(conc_start) - 1)]

    # load: household size, individual spread, archetype
    spread = rng.lognormal(-cfg.household_sigma ** 2 / 2, cfg.household_sigma, n)
    daily = np.array(cfg.daily_mean)[utility] * 1000.0 * person_f[hidx] * spread
    arche = rng.integers(0, 3, n)
    profile = profile_index(utility, arche, heating[hidx])
    reg_max = REGISTER_MAX[utility] * 1000
    # realistic opening registers: 0-12 years of use, never within 30 days of wrapping
    years = rng.uniform(0.0, 12.0, n)
    start = np.minimum((daily * 365.0 * years).astype(np.int64), reg_max - (daily * 30).astype(np.int64) - 1)
    start = np.maximum(start, 0)

    tariff_ids = [t for t, _ in cfg.elec_tariffs + cfg.water_tariffs + cfg.gas_tariffs]
    off = (0, len(cfg.elec_tariffs), len(cfg.elec_tariffs) + len(cfg.water_tariffs))
    tariff = np.empty(n, np.int16)
    for u, choices in ((ELEC, cfg.elec_tariffs), (WATER, cfg.water_tariffs), (GAS, cfg.gas_tariffs)):
        m = utility == u
        tariff[m] = _pick(rng, int(m.sum()), choices, off[u])
    prepaid = rng.random(n) < np.array(cfg.prepaid_share)[utility]
    balance = np.where(prepaid, rng.integers(5, 51, n) * 1000, 0).astype(np.int64)   # 50..500 CNY
    topup = prepaid & (rng.random(n) < cfg.topup_share)
    topup_below = np.where(topup, rng.choice([3000, 5000], n), 0).astype(np.int64)
    topup_amount = np.where(topup, rng.choice([10000, 20000, 30000], n), 0).astype(np.int64)
    billing_day = np.where(rng.random(n) < 0.8, 1, rng.integers(1, 29, n)).astype(np.int8)
    return Fleet(seed=seed, meter_id=meter_id, utility=utility, household=hh[hidx], household_size=size[hidx],
                 region=region[hidx], concentrator=conc, conc_ids=conc_ids, conc_start=conc_start,
                 profile=profile, daily_milli=daily, register_max_milli=reg_max, start_milli=start,
                 tariff=tariff, tariff_ids=tariff_ids, prepaid=prepaid, balance_cents=balance,
                 topup_below=topup_below, topup_amount=topup_amount, billing_day=billing_day,
                 family=family[hidx], config=cfg)


def save_fleet(lake, fleet: Fleet) -> dict:
    """Write the fleet's meters, accounts and contacts into ``lake`` (insert or replace)."""
    from meters.registry import save_accounts, save_meters

    meters, accounts, contacts = fleet.meters_table(), fleet.accounts_table(), fleet.contacts_table()

    def same(name, new, keys):   # cheap path for re-running the same fleet on a lake
        old = lake.read(name)
        return old.num_rows == new.num_rows and old.sort_by([(k, "ascending") for k in keys]).equals(
            new.sort_by([(k, "ascending") for k in keys]))

    m = 0 if same("meters", meters, ["meter_id"]) else save_meters(lake, meters)
    if same("accounts", accounts, ["account_id"]) and same("contacts", contacts, ["account_id", "relation", "recipient"]):
        a = 0
    else:
        a = save_accounts(lake, accounts, contacts)
    return {"meters_changed": m, "accounts_changed": a}
