"""Fleet composition and registry output; fault parsing and fault rates."""
from __future__ import annotations

import json
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from meters.errors import MetersError
from meters.registry import load_tariffs
from meters.wire import WireError, decode_batch
from simulator.engine import Plan, Shard, malformed_payload
from simulator.faults import Faults, parse_faults
from simulator.fleet import make_fleet, save_fleet
from simulator.run import parse_interval, parse_speed, parse_start

TZ = ZoneInfo("Asia/Shanghai")


def test_fleet_mix_concentrators_and_ids():
    f = make_fleet(20_001, seed=1)
    assert len(f) == 20_001
    n_h = len(np.unique(f.household))
    assert (f.utility == 0).sum() == n_h                        # every household has electricity
    assert 0.75 < (f.utility == 1).sum() / n_h < 0.85           # ~80 % water
    assert 0.55 < (f.utility == 2).sum() / n_h < 0.65           # ~60 % gas
    assert len(np.unique(f.meter_id)) == len(f) and (f.meter_id > 0).all()
    sizes = np.diff(f.conc_start)
    assert sizes.sum() == len(f) and sizes.max() <= 300 and np.median(sizes) >= 200
    for c in range(f.n_concentrators):   # one utility per concentrator
        assert len(np.unique(f.utility[f.concentrator_slice(c)])) == 1
    assert f.conc_ids[0] == "dcu-000001"
    assert (f.start_milli < f.register_max_milli).all() and (f.start_milli >= 0).all()
    again = make_fleet(20_001, seed=1)
    assert np.array_equal(again.daily_milli, f.daily_milli) and again.conc_ids == f.conc_ids
    assert not np.array_equal(make_fleet(20_001, seed=2).daily_milli, f.daily_milli)


def test_fleet_registry_in_lake(lake):
    f = make_fleet(1000, seed=7)
    save_fleet(lake, f)
    meters = lake.read("meters").to_pandas()
    accounts = lake.read("accounts").to_pandas()
    contacts = lake.read("contacts").to_pandas()
    assert len(meters) == len(accounts) == 1000
    assert set(meters.utility) == {"electricity", "water", "gas"}
    assert meters.concentrator.str.match(r"dcu-\d{6}").all()
    assert set(meters.register_max) == {1e6, 1e5}
    tariffs = load_tariffs(lake)
    util = dict(zip(meters.meter_id, meters.utility))
    for r in accounts.itertuples():
        assert tariffs[r.tariff_id][-1].utility == util[r.meter_id]
    assert set(accounts["mode"]) == {"prepaid", "postpaid"}
    pre = accounts[accounts["mode"] == "prepaid"]
    assert (pre.balance > 0).all() and pre.topup_below.notna().any()
    assert accounts.topup_below.notna().sum() == accounts.topup_amount.notna().sum()
    assert (contacts.relation == "self").sum() == 1000
    assert contacts.relation.isin(["daughter", "son"]).any()
    assert accounts.account_id.str.fullmatch(r"\d{12}").all()
    # idempotent: saving the same fleet again changes nothing
    assert save_fleet(lake, f) == {"meters_changed": 0, "accounts_changed": 0}


@pytest.mark.parametrize("spec,msg", [
    ("lost", "name=rate"), ("bogus=0.1", "unknown fault"), ("lost=x", "must be a number"),
    ("lost=2", "between 0 and 1"), ("lost=0.6,late=0.6", "must not exceed 1")])
def test_bad_fault_specs_are_clear_errors(spec, msg):
    with pytest.raises(MetersError, match=msg):
        parse_faults(spec)


def test_parse_arguments():
    assert parse_faults(None) == Faults() and not parse_faults("none").any
    assert parse_faults("lost=0.01, spike=0.001").spike == 0.001
    assert [parse_interval(x) for x in ("15m", "1h", "1d")] == [900, 3600, 86400]
    with pytest.raises(MetersError, match="divide a day"):
        parse_interval("7m")
    with pytest.raises(MetersError, match="--interval"):
        parse_interval("fast")
    assert parse_speed("max") is None and parse_speed("realtime") == 1.0 and parse_speed("60x") == 60.0
    with pytest.raises(MetersError, match="--speed"):
        parse_speed("warp")
    assert parse_start("2026-11-23", TZ) == parse_start("2026-11-23T00:00:00+08:00", TZ)
    with pytest.raises(MetersError, match="--start"):
        parse_start("23/11/2026", TZ)


