"""Alert delivery: deliveries per second from the outbox to a webhook receiver on loopback and to the
MQTT broker, next to each receiver's own ceiling measured in the same run.

- webhook: a real HTTP server (uvicorn, its own process) that verifies every Standard Webhooks
  signature and keeps ids; ``meters notify``'s dispatcher from the account store's outbox (SQLite),
  then the ceiling: the same signed requests posted straight from httpx with the same concurrency;
- MQTT: the managed Mosquitto, a gateway subscribed to the channel's topic; the dispatcher, then the
  ceiling: the same payloads published at QoS 1 straight from paho.

Targets: >= 5,000 deliveries/s; the alerts of a 1,000,000-meter night (about 70,000 with 1 % loss
and the residents' share) delivered within 30 s of the run's commit.

``python -m benchmarks notify [--quick] [--alerts N] [--concurrency C]``
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

SECRET_ENV = "METERS_BENCH_WEBHOOK_SECRET"


# -- the receiver (runs under uvicorn in its own process) --------------------------------------------------
_seen: set[str] = set()
_bad = 0


async def receiver_app(scope, receive, send):
    """ASGI: POST verifies and records an alert; GET answers {"ids": n, "bad": n}."""
    global _bad
    if scope["type"] != "http":
        return
    body = b""
    while True:
        m = await receive()
        body += m.get("body", b"")
        if not m.get("more_body"):
            break
    if scope["method"] == "POST":
        from meters import webhooks
        from meters.errors import MetersError

        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        try:
            _seen.add(webhooks.verify(os.environ[SECRET_ENV], headers, body, time.time()))
            status, out = 200, b""
        except MetersError:
            _bad += 1
            status, out = 401, b""
    else:
        status, out = 200, json.dumps({"ids": len(_seen), "bad": _bad}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-length", str(len(out)).encode())]})
    await send({"type": "http.response.body", "body": out})


def _start_receiver(port: int, secret: str) -> subprocess.Popen:
    import httpx

    p = subprocess.Popen([sys.executable, "-m", "uvicorn", "benchmarks.bench_notify:receiver_app", "--port", str(port),
                          "--log-level", "warning", "--no-access-log"], env={**os.environ, SECRET_ENV: secret},
                         cwd=Path(__file__).resolve().parents[1])
    for _ in range(200):
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
            return p
        except httpx.HTTPError:
            time.sleep(0.05)
    p.kill()
    raise RuntimeError("the receiver did not start")


def _alerts(n: int, channel: str) -> list[dict]:
    from meters.outbox import alert_id

    day = dt.date(2026, 11, 1)
    data = json.dumps({"account_id": "x", "day": day.isoformat(), "currency": "CNY", "utility": "electricity",
                       "amount": 10000, "balance": 10031})
    return [{"alert_id": alert_id(f"{i:07d}", day, "auto_topup", f"{channel}:{i}"), "account_id": f"{i:07d}",
             "day": day, "kind": "auto_topup", "recipient": f"{channel}:{i}", "language": "zh-CN",
             "data": data.replace('"x"', f'"{i:07d}"')} for i in range(n)]


def _dispatch(engine, n: int, concurrency: int, broker=None) -> tuple[float, dict]:
    from delivery import dispatcher

    t0 = time.perf_counter()
    totals = dispatcher.run(engine, dispatcher.Settings(concurrency=concurrency, batch=max(2000, concurrency * 4),
                                                        poll_s=0.05, until_idle_s=1.0), broker=broker)
    return time.perf_counter() - t0 - 1.0, totals


async def _http_ceiling(url: str, secret: str, n: int, concurrency: int) -> float:
    import httpx

    from meters import webhooks

    bodies = [json.dumps({"type": "alert.auto_topup", "data": {"id": f"c{i}"}}).encode() for i in range(n)]
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        async def one(i):
            async with gate:
                h = webhooks.headers(secret, f"c{i}", int(time.time()), bodies[i])
                r = await client.post(url, content=bodies[i], headers=h)
                assert r.status_code == 200

        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        return time.perf_counter() - t0


def _mqtt_ceiling(url, n: int) -> float:
    from meters.mqtt import make_client

    client, kw = make_client(url, "meters-bench-ceiling")
    acked = threading.Semaphore(0)
    client.on_publish = lambda *a: acked.release()
    client.max_inflight_messages_set(1000)
    client.connect(**kw)
    client.loop_start()
    body = json.dumps({"type": "alert.auto_topup", "data": {"text": "电表账户余额不足，已自动缴费100元"}}).encode()
    time.sleep(0.5)
    t0 = time.perf_counter()
    for _ in range(n):
        client.publish("meters/v1/alerts/push", body, qos=1)
    for _ in range(n):
        acked.acquire()
    dt_ = time.perf_counter() - t0
    client.loop_stop()
    client.disconnect()
    return dt_


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks notify")
    ap.add_argument("--quick", action="store_true", help="1,000 alerts per target")
    ap.add_argument("--alerts", type=int, default=None, help="alerts per target (default 50,000)")
    ap.add_argument("--concurrency", type=int, default=256)
    args = ap.parse_args(argv)
    n = args.alerts or (1_000 if args.quick else 50_000)

    from accounts.channels import add_channel
    from accounts.store import open_store
    from meters import outbox, webhooks
    from meters.broker import ManagedBroker, free_port
    from meters.lake import init_lake
    from meters.mqtt import parse_broker_url

    with tempfile.TemporaryDirectory(prefix="bench-notify-") as tmp:
        lake = init_lake(Path(tmp) / "lake", "Asia/Shanghai")
        store = open_store(lake)
        secret, port = webhooks.new_secret(), free_port()
        receiver = _start_receiver(port, secret)
        try:
            url = f"http://127.0.0.1:{port}/alerts"
            add_channel(store, "hook", webhook=url, secret=secret)
            t0 = time.perf_counter()
            outbox.enqueue(store.engine, _alerts(n, "hook"))
            t_queue = time.perf_counter() - t0
            t_send, totals = _dispatch(store.engine, n, args.concurrency)
            import httpx

            got = httpx.get(f"http://127.0.0.1:{port}/").json()
            assert totals["sent"] == n and got["ids"] == n and got["bad"] == 0, (totals, got)
            t_ceiling = asyncio.run(_http_ceiling(url, secret, n, args.concurrency))
            print(f"webhook: {n} alerts queued in {t_queue:.2f} s ({n / t_queue:,.0f}/s); delivered in {t_send:.2f} s "
                  f"= {n / t_send:,.0f} deliveries/s (receiver's ceiling, plain signed POSTs: {n / t_ceiling:,.0f}/s); "
                  f"target >= 5,000/s", flush=True)
        finally:
            receiver.terminate()
            receiver.wait()

        broker = ManagedBroker(Path(tmp) / "broker")
        broker.start()
        try:
            add_channel(store, "push", mqtt=True)
            broker.add_alert_users(["push"])
            gw = _Gateway(parse_broker_url(broker.url("alerts.push")))
            outbox.enqueue(store.engine, _alerts(n, "push"))
            t_send, totals = _dispatch(store.engine, n, args.concurrency, parse_broker_url(broker.url("notify")))
            gw.wait(n)
            assert totals["sent"] == n, totals
            t_ceiling = _mqtt_ceiling(parse_broker_url(broker.url("notify")), n)
            gw.close()
            print(f"mqtt: delivered in {t_send:.2f} s = {n / t_send:,.0f} deliveries/s (QoS 1 publishes straight from "
                  f"paho: {n / t_ceiling:,.0f}/s)", flush=True)
        finally:
            broker.stop()
        store.close()


class _Gateway:
    """The channel's push gateway: counts what arrives on meters/v1/alerts/push."""

    def __init__(self, url):
        from meters.mqtt import make_client

        self.n, self.cond = 0, threading.Condition()
        self.client, kw = make_client(url, "alerts.push")
        ready = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe("meters/v1/alerts/push", qos=1)
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.on_message = self._on_message
        self.client.connect(**kw)
        self.client.loop_start()
        ready.wait(10)

    def _on_message(self, c, u, m):
        with self.cond:
            self.n += 1
            self.cond.notify_all()

    def wait(self, n: int, timeout: float = 60) -> None:
        with self.cond:
            self.cond.wait_for(lambda: self.n >= n, timeout)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
