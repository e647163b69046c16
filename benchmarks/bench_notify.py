"""Alert delivery: deliveries per second from the outbox to a webhook receiver on loopback and to the
MQTT broker, each next to the receiver's own ceiling measured in the same run, and the time from a
1,000,000-meter night's commit to its last alert delivered.

- webhook: :mod:`benchmarks.webhook_receiver` (an asyncio HTTP/1.1 keep-alive server in its own
  process that verifies every Standard Webhooks signature and keeps each id once); its ceiling: the
  same number of pre-signed POSTs from a bare asyncio client on as many connections as the
  dispatcher keeps in flight; then ``meters notify``'s dispatcher from the account store's outbox
  (SQLite), every id arriving exactly once;
- MQTT: the managed Mosquitto and a push gateway subscribed to the channel's topic; its ceiling: the
  same payloads published at QoS 1 straight from the dispatcher's MQTT client
  (:class:`meters.mqtt_publisher.Publisher`) with as many in flight; then the dispatcher;
- the night: a synthetic night of ``--meters`` meters written to the lake's ``alerts`` table with
  the kind counts of :data:`NIGHT` (per meter: 62 % with a data gap, as at 1 % reading loss; 1.5
  contacts per alerted account, two thirds on a webhook channel, one third on MQTT) while
  ``meters notify`` already runs in a process of its own (as beside the nightly billing); then the
  clock starts (the night's commit), the night's alerts are queued exactly as ``meters bill`` queues
  them (:func:`meters.outbox.enqueue_day`: the ``data_gap`` rows folded into one operator digest)
  and the clock stops when the receivers hold the last one.

Targets: >= 5,000 deliveries/s to each; a 1,000,000-meter night within 30 s of its commit. Each
figure has the load average beside it (a shared machine's wall-clock figures are floors).

``python -m benchmarks notify [--quick] [--alerts N] [--meters M] [--concurrency C] [--only webhook|mqtt|night]``
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.webhook_receiver import SECRET_ENV, ceiling

DAY = dt.date(2026, 11, 1)
# alerts per meter of a night (rates), and where they go
NIGHT = {"data_gap": 0.62, "auto_topup": 0.02, "low_balance": 0.015, "bill_issued": 0.0133, "arrears": 0.005,
         "disconnect": 0.0005, "reconnect": 0.0005, "disconnect_held": 0.0001}
OPERATOR_KINDS = ("data_gap", "disconnect_held")
PARTS = ("webhook", "mqtt", "night")


def _load() -> str:
    return "load %.1f" % os.getloadavg()[0]


def _start_receiver(port: int, secret: str, *gateway: str) -> subprocess.Popen:
    """The webhook receiver (or, with ``gateway`` = (broker URL, topic), a push gateway) in a process
    of its own."""
    p = subprocess.Popen([sys.executable, "-m", "benchmarks.webhook_receiver", str(port), *gateway],
                         env={**os.environ, SECRET_ENV: secret}, cwd=Path(__file__).resolve().parents[1])
    for _ in range(200):
        try:
            if _received(port)["subscribed"] or not gateway:
                return p
        except OSError:
            pass
        time.sleep(0.05)
    p.kill()
    raise RuntimeError("the receiver did not start")


def _received(port: int) -> dict:
    """The receiver's counts (stdlib http.client: next to nothing in the dispatcher's process)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("GET", "/")
        return json.loads(c.getresponse().read())
    finally:
        c.close()


def _wait_messages(port: int, n: int, timeout: float = 60) -> int:
    """Wait until the gateway on ``port`` counted ``n`` messages; the count."""
    t0 = time.perf_counter()
    while (got := _received(port)["messages"]) < n and time.perf_counter() - t0 < timeout:
        time.sleep(0.02)
    return got