def test_faults_appear_at_requested_rates():
    fleet = make_fleet(4000, seed=11)
    fl = Faults(lost=0.02, duplicate=0.01, late=0.03, spike=0.005, rollover=0.05, replacement=0.04,
                skew=0.06, malformed=0.05)
    plan = Plan(fleet, parse_start("2026-05-01", TZ), 1, 900, 11, faults=fl, batch_intervals=4)
    shard = Shard(plan)
    uploads = [u for b in range(plan.n_blocks) for u in shard.uploads(b)] + shard.leftovers()
    total = len(fleet) * plan.n_reads
    c = {k: int(v.sum()) for k, v in shard.counts.items()}

    def near(count, rate, n):   # within 5 standard deviations of the binomial expectation
        sd = np.sqrt(n * rate * (1 - rate))
        assert abs(count - n * rate) < 5 * sd + 1, (count, n * rate)

    near(c["lost"], fl.lost, total)
    near(c["duplicate"], fl.duplicate, total)
    near(c["late"], fl.late, total)
    near(c["spike"], fl.spike, total)
    near(int(shard.rollover.sum()), fl.rollover, len(fleet))
    near(int((shard.rep_ts > 0).sum()), fl.replacement, len(fleet))
    near(int((shard.skew != 0).sum()), fl.skew, len(fleet))
    near(int(shard.malformed.sum()), fl.malformed, fleet.n_concentrators * plan.n_blocks)
    # what was published is exactly the manifest's count
    published = sum(len(u.meter_id) for u in uploads)
    assert published == c["published"] == total - c["lost"] + c["duplicate"]
    # late readings really arrive after a later reading of the same meter (out of order)
    seen_max: dict[int, int] = {}
    out_of_order = 0
    for u in uploads:
        for m, t in zip(u.meter_id.tolist(), u.ts.tolist()):
            if t < seen_max.get(m, -1):
                out_of_order += 1
            seen_max[m] = max(t, seen_max.get(m, -1))
    assert out_of_order >= c["late"] * 0.5
    # skewed meters publish off-grid timestamps
    skewed = set(shard.meter_id[shard.skew != 0].tolist())
    off = {m for u in uploads for m, t in zip(u.meter_id.tolist(), u.ts.tolist()) if t % 900}
    assert off == skewed
    assert sum(u.malformed is not None for u in uploads) == int(shard.malformed.sum())


@pytest.mark.parametrize("kind", [0.1, 0.5, 0.9])
def test_malformed_payloads_are_invalid(kind):
    for key in range(20):
        p = malformed_payload(3, 17, 1_700_000_000 + key, kind)
        if p[:4] == b"MTR1":
            with pytest.raises(WireError):
                decode_batch(p)
        else:
            with pytest.raises((ValueError, UnicodeDecodeError)):
                json.loads(p)


def test_fast_binary_uploads_equal_wire_encoder():
    from meters.wire import decode_batch, encode_batch

    fleet = make_fleet(900, seed=12)
    plan = Plan(fleet, parse_start("2026-05-01", TZ), 0.5, 900, 12, faults=Faults(malformed=0.2), batch_intervals=4)
    shard = Shard(plan)
    n = 0
    for b in range(plan.n_blocks):
        for u in shard.uploads(b):
            assert u.payload == encode_batch(u.meter_id, u.ts, u.register_milli)
            m, t, r = decode_batch(u.payload)
            assert np.array_equal(m, u.meter_id) and np.array_equal(t, u.ts) and np.array_equal(r, u.register_milli)
            n += 1
    assert n == fleet.n_concentrators * plan.n_blocks
