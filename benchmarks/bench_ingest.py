"""Ingest end to end through the managed Mosquitto, on this machine.

- binary batches, QoS 1, 1 and 2 ingest workers (separate processes), publisher in this process:
  readings/s written, fsynced and acknowledged (target >= 3M/s);
- bytes per reading on disk, arrival-order files vs after ``meters compact`` (target <= 4);
- DuckDB group-by per meter over compacted vs arrival-order files;
- the raw ceiling (Parquet write + fsync of the same readings, already decoded, in ingest's batch
  size and options), measured in turns with each end-to-end run, and end to end as a fraction of the
  ceiling measured next to it (target >= 0.6);
- JSON, one reading per message: messages/s (target >= 15k/s);
- the ingest workers' CPU µs per message (and the broker's), the load average beside every figure.

Every figure is measured ``--rounds`` times, the runs of a round interleaved (ceiling, end to end,
ceiling, …): the summary gives the median and the best over the rounds, so that one figure reflects
the code rather than another job on the machine.

``python -m benchmarks ingest [--quick] [--readings N] [--json-msgs N] [--rounds N]``
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PER_MSG = 10_000        # readings per binary batch (a concentrator: 1000 meters × 10 intervals)
METERS_PER_CONC = 1000


def fleet_payloads(n_readings: int, seed: int = 0) -> tuple[list[bytes], int]:
    """Binary batches of a fleet's 15-minute registers: one message = one concentrator × 10 intervals."""
    from meters import wire

    rng = np.random.default_rng(seed)
    slots_per_day = 96
    meters = max(METERS_PER_CONC, n_readings // (2 * slots_per_day) // METERS_PER_CONC * METERS_PER_CONC)
    slots = max(10, n_readings // meters // 10 * 10)
    t0 = (int(time.time()) - 3 * 86400) // 86400 * 86400
    ids = 110100000000 + np.arange(meters, dtype=np.int64)
    base = rng.integers(0, 10**8, meters)
    payloads = []
    for s0 in range(0, slots, 10):
        cons = rng.gamma(1.5, 80, (meters, 10)).astype(np.int64)
        regs = base[:, None] + np.cumsum(cons, 1)
        base = regs[:, -1]
        ts = t0 + 900 * (s0 + 1 + np.arange(10, dtype=np.int64))
        for c in range(0, meters, METERS_PER_CONC):
            m = np.repeat(ids[c:c + METERS_PER_CONC], 10)
            t = np.tile(ts, METERS_PER_CONC)
            r = regs[c:c + METERS_PER_CONC].ravel()
            payloads.append(wire.encode_batch(m, t, r))
    return payloads, meters * slots


def json_payloads(n: int) -> list[bytes]:
    t0 = int(time.time()) - 86400
    return [json.dumps({"meter_id": 110100000001 + i % 5000, "ts": t0 + 900 * (i // 5000),
                        "register": round(1000 + i * 0.125, 3)}).encode() for i in range(n)]


def _metric(port: int, name: str) -> float:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1).read().decode()
    except (OSError, http.client.HTTPException):
        return -1.0
    for line in text.splitlines():
        if line.startswith(f"meters_ingest_{name}"):
            return float(line.split()[-1])
    return -1.0


def _acked(ports: list[int]) -> float:
    return sum(max(0.0, _metric(p, "messages_acked_total")) for p in ports)


PUB_WINDOW = 5000     # QoS 1 PUBLISHes the publisher keeps unacknowledged (at most PUB_BYTES of them)
PUB_BYTES = 32 << 20
PUB_CHUNK = 500       # packets per socket write


def _str(x: str) -> bytes:
    b = x.encode()
    return len(b).to_bytes(2, "big") + b


def _packet(first: int, body: bytes) -> bytes:
    """An MQTT packet: the fixed header's first byte, the remaining length (variable-length integer), body."""
    n, head = len(body), bytearray([first])
    while True:
        n, d = n >> 7, n & 0x7F
        head.append(d | (0x80 if n else 0))
        if not n:
            return bytes(head) + body


def publish_packets(topic: str, payloads: list[bytes]) -> list[bytes]:
    """MQTT 3.1.1 QoS 1 PUBLISH packets of ``payloads``, packet ids 1..65535 in turn (encoded before
    the clock starts: the publisher only writes bytes, so it is not what a run measures)."""
    t = _str(topic)
    return [_packet(0x32, t + (i % 65535 + 1).to_bytes(2, "big") + p) for i, p in enumerate(payloads)]


def _publish(broker, packets: list[bytes]) -> float:
    """Publish ``packets`` (:func:`broker_packets`) at QoS 1 (MQTT 3.1.1 on a plain socket, up to ``PUB_WINDOW``
    unacknowledged) and wait for every PUBACK; returns seconds. A paho client spends about 100 µs of
    Python per message: it would measure itself, not the broker and ingest."""
    import socket
    import ssl

    from meters.mqtt import parse_broker_url

    u = parse_broker_url(broker.url("sender"))
    flags = 0x02 | (0x80 if u.username is not None else 0) | (0x40 if u.password is not None else 0)
    connect = _packet(0x10, _str("MQTT") + bytes([4, flags, 0, 0]) + _str("bench-pub")
                      + (_str(u.username) if u.username is not None else b"")
                      + (_str(u.password) if u.password is not None else b""))
    sock = socket.create_connection((u.host, u.port), timeout=600)
    if u.tls:
        sock = ssl.create_default_context(cafile=u.cafile).wrap_socket(sock, server_hostname=u.host)
    with sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(connect)
        ack = b""
        while len(ack) < 4:
            chunk = sock.recv(4 - len(ack))
            if not chunk:
                raise RuntimeError("the broker closed the publisher's connection")
            ack += chunk
        if ack[0] != 0x20 or ack[3] != 0:
            raise RuntimeError(f"the broker refused the publisher: CONNACK {ack.hex()}")
        n, sent, acked, buf = len(packets), 0, 0, b""
        window = max(1, min(PUB_WINDOW, PUB_BYTES * n // max(1, sum(map(len, packets)))))
        t0 = time.perf_counter()
        while acked < n:
            if sent < n and sent - acked < window:
                k = min(n, sent + PUB_CHUNK, acked + window)
                sock.sendall(b"".join(packets[sent:k]))
                sent = k
                if sent - acked < window and sent < n:
                    continue
            data = sock.recv(1 << 16)
            if not data:
                raise RuntimeError(f"the broker closed the publisher's connection after {acked} PUBACKs")
            buf += data
            k = len(buf) // 4
            if buf[0:4 * k:4] != b"\x40" * k:
                raise RuntimeError(f"the publisher expected PUBACKs, got {buf[:8].hex()}")
            acked += k
            buf = buf[4 * k:]
        seconds = time.perf_counter() - t0
        sock.sendall(b"\xe0\x00")  # DISCONNECT
    return seconds


def broker_packets(broker, payloads: list[bytes]) -> list[bytes]:
    """The PUBLISH packets of ``payloads`` on ``broker``'s sender topic (encoded before any clock starts)."""
    from meters.mqtt import parse_broker_url

    return publish_packets(f"meters/v1/{parse_broker_url(broker.url('sender')).username}/readings", payloads)


def tree_cpu(pid: int | None) -> float:
    """CPU seconds (user + system) used so far by process ``pid`` and its descendants, those that
    ended and were waited for included (Linux /proc; 0.0 where it cannot be read)."""
    tick, total, todo = os.sysconf("SC_CLK_TCK"), 0, [pid] if pid else []
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rpartition(")")[2].split()
            total += sum(map(int, fields[11:15]))  # utime, stime, cutime, cstime
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError, IndexError):
            continue
    return total / tick


class IngestDidNotStart(RuntimeError):
    """E.g. a metrics port taken by another process between choosing and binding it."""


def run_end_to_end(broker, lake_dir: Path, payloads: list[bytes], workers: int, prefill: bool = False) -> dict:
    """Start ``workers`` ingest processes and time until every message of ``payloads`` is written
    and acknowledged: published concurrently (publisher, broker and workers share the cores), or,
    with ``prefill``, queued in the broker first (the ingest side alone). Also the CPU seconds the
    workers and the broker used in that time (the workers' start-up excluded)."""
    from meters.broker import free_port

    base = [sys.executable, "-m", "meters", "ingest", "--broker", broker.url("ingest"), "--lake", str(lake_dir),
            "--workers", str(workers), "--json", "-q"]
    packets = broker_packets(broker, payloads)
    t_pub = None
    if prefill:  # create the sessions, then queue everything while the workers are away
        subprocess.run([*base, "--until-idle", "0.1"], cwd=ROOT, check=True, capture_output=True)
        t_pub = _publish(broker, packets)
    port = free_port()  # chosen last: an ephemeral port of the publisher may have taken a candidate
    while any(_port_busy(port + i) for i in range(1, workers)):
        port = free_port()
    ports = [port + i for i in range(workers)]
    proc = subprocess.Popen([*base, "--metrics-port", str(port), "--until-idle", "3"], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while any(_metric(p, "connects") < 1 for p in ports):
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.terminate()  # the workers are told too (they flush nothing: nothing was acknowledged)
            proc.wait(30)
            raise IngestDidNotStart(f"ingest did not start (exit {proc.returncode})")
        time.sleep(0.005)
    cpu0, bcpu0 = tree_cpu(proc.pid), tree_cpu(broker.pid())
    t0 = time.perf_counter()
    if not prefill:
        t_pub = _publish(broker, packets)
    n = len(payloads)
    while _acked(ports) < n:
        if proc.poll() is not None or time.perf_counter() - t0 > 600:
            break
        time.sleep(0.005)
    t_ack = time.perf_counter() - t0
    cpu, bcpu = tree_cpu(proc.pid) - cpu0, tree_cpu(broker.pid()) - bcpu0
    out, _ = proc.communicate(timeout=120)
    return {"seconds": t_ack, "publish_seconds": t_pub, "counters": json.loads(out), "cpu": cpu,
            "broker_cpu": bcpu, "load": os.getloadavg()[0]}


def raw_ceiling(payloads: list[bytes], lake_dir: Path, batch_rows: int = 500_000) -> float:
    """Readings/s of the raw write limit on this disk: the payloads' readings, already decoded into
    Arrow tables of ``batch_rows`` (the ingest default), written with the ingest's Parquet options and
    fsynced one file at a time, as ingest writes them. Nothing else (no broker, no decoding)."""
    import pyarrow as pa

    from ingest.batch import Batch
    from ingest.decode import decode_message
    from ingest.service import RAW_PARQUET, STATS
    from meters.lake import init_lake

    lake = init_lake(lake_dir)
    now = int(time.time())
    tables, b = [], Batch(tz=lake.tz)
    for p in payloads:
        b.add(decode_message("meters/v1/bench/readings", p, now), "meters/v1/bench/readings", "bench", now * 1000,
              None, 0.0)
        if b.rows >= batch_rows:
            tables += b.readings_by_day(lake.tz)
            b = Batch(tz=lake.tz)
    tables += b.readings_by_day(lake.tz)
    n = sum(t.num_rows for _, t in tables)
    t0 = time.perf_counter()
    for i, (day, t) in enumerate(tables):
        lake.write("readings", t, day, file_name=f"raw-{i:06d}.parquet", **RAW_PARQUET, write_statistics=STATS["readings"])
    return n / (time.perf_counter() - t0)


def _port_busy(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _dir_bytes(d: Path) -> int:
    return sum(p.stat().st_size for p in d.rglob("*.parquet"))


def duckdb_groupby(files_glob: str, repeat: int = 3) -> float:
    import duckdb

    con = duckdb.connect()
    q = (f"SELECT meter_id, max(register_milli) - min(register_milli) AS used, count(*) "
         f"FROM read_parquet('{files_glob}') GROUP BY meter_id")
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        con.execute(q).fetchall()
        best = min(best, time.perf_counter() - t)
    return best


def _spread(xs: list[float], fmt: str = "{:,.0f}", lower_is_better: bool = False) -> str:
    """``median (best B, worst W of N)`` of one figure's runs."""
    best, worst = (min(xs), max(xs)) if lower_is_better else (max(xs), min(xs))
    return f"{fmt.format(statistics.median(xs))} (best {fmt.format(best)}, worst {fmt.format(worst)} of {len(xs)})"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="bench_ingest")
    ap.add_argument("--quick", action="store_true", help="small sizes (about a minute)")
    ap.add_argument("--readings", type=int, default=None, help="binary readings per run (default 10M, quick 2M)")
    ap.add_argument("--json-msgs", type=int, default=None, help="JSON messages per run (default 100k, quick 20k)")
    ap.add_argument("--rounds", type=int, default=None, help="rounds of interleaved runs (default 5, quick 3)")
    args = ap.parse_args(argv)
    n_readings = args.readings or (2_000_000 if args.quick else 10_000_000)
    n_json = args.json_msgs or (20_000 if args.quick else 100_000)
    rounds = args.rounds or (3 if args.quick else 5)
    if min(n_readings, n_json, rounds) < 1:
        raise SystemExit("--readings, --json-msgs and --rounds must be >= 1")

    from ingest.compact import compact
    from meters.broker import ManagedBroker
    from meters.lake import init_lake

    tmp = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    brokers = []

    def fresh_broker():
        # a new broker per run: persistent sessions of an earlier run in the same share group would
        # otherwise receive (and hold) their share of the messages
        if brokers:
            brokers[-1].stop()
            shutil.rmtree(brokers[-1].dir, ignore_errors=True)
        brokers.append(ManagedBroker(tmp / f"broker{len(brokers)}"))
        brokers[-1].start()
        return brokers[-1]

    def fresh_lake(name: str):
        shutil.rmtree(tmp / name, ignore_errors=True)
        return init_lake(tmp / name)

    try:
        t_start = time.perf_counter()
        payloads, n = fleet_payloads(n_readings)
        jp = json_payloads(n_json)
        print(f"fleet: {n:,} readings in {len(payloads):,} binary batches of {PER_MSG:,} "
              f"({len(payloads[0]) / 1e3:.0f} kB each); {n_json:,} JSON messages of one reading; QoS 1, "
              f"managed Mosquitto on 127.0.0.1; {rounds} rounds, each run interleaved with the others "
              f"(load {os.getloadavg()[0]:.1f})")
        configs = [("binary", 1, False), ("binary", 1, True), ("binary", 2, False), ("binary", 2, True),
                   ("json", 1, False), ("json", 1, True)]
        res = {c: [] for c in configs}   # per round: dict(rate, ratio, cpu_us, broker_us, load, ceiling)
        for rnd in range(1, rounds + 1):
            for kind, workers, prefill in configs:
                ceiling = None
                if kind == "binary":  # the ceiling right before its end-to-end run, in turns
                    ceiling = raw_ceiling(payloads, fresh_lake("raw").root)
                msgs = payloads if kind == "binary" else jp
                name = f"lake-{kind}{workers}{'q' if prefill else ''}"
                for attempt in range(3):  # a new broker and lake for each attempt
                    try:
                        r = run_end_to_end(fresh_broker(), fresh_lake(name).root, msgs, workers, prefill)
                        break
                    except IngestDidNotStart as e:
                        if attempt == 2:
                            raise
                        print(f"  ({e}; run again)", flush=True)
                c = r["counters"]
                units = n if kind == "binary" else n_json
                ok = c["written"] == units and c["acked"] == len(msgs)
                row = {"rate": units / r["seconds"], "cpu_us": r["cpu"] / len(msgs) * 1e6,
                       "broker_us": r["broker_cpu"] / len(msgs) * 1e6, "load": r["load"], "ok": ok,
                       "ceiling": ceiling, "ratio": ceiling and units / r["seconds"] / ceiling,
                       "pub": units / r["publish_seconds"]}
                res[kind, workers, prefill].append(row)
                how = "queued first" if prefill else "publisher running"
                fig = (f"{row['rate']:,.0f} readings/s = {row['ratio']:.2f} of the ceiling {ceiling:,.0f}/s"
                       if kind == "binary" else f"{row['rate']:,.0f} msgs/s")
                print(f"  round {rnd}: {kind}, {workers} worker(s), {how}: {fig}; {r['seconds']:.2f} s; ingest CPU "
                      f"{row['cpu_us']:,.1f} µs/msg, broker {row['broker_us']:,.1f} µs/msg; complete: {ok}; "
                      f"load {row['load']:.1f}", flush=True)

        print(f"summary over {rounds} rounds (median, best and worst; the load average at each run: "
              f"{min(r['load'] for v in res.values() for r in v):.1f}-"
              f"{max(r['load'] for v in res.values() for r in v):.1f}):")
        ceilings = [r["ceiling"] for k, v in res.items() if k[0] == "binary" for r in v]
        print(f"raw ceiling: Parquet write + fsync of the decoded readings alone {_spread(ceilings)} readings/s")
        for (kind, workers, prefill), rows in res.items():
            col = lambda k: [r[k] for r in rows]  # noqa: E731
            how = ("queued in the broker first, ingest side alone" if prefill else
                   f"publisher running concurrently, it alone {statistics.median(col('pub')):,.0f}/s")
            per_reading = (f" = {statistics.median(col('cpu_us')) / PER_MSG * 1e3:,.0f} ns/reading"
                           if kind == "binary" else "")
            cpu = (f"ingest CPU {_spread(col('cpu_us'), '{:,.1f}', True)} µs/msg{per_reading}, broker "
                   f"{statistics.median(col('broker_us')):,.1f} µs/msg (medians)")
            if kind == "binary":
                print(f"binary, {workers} worker(s): {_spread(col('rate'))} readings/s written+fsynced+acked "
                      f"= {_spread(col('ratio'), '{:.2f}')} of the ceiling measured next to it (target >= 0.6); "
                      f"{how}; {cpu}; complete: {all(col('ok'))}")
            else:
                print(f"JSON one reading per message: {_spread(col('rate'))} msgs/s written+acked "
                      f"(target >= 15,000/s); {how}; {cpu}; complete: {all(col('ok'))}")
        med = {k: statistics.median([r["rate"] for r in v]) for k, v in res.items()}
        print(f"2 workers vs 1: x{med['binary', 2, False] / med['binary', 1, False]:.2f} end to end, "
              f"x{med['binary', 2, True] / med['binary', 1, True]:.2f} ingest side alone (2 cores shared by "
              f"publisher, broker and workers); binary batches carry x{med['binary', 1, True] / med['json', 1, True]:,.0f} "
              f"more readings/s than JSON messages")

        lake = init_lake(tmp / "lake-binary1")
        arrival = tmp / "arrival"
        shutil.copytree(lake.root / "readings", arrival)
        raw_bytes = _dir_bytes(arrival)
        t = time.perf_counter()
        cres = compact(lake)
        t_compact = time.perf_counter() - t
        rows = sum(x.rows_out for x in cres)
        comp_bytes = _dir_bytes(lake.root / "readings")
        print(f"on disk: arrival-order files {raw_bytes / n:.2f} bytes/reading; after compaction "
              f"{comp_bytes / rows:.2f} bytes/reading (target <= 4); wire format 20; "
              f"compaction {rows / t_compact:,.0f} readings/s (load {os.getloadavg()[0]:.1f})")
        t_arr = duckdb_groupby(str(arrival / "*" / "*.parquet"))
        t_cmp = duckdb_groupby(str(lake.root / "readings" / "*" / "*.parquet"))
        print(f"DuckDB group-by meter over {rows:,} readings: compacted {t_cmp * 1e3:.0f} ms, "
              f"arrival order {t_arr * 1e3:.0f} ms (compacted x{t_arr / t_cmp:.2f} faster; "
              f"load {os.getloadavg()[0]:.1f})")
        print(f"bench_ingest took {time.perf_counter() - t_start:.0f} s")
    finally:
        for b in brokers:
            b.stop()
        shutil.rmtree(tmp, ignore_errors=True)

if __name__ == "__main__":
    main(sys.argv[1:])
