"""A lean HTTP/1.1 client for webhook deliveries: up to ``connections`` keep-alive connections per
origin; beyond that many requests in flight they are pipelined (HTTP/1.1: written back to back on
the connections in turn, answers read in order); bodies read by ``Content-Length``, chunked, or to
the end; ``http`` and ``https``.

Why not httpx or aiohttp: a delivery is one small POST and its status, and their per-request cost
(aiohttp 270 µs of CPU, httpx more, side by side on this project's loaded 2-core machine) would cap
a dispatcher far below the 5,000 deliveries/s it is built for (docs/alerts.md, "Throughput"). Each
connection is an :class:`asyncio.Protocol`: the requests queued in one turn of the event loop go out
in one write, the answers that arrive together are parsed in one pass. A request whose connection
closes before its answer began (the server closed it while idle, or an earlier request on it timed
out, or it closed after as many answers as it takes per connection) is sent again on another, up to
:data:`RESENDS` times: deliveries are idempotent by their id. As many connections as requests in
flight send one request at a time on each (for servers that mishandle pipelining); an origin that
closes a connection after an answer (HTTP/1.0, ``connection: close``) gets one request per connection.
"""
from __future__ import annotations

import asyncio
import collections
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from meters.errors import MetersError

MAX_HEAD = 64 * 1024
MAX_BODY = 1024 * 1024
RESENDS = 4          # times a request left unanswered by a closing connection is sent again


class HttpError(Exception):
    """The request failed before an answer: refused, reset, cut off, or a malformed answer."""


class _Unanswered(HttpError):
    """The connection closed after the request went out and before its answer began."""


@dataclass(frozen=True)
class Response:
    status: int
    reason: str
    headers: dict[str, str]        # lower-case names
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


@dataclass(frozen=True)
class _Origin:
    scheme: str
    host: str
    port: int
    path: str
    host_header: str


def _parse(buf: bytearray, eof: bool) -> tuple[Response, bool, int] | None:
    """The first answer in ``buf``: (answer, keep the connection, bytes it took), or None while it is
    incomplete (``eof``: the connection is closed, a body without length ends here)."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        if len(buf) > MAX_HEAD:
            raise HttpError("answer header too long")
        return None
    lines = buf[:end].decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/1.") or not code.isdigit():
        raise HttpError(f"not an HTTP/1.1 answer: {lines[0][:80]!r}")
    status = int(code)
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    keep = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
    start = end + 4
    if 100 <= status < 200:                 # an interim answer (100 Continue): skipped
        del buf[:start]
        return _parse(buf, eof)
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body, at = bytearray(), start
        while True:
            eol = buf.find(b"\r\n", at)
            if eol < 0:
                return None
            size = int(bytes(buf[at:eol]).split(b";")[0].strip() or b"0", 16)
            if size == 0:                          # then trailers (usually none) up to an empty line
                t = buf.find(b"\r\n\r\n", eol)
                if t < 0:
                    return None
                return Response(status, reason, headers, bytes(body)), keep, t + 4
            if len(buf) < eol + 2 + size + 2:
                return None
            body += buf[eol + 2:eol + 2 + size]
            if len(body) > MAX_BODY:
                raise HttpError("answer body too long")
            at = eol + 2 + size + 2
    if "content-length" in headers:
        n = int(headers["content-length"])
        if n > MAX_BODY:
            raise HttpError(f"answer body of {n} bytes is too long")
        if len(buf) < start + n:
            return None
        return Response(status, reason, headers, bytes(buf[start:start + n])), keep, start + n
    if status in (204, 304):
        return Response(status, reason, headers, b""), keep, start
    if not eof:                            # a body to the end of the connection
        if len(buf) - start > MAX_BODY:
            raise HttpError("answer body too long")
        return None
    return Response(status, reason, headers, bytes(buf[start:start + MAX_BODY])), False, len(buf)


class _Conn(asyncio.Protocol):
    """One keep-alive connection; its requests are answered in the order they were sent."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiting: collections.deque[tuple[asyncio.Future, float]] = collections.deque()   # (answer, deadline)
        self.out: list[bytes] = []
        self.closed = False
        self.reusable = True           # no "connection: close" seen

    def connection_made(self, transport) -> None:
        self.transport = transport
        if self.closed:                     # given up on (timed out) while connecting
            transport.close()
            return
        if self.out:
            self._flush()

    def send(self, data: bytes, deadline: float) -> asyncio.Future:
        fut = self.loop.create_future()
        self.waiting.append((fut, deadline))
        if not self.out and self.transport is not None:
            self.loop.call_soon(self._flush)        # what this turn of the loop sends, in one write
        self.out.append(data)
        return fut

    def _flush(self) -> None:
        if self.out and not self.closed and self.transport is not None:
            self.transport.write(b"".join(self.out))
        self.out = []

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self._answers(eof=False)

    def eof_received(self):
        self._answers(eof=True)
        return False                              # close the transport

    def _answers(self, eof: bool) -> None:
        try:
            while self.waiting and (got := _parse(self.buf, eof)) is not None:
                resp, keep, used = got
                del self.buf[:used]
                fut, _ = self.waiting.popleft()
                if not fut.done():                # not given up on (cancelled)
                    fut.set_result(resp)
                if not keep:
                    self.reusable = False
                    self.close()
                    return
        except (HttpError, ValueError) as e:
            self._fail(HttpError(str(e) if isinstance(e, HttpError) else f"{type(e).__name__}: {e}"))
            self.close()

    def connection_lost(self, exc) -> None:
        self.closed = True
        self._fail(_Unanswered(f"{type(exc).__name__ + ': ' if exc else ''}the connection closed before an answer"))

    def _fail(self, error: Exception) -> None:
        while self.waiting:
            fut, _ = self.waiting.popleft()
            if not fut.done():
                fut.set_exception(error)

    def expire(self, now: float) -> None:
        """Requests past their deadline get :class:`TimeoutError`; then the connection is closed (the
        answers behind them would wait for theirs), the others sent once more on another."""
        late = [fut for fut, deadline in self.waiting if deadline <= now]
        if late:
            for fut in late:
                if not fut.done():
                    fut.set_exception(TimeoutError())
            self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.close()
            self._fail(_Unanswered("the connection closed before an answer"))

    @property
    def usable(self) -> bool:
        return not self.closed and self.reusable


