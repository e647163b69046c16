"""Simulator benchmarks: generation readings/s (numba vs plain numpy), binary QoS 1 publishing to the
managed Mosquitto with a counting subscriber (vs a bare paho publisher of ready-made batches), and
JSON one-reading-per-message msgs/s (vs bare paho). `python -m benchmarks simulator [--quick]`."""
from __future__ import annotations

import argparse
import multiprocessing as mp
import struct
import tempfile
import time
from zoneinfo import ZoneInfo

import numpy as np

TZ = ZoneInfo("Asia/Shanghai")
START = "2026-11-01"


# -- generation ------------------------------------------------------------------------------------
def _splitmix_np(x):
    x = x + np.uint64(0x9E3779B97F4A7C15)
    z = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _numpy_block(seed, meter_id, profile, daily, w, F, ts, dayno, acc, reg_max):
    """The same model in plain vectorised numpy (the obvious alternative to the numba kernel)."""
    m = meter_id.astype(np.uint64)[:, None]
    s = np.uint64(seed)
    with np.errstate(over="ignore"):
        def u(key, salt):
            h = _splitmix_np(s ^ _splitmix_np(m ^ _splitmix_np(key.astype(np.uint64)[None, :]
                                                               + np.uint64(salt) * np.uint64(0x632BE59BD9B4E019))))
            return ((h >> np.uint64(11)).astype(np.float64) + 0.5) * (1.0 / 9007199254740992.0)
        dayf = 0.55 + 0.45 * (u(dayno, 2) + u(dayno, 3))
        e = -np.log(u(ts, 1))
    wp = w[profile][:, None]
    q = (daily[:, None] * F[profile] * dayf * ((1.0 - wp) + wp * e) + 0.5).astype(np.int64)
    return (acc[:, None] + np.cumsum(q, axis=1)) % reg_max[:, None]


def bench_generation(n_meters: int, days: int) -> dict:
    from simulator import profiles as P
    from simulator.engine import Plan, Shard
    from simulator.fleet import make_fleet
    from simulator.run import parse_start

    fleet = make_fleet(n_meters, seed=1)
    plan = Plan(fleet, parse_start(START, TZ), days, 900, 1, batch_intervals=4)
    shard = Shard(plan)
    shard.registers(0)                                  # compile / load the cache
    shard = Shard(plan)
    t = time.perf_counter()
    for b in range(plan.n_blocks):
        shard.registers(b)
    numba_s = time.perf_counter() - t
    total = len(fleet) * plan.n_reads
    # plain numpy on the same blocks (one day of 4-read uploads)
    ts = plan.block_ts(1)
    F = P.factor_table(ts, 900, TZ)
    dayno = P.local_day_number(ts - 900, TZ)
    w = P.noise_weights(900)
    acc = fleet.start_milli.copy()
    t = time.perf_counter()
    reps = 24
    for _ in range(reps):
        _numpy_block(1, fleet.meter_id, fleet.profile, fleet.daily_milli, w, F, ts, dayno, acc, fleet.register_max_milli)
    numpy_rate = reps * len(ts) * len(fleet) / (time.perf_counter() - t)
    return {"readings": total, "numba_rate": total / numba_s, "numpy_rate": numpy_rate}


# -- counting subscriber (its own process) ---------------------------------------------------------
def _subscriber(url: str, expect: int, q, ready) -> None:
    from meters.mqtt import make_client, parse_broker_url

    state = {"n": 0, "msgs": 0, "t0": None, "t1": None}

    def on_message(c, u, msg):
        p = msg.payload
        state["n"] += struct.unpack_from("<I", p, 8)[0] if p[:4] == b"MTR1" else 1
        state["msgs"] += 1
        now = time.perf_counter()
        if state["t0"] is None:
            state["t0"] = now
        state["t1"] = now

    c, kw = make_client(parse_broker_url(url), f"bench-counter-{time.time_ns()}")
    c.on_message = on_message
    c.connect(**kw)
    c.subscribe("meters/v1/+/readings", qos=1)
    c.loop(1.0)
    ready.set()
    last = time.perf_counter()
    seen = 0
    while state["n"] < expect and time.perf_counter() - last < 15:
        c.loop(0.05)
        if state["n"] != seen:
            seen, last = state["n"], time.perf_counter()
    c.disconnect()
    q.put(state)


def _counting(url, expect):
    ctx = mp.get_context("fork")
    q, ready = ctx.Queue(), ctx.Event()
    p = ctx.Process(target=_subscriber, args=(url, expect, q, ready), daemon=True)
    p.start()
    ready.wait(10)
    return p, q


def _received(p, q, t_start):
    st = q.get(timeout=120)
    p.join(5)
    el = (st["t1"] or t_start) - t_start
    return st["n"], st["msgs"], el


def bare_paho(url: str, payloads: list[bytes], window: int = 50) -> None:
    """Publish ready-made payloads from one paho client (its own network thread), QoS 1."""
    from meters.mqtt import make_client, parse_broker_url, readings_topic

    u = parse_broker_url(url)
    c, kw = make_client(u, f"bench-bare-{time.time_ns()}")
    c.max_inflight_messages_set(window)
    c.connect(**kw)
    c.loop_start()
    topic = readings_topic(u.username)
    infos = [c.publish(topic, p, qos=1) for p in payloads]
    for i in infos:
        i.wait_for_publish(60)
    c.disconnect()
    c.loop_stop()


