"""Fixtures and helpers of the account service tests (tests/test_accounts_*.py): every test runs on
SQLite and on PostgreSQL (a throwaway cluster, see conftest.pg_cluster); HTTP tests talk to a real
``meters serve`` on a free loopback port."""
from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from accounts.registry import import_from_lake
from accounts.store import open_store
from meters.broker import free_port
from meters.lake import init_lake
from meters.registry import import_accounts

ROOT = Path(__file__).resolve().parents[1]
ACCOUNTS_CSV = """account_id,meter_id,tariff_id,mode,balance,warn_1,warn_2,topup_below,topup_amount,contacts
1001,1,cn-bj-res-elec,prepaid,50.00,30,20,,,self:+8613800000001
1002,2,cn-bj-res-elec,prepaid,0.00,30,20,10,100,self:+8613800000002;son:+8613800000003
1003,3,cn-bj-res-water,postpaid,,,,,,
"""
USERS = ("1001", "1002", "1003")


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request):
    """None (the lake's SQLite accounts.db) or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return None
    return request.getfixturevalue("pg_cluster").create_database()


def make_lake(path: Path, csv_text: str = ACCOUNTS_CSV):
    lake = init_lake(path)
    f = path.parent / "accounts.csv"
    f.write_text(csv_text)
    import_accounts(lake, f)
    return lake


@pytest.fixture
def store(tmp_path, db_url):
    """A store with accounts 1001-1003 imported from a lake's registry."""
    s = open_store(make_lake(tmp_path / "lake"), db_url)
    import_from_lake(s, changed_by="test")
    yield s
    s.close()


class Clock:
    """A settable clock for ``store.clock``."""

    def __init__(self, now: dt.datetime):
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def local(lake, day: dt.date, h: int, m: int = 0, s: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(h, m, s), lake.tz).astimezone(dt.timezone.utc)


class Server:
    """``meters serve`` in a subprocess on a free 127.0.0.1 port."""

    def __init__(self, lake_dir: Path, db: str | None, *options: str):
        self.lake_dir, self.db, self.options = lake_dir, db, options
        self.proc = None

    def start(self) -> "Server":
        self.port = free_port()
        cmd = [sys.executable, "-m", "meters", "serve", "--lake", str(self.lake_dir), "--port", str(self.port)]
        if self.db:
            cmd += ["--db", self.db]
        cmd += self.options
        self.log = open(self.lake_dir.parent / f"serve-{self.port}.log", "w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"meters serve exited: {Path(self.log.name).read_text()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError("meters serve did not answer /healthz within 60 s")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


def ref_for(i: int) -> str:
    return "wx-" + hashlib.sha256(str(i).encode()).hexdigest()[:20]


class PaymentStream:
    """Payments of 1.00 to ``users`` in turn (refs ``s0``, ``s1`` …) from a thread until the block ends;
    ``refs`` lists the applied ones, ``wait(n)`` waits for ``n`` more."""

    def __init__(self, store, users, channel: str = "c"):
        import threading

        from accounts.payments import pay

        self.refs: list[str] = []
        self._stop = threading.Event()

        def stream():
            i = 0
            while not self._stop.is_set():
                pay(store, users[i % len(users)], 1, f"s{i}", channel=channel)
                self.refs.append(f"s{i}")
                i += 1
        self._thread = threading.Thread(target=stream)

    def __enter__(self) -> "PaymentStream":
        self._thread.start()
        return self

    def wait(self, n: int) -> None:
        goal = len(self.refs) + n
        while len(self.refs) < goal:
            time.sleep(0.001)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def request_bytes(method: str, path: str, key: str | None, body: dict | None = None) -> bytes:
    """One HTTP/1.1 keep-alive request, encoded ahead (for :func:`send_all`)."""
    import json

    data = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    if key:
        head += f"Authorization: Bearer {key}\r\n"
    if body is not None:
        head += "Content-Type: application/json\r\n"
    return (head + f"Content-Length: {len(data)}\r\n\r\n").encode() + data


class _Client(asyncio.Protocol):
    """One keep-alive connection of :func:`send_all` (an asyncio protocol, no streams): writes a request,
    reads the answer's status line and Content-Length body, then writes the next."""

    def __init__(self, requests: list[bytes], todo: list[int], out: list, done):
        self.requests, self.todo, self.out, self.done = requests, todo, out, done
        self.buf, self.end, self.i, self.t0, self.transport = b"", None, None, 0.0, None

    def connection_made(self, transport) -> None:
        self.transport = transport
        self._next()

    def _next(self) -> None:
        if not self.todo:
            self.transport.close()
            if not self.done.done():
                self.done.set_result(None)
            return
        self.i = self.todo.pop()
        self.t0 = time.perf_counter()
        self.transport.write(self.requests[self.i])

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.end is None:     # the head: status and Content-Length
            h = self.buf.find(b"\r\n\r\n")
            if h < 0:
                return
            head = self.buf[:h + 2].lower()
            k = head.find(b"content-length:")
            n = int(head[k + 15:head.index(b"\r\n", k)]) if k >= 0 else 0
            self.status, self.start, self.end = int(head[9:12]), h + 4, h + 4 + n
        if len(self.buf) < self.end:
            return
        self.out[self.i] = (self.status, self.buf[self.start:self.end], time.perf_counter() - self.t0)
        self.buf, self.end = self.buf[self.end:], None
        self._next()

    def connection_lost(self, exc) -> None:
        if not self.done.done():
            self.done.set_exception(exc or ConnectionError("the server closed the connection before answering"))


def send_all(port: int, requests: list[bytes], clients: int) -> tuple[float, list[tuple[int, bytes, float]]]:
    """Send ``requests`` to 127.0.0.1:``port`` over ``clients`` keep-alive connections, one request in
    flight on each (a raw asyncio protocol: cheap enough to load a server from the same machine; it
    parses only the status line and Content-Length). Returns (seconds, [(status, body, latency s)] in
    the order of ``requests``)."""
    out: list = [None] * len(requests)
    todo = list(range(len(requests) - 1, -1, -1))

    async def client():
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        transport, _ = await loop.create_connection(lambda: _Client(requests, todo, out, done), "127.0.0.1", port)
        try:
            await done
        finally:
            transport.close()

    async def main():
        t0 = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        return time.perf_counter() - t0

    try:
        import uvloop
        seconds = uvloop.run(main())
    except ImportError:
        seconds = asyncio.run(main())
    return seconds, out
