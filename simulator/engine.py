"""The run plan and the shard engine: registers per upload, faults applied, uploads per concentrator.

A run reads every meter at ``ts_k = start + k·interval`` for ``k = 0..n`` (``k = 0`` is the opening
read; interval ``k`` covers ``(ts_{k-1}, ts_k]`` and belongs to the local day of ``ts_{k-1}``).
Concentrators upload every ``batch_intervals`` reads: one upload holds its meters' reads of those
instants. A shard is a contiguous range of concentrators; shards are independent (one per process).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import numpy as np

from meters.wire import binary

from .faults import MAX_LATE_UPLOADS, Faults
from .fleet import Fleet
from . import profiles as P

SALT_FATE, SALT_DELAY, SALT_SPIKE, SALT_SPIKE_SIZE = 11, 12, 13, 14
SALT_ROLL, SALT_ROLL_POS, SALT_REP, SALT_REP_AT, SALT_REP_START = 21, 22, 23, 24, 25
SALT_SKEW, SALT_SKEW_S, SALT_MAL, SALT_MAL_KIND = 26, 27, 31, 32
EVENT_KINDS = ("lost", "duplicate", "late", "spike", "rollover", "replacement", "skew")


@dataclass(frozen=True)
class Plan:
    fleet: Fleet
    start: int                  # Unix seconds of the opening read
    days: float
    interval_s: int
    seed: int
    tz_name: str = "Asia/Shanghai"
    faults: Faults = Faults()
    batch_intervals: int = 4

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.tz_name)

    @property
    def n_intervals(self) -> int:
        return int(round(self.days * 86400)) // self.interval_s

    @property
    def n_reads(self) -> int:
        return self.n_intervals + 1

    @property
    def n_blocks(self) -> int:
        return -(-self.n_reads // self.batch_intervals)

    @property
    def end(self) -> int:
        return self.start + self.n_intervals * self.interval_s

    @property
    def day0(self) -> int:
        return int(P.local_day_number(np.array([self.start]), self.tz)[0])

    @property
    def n_days(self) -> int:
        """Local days touched by the run's intervals."""
        if self.n_intervals == 0:
            return 0
        return int(P.local_day_number(np.array([self.end - self.interval_s]), self.tz)[0]) - self.day0 + 1

    def block_ts(self, b: int) -> np.ndarray:
        k0 = b * self.batch_intervals
        k1 = min(k0 + self.batch_intervals, self.n_reads)
        return self.start + np.arange(k0, k1, dtype=np.int64) * self.interval_s

    def day_label(self, i: int) -> dt.date:
        return dt.date(1970, 1, 1) + dt.timedelta(days=self.day0 + i)


@dataclass
class Upload:
    """One concentrator's upload: readings as published (after faults)."""

    conc: int                   # concentrator index in the fleet
    meter_id: np.ndarray
    ts: np.ndarray
    register_milli: np.ndarray
    malformed: bytes | None = None      # an extra garbage payload to send with it
    payload: bytes | None = None        # the readings already encoded (fast path) ...
    payload_format: str | None = None   # ... in this format of meters.wire.FORMATS


