"""A fast webhook receiver for the delivery benchmark, and the bare client that measures its ceiling.

The receiver is a minimal HTTP/1.1 keep-alive server on asyncio (uvloop when installed): it reads
each POST whole, verifies its Standard Webhooks signature (:func:`meters.webhooks.verify`), keeps
its id once (a set: duplicates counted, not kept twice) and answers ``200`` (``401`` for a bad
signature); ``GET`` answers ``{"ids", "duplicates", "bad", "requests", "messages"}``. It runs in its
own process (``python -m benchmarks.webhook_receiver PORT`` with the secret in
``$METERS_BENCH_WEBHOOK_SECRET``), so that it has a core of its own when one is free.

``python -m benchmarks.webhook_receiver PORT BROKER_URL TOPIC`` is an MQTT channel's push gateway
instead: subscribed at QoS 1 to ``TOPIC`` (paho on the event loop), it counts the ``messages``
that arrive, and answers the same ``GET``.

:func:`ceiling` posts pre-signed requests straight from raw asyncio streams on ``connections``
keep-alive connections: what the receiver takes when the sender costs next to nothing.
"""
from __future__ import annotations

import asyncio
import json
import os
import sys
import time

from meters import webhooks
from meters.errors import MetersError

SECRET_ENV = "METERS_BENCH_WEBHOOK_SECRET"
OK = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
BAD = b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n"


class Counts:
    def __init__(self, secret: str):
        self.secret = secret
        self.ids: set[str] = set()
        self.duplicates = self.bad = self.requests = self.messages = 0
        self.subscribed = False

    def post(self, headers: dict, body: bytes) -> bytes:
        self.requests += 1
        try:
            msg_id = webhooks.verify(self.secret, headers, body, time.time())
        except MetersError:
            self.bad += 1
            return BAD
        if msg_id in self.ids:
            self.duplicates += 1
        else:
            self.ids.add(msg_id)
        return OK

    def as_json(self) -> bytes:
        return json.dumps({"ids": len(self.ids), "duplicates": self.duplicates, "bad": self.bad,
                           "requests": self.requests, "messages": self.messages,
                           "subscribed": self.subscribed}).encode()


class _Http(asyncio.Protocol):
    """One keep-alive connection: requests parsed from the buffer as they complete."""

    def __init__(self, counts: Counts):
        self.counts, self.buf = counts, bytearray()

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        out = []
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                break
            lines = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
            headers = {}
            for line in lines[1:]:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
            n = int(headers.get("content-length", 0))
            if len(self.buf) < end + 4 + n:
                break
            body = bytes(self.buf[end + 4:end + 4 + n])
            del self.buf[:end + 4 + n]
            if lines[0].startswith("POST"):
                out.append(self.counts.post(headers, body))
            else:
                s = self.counts.as_json()
                out.append(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                           % (len(s), s))
        if out:
            self.transport.write(b"".join(out))


async def serve(port: int, secret: str, broker: str | None = None, topic: str | None = None) -> None:
    counts = Counts(secret)
    loop = asyncio.get_running_loop()
    if broker:
        _subscribe(loop, broker, topic, counts)
    server = await loop.create_server(lambda: _Http(counts), "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


def _subscribe(loop, broker: str, topic: str, counts: Counts) -> None:
    """Count the messages arriving on ``topic`` (QoS 1), paho driven by ``loop``."""
    from meters.mqtt import make_client, parse_broker_url

    client, kw = make_client(parse_broker_url(broker), "bench-gateway")
    client.on_connect = lambda c, u, f, rc, p=None: c.subscribe(topic, qos=1)
    client.on_subscribe = lambda *a: setattr(counts, "subscribed", True)
    client.on_message = lambda c, u, m: setattr(counts, "messages", counts.messages + 1)
    client.on_socket_open = lambda c, u, s: loop.add_reader(s, c.loop_read)
    client.on_socket_close = lambda c, u, s: loop.remove_reader(s)
    client.on_socket_register_write = lambda c, u, s: loop.add_writer(s, c.loop_write)
    client.on_socket_unregister_write = lambda c, u, s: loop.remove_writer(s)
    client.connect(**kw)

    async def misc():
        while True:
            await asyncio.sleep(1)
            client.loop_misc()

    counts.subscriber = (client, loop.create_task(misc()))


async def ceiling(host: str, port: int, secret: str, n: int, connections: int, body_of) -> float:
    """Seconds to post ``n`` signed requests (bodies ``body_of(i)``) over ``connections``
    keep-alive connections, one request at a time on each."""
    now = int(time.time())
    reqs = []
    for i in range(n):
        body, msg_id = body_of(i), f"ceiling_{i}"
        h = webhooks.headers(secret, msg_id, now, body)
        reqs.append((f"POST /alerts HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n"
                     f"webhook-id: {h['webhook-id']}\r\nwebhook-timestamp: {h['webhook-timestamp']}\r\n"
                     f"webhook-signature: {h['webhook-signature']}\r\ncontent-length: {len(body)}\r\n\r\n"
                     ).encode() + body)
    conns = [await asyncio.open_connection(host, port) for _ in range(min(connections, n))]

    async def worker(k, reader, writer):
        for i in range(k, n, len(conns)):
            writer.write(reqs[i])
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"the receiver refused a ceiling request: {head[:40]!r}")

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(k, r, w) for k, (r, w) in enumerate(conns)))
    t = time.perf_counter() - t0
    for _, w in conns:
        w.close()
    return t


def main() -> None:
    try:
        from uvloop import new_event_loop
    except ImportError:
        new_event_loop = None
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(serve(int(sys.argv[1]), os.environ.get(SECRET_ENV, ""), *sys.argv[2:4]))


if __name__ == "__main__":
    main()