def _data(i: int, kind: str) -> str:
    return json.dumps({"account_id": f"{i:07d}", "day": DAY.isoformat(), "currency": "CNY", "utility": "electricity",
                       "amount": 10000, "balance": 10031 + i % 5000, "threshold": 2000, "level": 1, "meter_id": i,
                       "since": "2026-10-20", "start": "2026-10-01", "end": "2026-10-31", "due": "2026-11-15",
                       "partial": False, "estimated": 3, "intervals": 96, "reasons": {"gap": 3}},
                      sort_keys=True, separators=(",", ":"))


def _alerts(n: int, channel: str, offset: int = 0) -> list[dict]:
    from meters.outbox import alert_id

    return [{"alert_id": alert_id(f"{i:07d}", DAY, "auto_topup", f"{channel}:{i}"), "account_id": f"{i:07d}",
             "day": DAY, "kind": "auto_topup", "recipient": f"{channel}:{i}", "language": "zh-CN",
             "data": _data(i, "auto_topup")} for i in range(offset, offset + n)]


def night_table(meters: int):
    """A synthetic night's ``alerts`` table for ``meters`` meters (kind counts :data:`NIGHT`) and the
    deliveries it makes: (table, {channel: count})."""
    import pyarrow as pa

    from meters.outbox import alert_id
    from meters.schemas import ALERTS

    cols = {k: [] for k in ("account_id", "kind", "recipient", "message", "alert_id", "language", "data")}
    expect = {"wechat": 0, "push": 0, "operator": 0}
    stride = 0
    for kind, rate in NIGHT.items():
        n = round(meters * rate)
        for j in range(n):
            i = (stride + j * 7919) % meters      # spread over the meters
            if kind in OPERATOR_KINDS:
                to = ["operator"]
            else:
                to = [f"wechat:o6_{i:07d}"] if i % 2 else [f"wechat:o6_{i:07d}", f"push:+86138{i:08d}"]
            for r in to:
                a = f"{i:07d}"
                cols["account_id"].append(a); cols["kind"].append(kind); cols["recipient"].append(r)
                cols["message"].append(kind); cols["alert_id"].append(alert_id(a, DAY, kind, r))
                cols["language"].append("zh-CN" if i % 10 else "en"); cols["data"].append(_data(i, kind))
                if kind not in ("data_gap",):
                    expect["operator" if r == "operator" else r.split(":")[0]] += 1
        stride += 104729
    expect["operator"] += 1 if round(meters * NIGHT["data_gap"]) else 0      # the data_gap digest
    ts = pa.array([int(dt.datetime(2026, 11, 1, 16, tzinfo=dt.timezone.utc).timestamp() * 1000)]
                  * len(cols["kind"]), pa.int64()).cast(ALERTS.field("ts").type)
    return pa.table({"ts": ts, **cols}, schema=ALERTS), expect


class _Notify:
    """``meters notify`` in a process of its own (as it runs beside the nightly billing) until
    :meth:`stop` (SIGTERM): (its totals, its CPU seconds)."""

    def __init__(self, lake_root: Path, broker: str, concurrency: int, log: Path):
        self.log = log
        self.p = subprocess.Popen([sys.executable, "-m", "meters", "notify", "--lake", str(lake_root), "--broker",
                                   broker, "--concurrency", str(concurrency), "--json"],
                                  stdout=subprocess.PIPE, stderr=log.open("w"), cwd=Path(__file__).resolve().parents[1])
        for _ in range(600):
            if "dispatching alerts" in log.read_text() or self.p.poll() is not None:
                break
            time.sleep(0.05)
        if self.p.poll() is not None:
            raise RuntimeError(f"meters notify did not start: {log.read_text()[-500:]}")

    def stop(self) -> tuple[dict, float]:
        self.p.send_signal(signal.SIGTERM)
        out = self.p.stdout.read()
        _, status, usage = os.wait4(self.p.pid, 0)
        self.p.returncode = os.waitstatus_to_exitcode(status)
        if self.p.returncode != 0:
            raise RuntimeError(f"meters notify failed: {self.log.read_text()[-500:]}")
        return json.loads(out), usage.ru_utime + usage.ru_stime


def _run(coro):
    from delivery.dispatcher import loop_factory

    with asyncio.Runner(loop_factory=loop_factory()) as r:
        return r.run(coro)