class Client:
    """POST to many URLs with up to ``connections`` keep-alive connections per origin (requests
    beyond that many pipelined); ``timeout_s`` bounds a whole request."""

    def __init__(self, timeout_s: float = 10.0, ssl_context: ssl.SSLContext | None = None, *,
                 connections: int = 64):
        if connections < 1:
            raise MetersError("an HTTP client needs at least one connection per origin")
        self.timeout_s, self.connections = timeout_s, connections
        self._ssl = ssl_context
        self._origins: dict[str, _Origin] = {}
        self._pools: dict[tuple, list[_Conn]] = {}
        self._opening: set[asyncio.Task] = set()
        self._sweeper: asyncio.Task | None = None
        self._turn = 0
        self._one_each: set[tuple] = set()   # origins that close a connection after an answer: no pipelining

    def _origin(self, url: str) -> _Origin:
        o = self._origins.get(url)
        if o is None:
            u = urlsplit(url)
            if u.scheme not in ("http", "https") or not u.hostname:
                raise MetersError(f"webhook URL {url!r} must be http:// or https:// with a host")
            port = u.port or (443 if u.scheme == "https" else 80)
            default = port == (443 if u.scheme == "https" else 80)
            o = _Origin(u.scheme, u.hostname, port, (u.path or "/") + (f"?{u.query}" if u.query else ""),
                        u.hostname if default else f"{u.hostname}:{port}")
            self._origins[url] = o
        return o

    def _conn(self, o: _Origin) -> _Conn:
        """An idle connection to ``o`` while there are fewer than ``connections`` (else a new one);
        then the next in turn (the request waits behind those already on it)."""
        key = (o.scheme, o.host, o.port)
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = []
        if len(pool) >= self.connections and key not in self._one_each:
            self._turn = (self._turn + 1) % len(pool)
            c = pool[self._turn]
            if c.usable:
                return c
            pool[:] = [c for c in pool if c.usable]      # a closed one is replaced
        for c in pool:
            if not c.waiting and c.usable:
                return c
        loop = asyncio.get_running_loop()
        c = _Conn(loop)
        pool.append(c)
        ctx = (self._ssl or ssl.create_default_context()) if o.scheme == "https" else None
        task = loop.create_task(self._open(c, o, ctx, pool))
        self._opening.add(task)
        task.add_done_callback(self._opening.discard)
        return c

    async def _open(self, c: _Conn, o: _Origin, ctx, pool: list[_Conn]) -> None:
        try:
            await c.loop.create_connection(lambda: c, o.host, o.port, ssl=ctx)
        except (OSError, ssl.SSLError) as e:
            c.closed = True
            c._fail(HttpError(f"{type(e).__name__}: {e}"))
            if c in pool:
                pool.remove(c)

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> Response:
        """POST ``body``; raises :class:`TimeoutError` or :class:`HttpError`."""
        o = self._origin(url)
        head = (f"POST {o.path} HTTP/1.1\r\nhost: {o.host_header}\r\ncontent-length: {len(body)}\r\n"
                + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode()
        request = head + body
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        if self._sweeper is None:
            self._sweeper = loop.create_task(self._sweep())
        for attempt in range(RESENDS + 1):
            conn = self._conn(o)
            fut = conn.send(request, deadline)
            try:
                resp = await fut
                if not conn.reusable:              # HTTP/1.0 or "connection: close": one request per connection
                    self._one_each.add((o.scheme, o.host, o.port))
                return resp
            except _Unanswered:
                if attempt < RESENDS and loop.time() < deadline:
                    continue       # the connection closed before this answer began: again on another
                raise
            except asyncio.CancelledError:   # the answers behind it would be out of step
                conn.close()
                raise
        raise AssertionError("unreachable")

    async def _sweep(self) -> None:
        """Time out the requests past their deadline (one timer for all, not one per request: a
        tenth of ``timeout_s`` late at most)."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(min(1.0, self.timeout_s / 10))
            now = loop.time()
            for pool in self._pools.values():
                for c in pool:
                    if c.waiting:
                        c.expire(now)

    async def aclose(self) -> None:
        for task in [*self._opening, *([self._sweeper] if self._sweeper else [])]:
            task.cancel()
        self._sweeper = None
        for pool in self._pools.values():
            for c in pool:
                c.close()
        self._pools.clear()