def bench_publish(n_meters: int, days: float, json_meters: int, processes: int) -> dict:
    from meters.broker import managed_broker
    from meters.wire import encode_batch
    from simulator.run import simulate

    out = {}
    with tempfile.TemporaryDirectory() as d, managed_broker(d + "/broker") as broker:
        ingest, sender = broker.url("ingest"), broker.url("sender")
        expect = n_meters * (int(days * 96) + 1)
        # bare paho: ready-made 1000-reading binary batches
        n_batches = expect // 1000
        rng = np.random.default_rng(0)
        payloads = [encode_batch(np.arange(1000, dtype=np.int64) + 1, np.full(1000, 1_780_000_000 + i * 900),
                                 rng.integers(0, 10**9, 1000)) for i in range(min(n_batches, 2000))]
        payloads = (payloads * (n_batches // len(payloads) + 1))[:n_batches]
        p, q = _counting(ingest, n_batches * 1000)
        t = time.perf_counter()
        bare_paho(sender, payloads)
        n, msgs, el = _received(p, q, t)
        out["bare_binary"] = {"readings": n, "rate": n / el}
        # the simulator, per-concentrator senders
        # concentrators uploading hourly (4 intervals a message, the default) and daily (the 96-point
        # frozen curve in one message, as many AMI head-ends collect it)
        runs = [(1, "5", 4), (1, "3.1.1", 4), (1, "5", 96)] + ([(processes, "5", 4)] if processes > 1 else [])
        for procs, version, per_upload in runs:
            p, q = _counting(ingest, expect)
            t = time.perf_counter()
            s = simulate(n_meters, START, days, broker_dir=broker.dir, seed=1, processes=procs,
                         client_prefix=f"bench{procs}-{version}-{per_upload}", mqtt_version=version,
                         batch_intervals=per_upload)
            n, msgs, el = _received(p, q, t)
            key = f"sim_binary_p{procs}_v{version}" + ("" if per_upload == 4 else f"_upload{per_upload}")
            out[key] = {"readings": n, "expected": s["readings"], "rate": n / el,
                        "concentrators": s["concentrators"], "procs": procs, "version": version,
                        "publish_rate": s["readings_per_s"], "per_upload": per_upload}
        # JSON, one reading per message
        jexpect = json_meters * 25
        docs = [(f'{{"meter_id":{100000000001 + i % json_meters},"ts":"2026-11-01T00:15:00+08:00",'
                 f'"register":{i}.125}}').encode() for i in range(jexpect)]
        p, q = _counting(ingest, jexpect)
        t = time.perf_counter()
        bare_paho(sender, docs)
        n, msgs, el = _received(p, q, t)
        out["bare_json"] = {"messages": msgs, "rate": msgs / el}
        p, q = _counting(ingest, jexpect)
        t = time.perf_counter()
        s = simulate(json_meters, START, 1, interval="1h", broker_dir=broker.dir, seed=1, fmt="json",
                     client_prefix="benchjson")
        n, msgs, el = _received(p, q, t)
        out["sim_json"] = {"messages": msgs, "expected": s["messages"], "rate": msgs / el}
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="bench_simulator")
    ap.add_argument("--quick", action="store_true", help="small sizes (seconds)")
    ap.add_argument("--meters", type=int, default=None)
    ap.add_argument("--processes", type=int, default=2)
    a = ap.parse_args(argv)
    gen_m = a.meters or (100_000 if a.quick else 1_000_000)
    pub_m = a.meters or (20_000 if a.quick else 200_000)
    json_m = 400 if a.quick else 2000

    g = bench_generation(gen_m, 1)
    print(f"generation: {g['readings']:,} readings ({gen_m:,} meters x 1 day at 15 min) "
          f"numba {g['numba_rate'] / 1e6:.1f}M readings/s (target >= 50M/s), plain numpy "
          f"{g['numpy_rate'] / 1e6:.1f}M/s, ratio {g['numba_rate'] / g['numpy_rate']:.1f}x")
    r = bench_publish(pub_m, 1, json_m, a.processes)
    bare = r["bare_binary"]["rate"]
    print(f"publish binary QoS 1, received by a counting subscriber ({pub_m:,} meters x 1 day):")
    print(f"  bare paho, ready-made 1000-reading batches, one client: {bare / 1e6:.2f}M readings/s")
    for k, v in r.items():
        if k.startswith("sim_binary"):
            ok = "" if v["readings"] == v["expected"] else f"  (MISSING {v['expected'] - v['readings']:,})"
            upload = "hourly" if v["per_upload"] == 4 else f"{v['per_upload']} intervals"
            print(f"  simulator, {upload} uploads, {v['procs']} process(es), MQTT {v['version']}, "
                  f"{v['concentrators']:,} concentrator "
                  f"connections: {v['rate'] / 1e6:.2f}M readings/s received (target >= 5M/s), "
                  f"{v['rate'] / bare:.2f}x bare paho; publisher side {v['publish_rate'] / 1e6:.2f}M/s{ok}")
    bj, sj = r["bare_json"]["rate"], r["sim_json"]
    ok = "" if sj["messages"] == sj["expected"] else f"  (MISSING {sj['expected'] - sj['messages']:,})"
    print(f"JSON one reading per message QoS 1: bare paho {bj:,.0f} msgs/s, simulator "
          f"{sj['rate']:,.0f} msgs/s ({sj['rate'] / bj:.2f}x){ok}")


if __name__ == "__main__":
    main()