class Shard:
    """Concentrators ``lo..hi-1`` of a plan: generates uploads block by block and keeps the ground
    truth (per-meter counts, true daily consumption, fault events)."""

    def __init__(self, plan: Plan, lo: int = 0, hi: int | None = None):
        self.plan = plan
        f = plan.fleet
        self.lo, self.hi = lo, (f.n_concentrators if hi is None else hi)
        self.s, self.e = int(f.conc_start[self.lo]), int(f.conc_start[self.hi])
        sl = slice(self.s, self.e)
        self.meter_id = f.meter_id[sl]
        self.profile = f.profile[sl]
        self.daily = f.daily_milli[sl]
        self.reg_max = f.register_max_milli[sl]
        n = self.n = self.e - self.s
        seed, fl = plan.seed, plan.faults
        key0 = np.array([plan.start], dtype=np.int64)
        u = lambda salt: P.uniform_grid(seed, salt, self.meter_id, key0)[:, 0]  # noqa: E731
        self.start_milli = f.start_milli[sl].copy()
        self.rollover = np.zeros(n, bool)
        if fl.rollover > 0:
            self.rollover = u(SALT_ROLL) < fl.rollover
            use = (self.daily * max(plan.days, 1.0 / 24) * (0.1 + 0.6 * u(SALT_ROLL_POS))).astype(np.int64) + 1
            self.start_milli = np.where(self.rollover, np.maximum(self.reg_max - use, 0), self.start_milli)
        self.rep_ts = np.zeros(n, np.int64)
        self.rep_start = np.zeros(n, np.int64)
        if fl.replacement > 0 and plan.n_intervals > 0:
            rep = u(SALT_REP) < fl.replacement
            k = 1 + np.minimum((u(SALT_REP_AT) * plan.n_intervals).astype(np.int64), plan.n_intervals - 1)
            self.rep_ts = np.where(rep, plan.start + k * plan.interval_s, 0)
            self.rep_start = np.where(rep, (u(SALT_REP_START) * 5000).astype(np.int64), 0)
        self.skew = np.zeros(n, np.int64)
        if fl.skew > 0:
            su = u(SALT_SKEW_S)
            mag = (10 + 590 * np.abs(2 * su - 1)).astype(np.int64)
            self.skew = np.where(u(SALT_SKEW) < fl.skew, np.where(su < 0.5, -mag, mag), 0)
        self.acc = self.start_milli.copy()
        self.day_q = np.zeros((n, plan.n_days), np.int64)
        self.counts = {k: np.zeros(n, np.int64) for k in ("published", "lost", "duplicate", "late", "spike")}
        self.messages = np.zeros(self.hi - self.lo, np.int64)
        self.readings = np.zeros(self.hi - self.lo, np.int64)
        self.malformed = np.zeros(self.hi - self.lo, np.int64)
        self.events: list[tuple] = []        # (local idx, ts, kind, published_ts, published, true) arrays
        self._pending: dict[int, list] = {}  # upload index -> [(idx, ts_pub, reg_pub)]
        self._static: dict[int, list] = {}
        self.noise_w = P.noise_weights(plan.interval_s)
        self.day_state = np.full(n, -1, np.int64)
        self.dayf_state = np.ones(n)
        all_ts = plan.start + np.arange(plan.n_reads, dtype=np.int64) * plan.interval_s
        self.F = P.factor_table(all_ts, plan.interval_s, plan.tz)
        self.dayno = P.local_day_number(all_ts - plan.interval_s, plan.tz)
        self.conc_off = f.conc_start[self.lo:self.hi + 1] - self.s   # local meter offsets per concentrator
        self._static_events()

    def _static_events(self):
        p = self.plan
        for mask, kind, val in ((self.rollover, "rollover", self.start_milli),
                                (self.skew != 0, "skew", self.skew),
                                (self.rep_ts != 0, "replacement", self.rep_start)):
            idx = np.nonzero(mask)[0]
            if len(idx):
                ts = self.rep_ts[idx] if kind == "replacement" else np.full(len(idx), p.start)
                self.events.append((idx, ts, kind, ts + self.skew[idx], val[idx], np.full(len(idx), -1)))

    # -- generation -----------------------------------------------------------------------------
    def registers(self, b: int) -> tuple[np.ndarray, np.ndarray]:
        """True registers of every meter of the shard at the reads of upload ``b`` (call in order)."""
        p = self.plan
        ts = p.block_ts(b)
        k0 = b * p.batch_intervals
        F = np.ascontiguousarray(self.F[:, k0:k0 + len(ts)])
        dayno = self.dayno[k0:k0 + len(ts)]
        day_idx = dayno - p.day0
        opening = b == 0
        if opening:
            day_idx[0] = -1
        out = np.empty((self.n, len(ts)), np.int64)
        P.generate_block(np.int64(p.seed), self.meter_id, self.profile, self.daily, self.noise_w, F, ts, dayno,
                         day_idx, opening, self.acc, self.reg_max, self.rep_ts, self.rep_start, out, self.day_q,
                         self.day_state, self.dayf_state)
        return ts, out

    def uploads(self, b: int) -> list[Upload]:
        """The uploads of block ``b`` (every concentrator of the shard), faults applied."""
        ts, R = self.registers(b)
        p, fl = self.plan, self.plan.faults
        n, nk = R.shape
        if not fl.per_reading and not self._pending:
            self.counts["published"] += nk
            ups = []
            mids = np.repeat(self.meter_id, nk)
            tss = np.tile(ts, n)
            regs = R.ravel()
            templates = self._templates(nk)
            base = int(ts[0])
            for c in range(self.hi - self.lo):
                a, z = self.conc_off[c] * nk, self.conc_off[c + 1] * nk
                payload = templates[c].batch(base, regs[a:z])
                ups.append(Upload(self.lo + c, mids[a:z], tss[a:z], regs[a:z], payload=payload,
                                  payload_format=binary.CODEC.name))
            return self._finish(b, ts, ups)
        seed = np.int64(p.seed)
        fate = P.uniform_grid(seed, SALT_FATE, self.meter_id, ts)
        lost = fate < fl.lost
        dup = (fate >= fl.lost) & (fate < fl.lost + fl.duplicate)
        late = (fate >= fl.lost + fl.duplicate) & (fate < fl.lost + fl.duplicate + fl.late)
        pub = R
        spike = np.zeros_like(lost)
        if fl.spike > 0:
            spike = P.uniform_grid(seed, SALT_SPIKE, self.meter_id, ts) < fl.spike
            if spike.any():
                size = P.uniform_grid(seed, SALT_SPIKE_SIZE, self.meter_id, ts)
                jump = (self.daily[:, None] * (20 + 180 * size)).astype(np.int64)
                pub = np.where(spike, (R + jump) % self.reg_max[:, None], R)
        ts_pub = ts[None, :] + self.skew[:, None]
        idx = np.broadcast_to(np.arange(n)[:, None], R.shape)
        for name, m in (("lost", lost), ("duplicate", dup), ("late", late), ("spike", spike)):
            cnt = m.sum(axis=1)
            self.counts[name] += cnt
            if cnt.any():
                ii, jj = np.nonzero(m)
                self.events.append((ii, ts[jj], name, ts_pub[ii, jj], pub[ii, jj], R[ii, jj]))
        self.counts["published"] += nk - lost.sum(axis=1) + dup.sum(axis=1)
        if late.any():
            delay = 1 + (P.uniform_grid(seed, SALT_DELAY, self.meter_id, ts) * MAX_LATE_UPLOADS).astype(np.int64)
            ii, jj = np.nonzero(late)
            for d in np.unique(delay[ii, jj]):
                sel = delay[ii, jj] == d
                self._pending.setdefault(b + int(d), []).append(
                    (ii[sel], ts_pub[ii[sel], jj[sel]], pub[ii[sel], jj[sel]]))
        if dup.any():
            ii, jj = np.nonzero(dup)
            self._pending.setdefault(b + 1, []).append((ii, ts_pub[ii, jj], pub[ii, jj]))
        now = ~(lost | late)
        parts = [(idx[now], ts_pub[now], pub[now])]
        parts += self._pending.pop(b, [])
        return self._finish(b, ts, self._group(parts))

    def _templates(self, nk: int) -> list[binary.Template]:
        """Per concentrator: its binary batches of ``nk`` reads per meter (the meter_id and ts columns
        are the same in every upload of that size)."""
        cached = self._static.get(nk)
        if cached is None:
            dts = np.arange(nk, dtype=np.int64) * self.plan.interval_s
            cached = [binary.Template(np.repeat(self.meter_id[self.conc_off[c]:self.conc_off[c + 1]], nk),
                                      np.tile(dts, int(self.conc_off[c + 1] - self.conc_off[c])))
                      for c in range(self.hi - self.lo)]
            self._static[nk] = cached
        return cached

    def _group(self, parts) -> list[Upload]:
        ii = np.concatenate([x[0] for x in parts])
        tt = np.concatenate([x[1] for x in parts])
        rr = np.concatenate([x[2] for x in parts])
        order = np.argsort(ii, kind="stable")
        ii, tt, rr = ii[order], tt[order], rr[order]
        bounds = np.searchsorted(ii, self.conc_off)
        ups = []
        for c in range(self.hi - self.lo):
            a, z = bounds[c], bounds[c + 1]
            if z > a:
                ups.append(Upload(self.lo + c, self.meter_id[ii[a:z]], tt[a:z], rr[a:z]))
        return ups

    def leftovers(self) -> list[Upload]:
        """Late readings and duplicates still pending after the last block (published last)."""
        parts = [x for b in sorted(self._pending) for x in self._pending[b]]
        self._pending.clear()
        if not parts:
            return []
        ups = self._group(parts)
        for u in ups:
            self.messages[u.conc - self.lo] += 1
            self.readings[u.conc - self.lo] += len(u.meter_id)
        return ups

    def _finish(self, b: int, ts: np.ndarray, ups: list[Upload]) -> list[Upload]:
        fl = self.plan.faults
        if fl.malformed > 0:
            concs = np.arange(self.lo, self.hi, dtype=np.int64) + 1
            key = ts[:1]
            bad = P.uniform_grid(np.int64(self.plan.seed), SALT_MAL, concs, key)[:, 0] < fl.malformed
            kinds = P.uniform_grid(np.int64(self.plan.seed), SALT_MAL_KIND, concs, key)[:, 0]
            byc = {u.conc: u for u in ups}
            for c in np.nonzero(bad)[0]:
                conc = self.lo + int(c)
                u = byc.get(conc)
                if u is None:
                    u = byc[conc] = Upload(conc, np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64))
                    ups.append(u)
                u.malformed = malformed_payload(self.plan.seed, conc, int(ts[0]), float(kinds[c]))
                self.malformed[c] += 1
        for u in ups:
            c = u.conc - self.lo
            if len(u.meter_id):
                self.messages[c] += 1
                self.readings[c] += len(u.meter_id)
        return ups


def malformed_payload(seed: int, conc: int, key: int, kind_u: float) -> bytes:
    """A payload no valid reader accepts: random bytes, a truncated binary batch or broken JSON."""
    rng = np.random.default_rng([seed & 0xFFFFFFFF, conc, key & 0xFFFFFFFF])
    if kind_u < 1 / 3:
        b = rng.integers(0, 256, int(rng.integers(8, 200)), dtype=np.uint8).tobytes()
        return b"\x00" + b if b[:1] in (b"[", b"{", binary.MAGIC[:1]) else b   # never valid JSON nor the magic
    if kind_u < 2 / 3:
        m = np.arange(1, 11, dtype=np.int64)
        whole = binary.encode_batch(m, np.full(10, key, np.int64), m * 1000)
        return whole[: int(rng.integers(4, len(whole) - 1))]
    return b'{"meter_id": 1, "ts": "' + str(key).encode() + b'", "register": '
