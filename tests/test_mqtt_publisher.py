"""The lean MQTT QoS 1 publisher (meters.mqtt_publisher) against a real Mosquitto: PUBACKs in publish
order, many in flight within the broker's Receive Maximum, a broker restart mid-stream losing nothing
(the publisher alone, and the dispatcher end to end), refusals as reasons, TLS."""
from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest

from accounts.channels import add_channel
from accounts.store import open_store
from delivery import dispatcher
from delivery.retry import Policy
from meters import outbox
from meters.broker import BrokerLimits, ManagedBroker
from meters.mqtt import make_client, parse_broker_url
from meters.mqtt_publisher import Publisher, properties, read_varint, varint
from test_delivery import alert

TOPIC = "meters/v1/alerts/push"


class Subscriber:
    """The channel's push gateway (paho, its own thread), optionally with a persistent session that
    outlives a broker restart; ``got``: the payloads in arrival order."""

    def __init__(self, broker: ManagedBroker, persistent: bool = False):
        url = parse_broker_url(broker.url("alerts.push"))
        self.client, kw = make_client(url, "alerts.push", clean_start=not persistent,
                                      session_expiry=3600 if persistent else None)
        self.got: list[bytes] = []
        self.subscribed = threading.Event()
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.on_message = lambda c, u, m: self.got.append(m.payload)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(TOPIC, qos=1)
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.connect(**kw)
        self.client.loop_start()
        assert self.subscribed.wait(10)

    def wait(self, until, timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        while not until(self.got) and time.monotonic() < deadline:
            time.sleep(0.05)
        return until(self.got)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def push_broker(session_broker):
    session_broker.add_alert_users(["push"])
    return session_broker


def run(coro):
    return asyncio.run(coro)


async def connected(url, **kw) -> Publisher:
    p = Publisher(url, "meters-notify", **kw)
    p.start()
    await asyncio.wait_for(p.connected.wait(), 10)
    return p


def test_packet_encoding():
    for n in (0, 1, 127, 128, 16383, 16384, 2_097_151, 2_097_152, 268_435_455):
        b = varint(n)
        assert read_varint(b, 0) == (n, len(b)) and read_varint(b[:-1], 0) is None
    # a CONNACK's properties: Receive Maximum 10, Maximum Packet Size, a reason string, a user property
    props = bytes([0x21, 0, 10, 0x27, 0, 1, 0, 0, 0x1F, 0, 2]) + b"no" + bytes([0x26, 0, 1]) + b"k" + bytes([0, 1]) + b"v"
    assert properties(varint(len(props)) + props, 0) == ({0x21: 10, 0x27: 65536, 0x1F: b"no", 0x26: [(b"k", b"v")]},
                                                         len(props) + 1)


@pytest.mark.parametrize("version", ["", "?version=3.1.1"])
def test_pubacks_come_in_publish_order_and_every_message_arrives(push_broker, version):
    sub = Subscriber(push_broker)
    url = parse_broker_url(push_broker.url("notify") + version)
    n = 3000

    async def main():
        p = await connected(url)
        done = []
        futs = [p.publish(TOPIC, b"%d" % i) for i in range(n)]
        for i, f in enumerate(futs):
            f.add_done_callback(lambda f, i=i: done.append(i))
        results = await asyncio.gather(*futs)
        await p.close()
        return results, done, p.connects

    try:
        results, done, connects = run(main())
        assert results == [None] * n and done == list(range(n)) and connects == 1
        assert sub.wait(lambda got: len(got) >= n)
        assert sub.got == [b"%d" % i for i in range(n)]      # one connection, QoS 1: the broker keeps the order
    finally:
        sub.close()


def test_many_in_flight_stay_within_the_brokers_receive_maximum(tmp_path):
    broker = ManagedBroker(tmp_path / "b", limits=BrokerLimits(max_inflight_messages=16))
    broker.start()
    try:
        broker.add_alert_users(["push"])
        sub = Subscriber(broker)
        n = 5000

        async def main():
            p = await connected(parse_broker_url(broker.url("notify")))
            peak = 0
            futs = [p.publish(TOPIC, b"%d" % i) for i in range(n)]
            assert p.in_flight == n
            while not all(f.done() for f in futs):
                peak = max(peak, len(p._inflight))
                await asyncio.sleep(0)
            results = [f.result() for f in futs]
            await p.close()
            return results, peak, p.connects, p._window

        try:
            results, peak, connects, window = run(main())
            # beyond the broker's window Mosquitto would disconnect (Receive Maximum exceeded)
            assert window == 16 and 0 < peak <= 16 and connects == 1 and results == [None] * n
            assert sub.wait(lambda got: len(got) >= n) and sorted(sub.got) == sorted(b"%d" % i for i in range(n))
        finally:
            sub.close()
    finally:
        broker.stop()


def test_a_broker_restart_mid_stream_loses_nothing(broker):
    """Senders publish, each retrying its message until acknowledged (as the dispatcher does); the
    broker restarts while thousands are in flight; every message arrives at the gateway's persistent
    session at least once."""
    broker.add_alert_users(["push"])
    sub = Subscriber(broker, persistent=True)
    n, senders = 6000, 300
    url = parse_broker_url(broker.url("notify"))

    async def main():
        p = await connected(url, timeout_s=3.0, reconnect_s=0.2)
        queue = list(range(n))
        acked, errors, restarted = [0], [], asyncio.Event()

        async def sender():
            while queue:
                i = queue.pop()
                while (error := await p.publish(TOPIC, b"%d" % i)) is not None:
                    errors.append(error)
                    await asyncio.sleep(0.05)
                acked[0] += 1

        async def restart():
            while acked[0] < n // 3:
                await asyncio.sleep(0.01)
            await asyncio.to_thread(broker.restart)
            restarted.set()

        restarting = asyncio.create_task(restart())
        await asyncio.gather(*(sender() for _ in range(senders)))
        await restarting
        await p.close()
        return acked[0], errors, p.connects

    try:
        acked, errors, connects = run(main())
        assert acked == n and connects >= 2
        want = {b"%d" % i for i in range(n)}
        assert sub.wait(lambda got: want <= set(got), 30), len(want - set(sub.got))
    finally:
        sub.close()


def test_the_dispatcher_loses_nothing_when_the_broker_restarts(lake, broker):
    store = open_store(lake)
    add_channel(store, "push", mqtt=True)
    broker.add_alert_users(["push"])
    sub = Subscriber(broker, persistent=True)
    batch = [alert(i, f"push:device-{i}", account=f"{i:05d}") for i in range(6000)]
    outbox.enqueue(store.engine, batch)
    settings = dispatcher.Settings(timeout_s=2.0, poll_s=0.05, until_idle_s=5.0, batch=500,
                                   policy=Policy(initial_s=0.1, max_wait_s=0.3))
    d = dispatcher.Dispatcher(store.engine, settings, broker=parse_broker_url(broker.url("notify")))
    out = {}
    t = threading.Thread(target=lambda: out.update(asyncio.run(d.run())))
    t.start()
    try:
        assert sub.wait(lambda got: len(got) >= 500, 60)
        broker.restart()
        t.join(120)
        assert not t.is_alive() and out["sent"] == len(batch) and out["dead"] == 0
        assert d._mqtt.publisher.connects >= 2          # it did lose its connection mid-stream
        want = {a["alert_id"] for a in batch}
        assert sub.wait(lambda got: want <= {json.loads(m)["data"]["id"] for m in got}, 30)
        with store.engine.connect() as conn:
            assert {s for s, in conn.execute(outbox.outbox.select().with_only_columns(outbox.outbox.c.state))} == {"sent"}
    finally:
        t.join(30)
        sub.close()


def test_refusals_are_reasons_not_exceptions(push_broker):
    good = parse_broker_url(push_broker.url("notify"))
    bad = good.with_credentials("notify", "wrong")

    async def main():
        p = Publisher(bad, "meters-notify", timeout_s=0.5, reconnect_s=0.1)
        p.start()
        refused = await p.publish(TOPIC, b"x")       # waits its turn until its deadline
        await p.close()
        q = await connected(good)
        denied = await q.publish("meters/v1/sender/readings", b"x")   # the notify role publishes alerts only
        wildcard = await q.publish("meters/v1/alerts/+", b"x")
        ok = await q.publish(TOPIC, b"x")
        await q.close()
        return refused, p.connects, denied, wildcard, ok

    refused, connects, denied, wildcard, ok = run(main())
    assert connects == 0 and refused.startswith("not connected (the broker refused the connection")
    assert denied == "PUBACK not authorised" and "not a topic name" in wildcard and ok is None


def test_tls_with_the_brokers_ca(tmp_path):
    broker = ManagedBroker(tmp_path / "b")
    broker.start(tls=True)
    try:
        broker.add_alert_users(["push"])
        notify = parse_broker_url(broker.url("notify"))     # on the operators' port (plain TCP): the
        url = parse_broker_url(broker.url("sender")).with_credentials(notify.username, notify.password)  # TLS one
        assert url.tls and url.cafile

        async def main(u):
            p = Publisher(u, "meters-notify", timeout_s=1.0, reconnect_s=0.1)
            p.start()
            result = await p.publish(TOPIC, b"x")
            await p.close()
            return result, p.last_error

        assert run(main(url)) == (None, None)
        untrusted = parse_broker_url(str(url).split("?")[0])           # the system's CAs: not the broker's
        result, error = run(main(untrusted))
        assert result.startswith("not connected") and "CERTIFICATE_VERIFY_FAILED" in error
    finally:
        broker.stop()