def _dispatch(engine, concurrency: int, broker=None) -> tuple[float, float, dict]:
    """(wall s, CPU s of this process, totals) of a dispatcher run until the outbox is idle."""
    from delivery import dispatcher

    t0, c0 = time.perf_counter(), time.process_time()
    totals = dispatcher.run(engine, dispatcher.Settings(concurrency=concurrency, poll_s=0.05, until_idle_s=1.0),
                            broker=broker)
    return time.perf_counter() - t0 - 1.0, time.process_time() - c0, totals


async def _mqtt_ceiling(url, n: int, body: bytes, in_flight: int) -> float:
    """Seconds to publish ``n`` messages at QoS 1 straight from :class:`meters.mqtt_publisher.Publisher`
    (the dispatcher's client, without the dispatcher), ``in_flight`` at a time, until the last PUBACK."""
    from meters.mqtt_publisher import Publisher

    p = Publisher(url, "meters-bench-ceiling")
    p.start()
    await asyncio.wait_for(p.connected.wait(), 30)
    t0 = time.perf_counter()
    sent, errors = 0, []

    async def one_at_a_time():
        nonlocal sent
        while sent < n:
            sent += 1
            if (error := await p.publish("meters/v1/alerts/push", body)) is not None:
                errors.append(error)

    await asyncio.gather(*(one_at_a_time() for _ in range(in_flight)))
    t = time.perf_counter() - t0
    await p.close()
    assert not errors, errors[:3]
    return t


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks notify")
    ap.add_argument("--quick", action="store_true", help="2,000 alerts per target, a 20,000-meter night")
    ap.add_argument("--alerts", type=int, default=None, help="alerts per target (default 100,000)")
    ap.add_argument("--meters", type=int, default=None, help="meters of the night (default 1,000,000)")
    ap.add_argument("--concurrency", type=int, default=512)
    ap.add_argument("--only", choices=PARTS, action="append",
                    help="run only this part (repeatable; default: all of " + ", ".join(PARTS) + ")")
    args = ap.parse_args(argv)
    parts = set(args.only or PARTS)
    n = args.alerts or (2_000 if args.quick else 100_000)
    meters = args.meters or (20_000 if args.quick else 1_000_000)

    from accounts.channels import add_channel
    from accounts.store import open_store
    from delivery.payload import payload
    from meters import outbox, webhooks
    from meters.broker import ManagedBroker, free_port
    from meters.lake import init_lake
    from meters.mqtt import parse_broker_url

    with tempfile.TemporaryDirectory(prefix="bench-notify-") as tmp:
        lake = init_lake(Path(tmp) / "lake", "Asia/Shanghai")
        store = open_store(lake)
        secret, port = webhooks.new_secret(), free_port()
        receiver, gateway = _start_receiver(port, secret), None
        broker = ManagedBroker(Path(tmp) / "broker")
        broker.start()
        try:
            url = f"http://127.0.0.1:{port}/alerts"
            add_channel(store, "hook", webhook=url, secret=secret)
            add_channel(store, "wechat", webhook=url, secret=secret)
            add_channel(store, "operator", "operator", webhook=url, secret=secret)
            add_channel(store, "push", mqtt=True)
            broker.add_alert_users(["push"])
            notify_url = parse_broker_url(broker.url("notify"))
            sample = {**_alerts(1, "hook")[0], "channel": "hook", "corrects": None,
                      "created_at": dt.datetime.now(dt.timezone.utc)}
            body = payload(sample)

            # -- webhook
            if "webhook" in parts:
                t_ceiling = _run(ceiling("127.0.0.1", port, secret, n, args.concurrency, lambda i: body))
                print(f"webhook receiver's ceiling (bare asyncio client, {args.concurrency} keep-alive connections): "
                      f"{n / t_ceiling:,.0f} POSTs/s ({_load()})", flush=True)
                t0 = time.perf_counter()
                outbox.enqueue(store.engine, _alerts(n, "hook"))
                t_queue = time.perf_counter() - t0
                print(f"outbox: {n:,} alerts queued in {t_queue:.2f} s = {n / t_queue:,.0f}/s ({_load()})", flush=True)
                before = _received(port)
                t_send, cpu, totals = _dispatch(store.engine, args.concurrency)
                got = _received(port)
                assert totals["sent"] == n and got["ids"] - before["ids"] == n and got["bad"] == 0, (totals, got)
                print(f"webhook: {n:,} delivered in {t_send:.2f} s = {n / t_send:,.0f} deliveries/s, "
                      f"{cpu / n * 1e6:.0f} µs CPU each in the dispatcher ({n / t_send / (n / t_ceiling):.0%} of the "
                      f"receiver's ceiling; target >= 5,000/s) ({_load()})", flush=True)

            # -- MQTT
            gport = free_port()
            gateway = _start_receiver(gport, secret, broker.url("alerts.push"), "meters/v1/alerts/push")
            if "mqtt" in parts:
                t_ceiling = _run(_mqtt_ceiling(notify_url, n, body, args.concurrency))
                _wait_messages(gport, n)
                print(f"mqtt broker's ceiling (QoS 1 publishes straight from the dispatcher's MQTT client, "
                      f"{args.concurrency} in flight): "
                      f"{n / t_ceiling:,.0f}/s ({_load()})",
                      flush=True)
                outbox.enqueue(store.engine, _alerts(n, "push", offset=n))
                t_send, cpu, totals = _dispatch(store.engine, args.concurrency, notify_url)
                got = _wait_messages(gport, 2 * n)
                assert totals["sent"] == n and got == 2 * n, (totals, got)
                print(f"mqtt: {n:,} delivered in {t_send:.2f} s = {n / t_send:,.0f} deliveries/s, {cpu / n * 1e6:.0f} µs "
                      f"CPU each ({n / t_send / (n / t_ceiling):.0%} of the broker's ceiling; target >= 5,000/s) "
                      f"({_load()})", flush=True)

            # -- a night
            if "night" in parts:
                t0 = time.perf_counter()
                table, expect = night_table(meters)
                lake.write("alerts", table, DAY.isoformat(), file_name="billing.parquet")
                print(f"night: {meters:,} meters, {table.num_rows:,} alert rows written to the lake in "
                      f"{time.perf_counter() - t0:.1f} s; deliveries expected {expect}", flush=True)
                web0, mq0 = _received(port)["ids"], _received(gport)["messages"]
                running = _Notify(lake.root, str(notify_url), args.concurrency, Path(tmp) / "notify.log")
                c0 = time.process_time()
                t0 = time.perf_counter()                          # the night's commit
                queued = outbox.enqueue_day(lake, DAY)
                t_queued = time.perf_counter() - t0
                web_want, mq_want = expect["wechat"] + expect["operator"], expect["push"]
                while True:
                    web, mq = _received(port)["ids"] - web0, _received(gport)["messages"] - mq0
                    if web >= web_want and mq >= mq_want:
                        break
                    if time.perf_counter() - t0 > 600:
                        raise RuntimeError(f"the night was not delivered in 10 minutes: {web}/{web_want} webhook, "
                                           f"{mq}/{mq_want} MQTT")
                    time.sleep(0.02)
                t_night = time.perf_counter() - t0
                cpu = time.process_time() - c0
                totals, cpu_notify = running.stop()
                print(f"night: queued {queued['queued']:,} deliveries in {t_queued:.1f} s (the "
                      f"{round(meters * NIGHT['data_gap']):,} data_gap rows folded into one digest); the last delivered {t_night:.1f} s after the commit "
                      f"({web:,} webhook, {mq:,} MQTT; CPU: {cpu_notify:.1f} s in meters notify, {cpu:.1f} s queuing; "
                      f"target <= 30 s) ({_load()})",
                      flush=True)
                assert web == web_want and mq == mq_want and totals["dead"] == 0, (web, mq, totals)
        finally:
            for p in (receiver, gateway):
                if p is not None:
                    p.terminate()
                    p.wait()
            broker.stop()
        store.close()
