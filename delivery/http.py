"""A lean HTTP/1.1 client for webhook deliveries: keep-alive connections pooled per origin (one
request at a time on each, as many connections as deliveries in flight), bodies read by
``Content-Length``, chunked, or to the end; ``http`` and ``https``.

Why not httpx or aiohttp: a delivery is one small POST and its status, and their per-request cost
alone (aiohttp 270 µs of CPU, this client 87 µs, side by side on this project's loaded 2-core
machine; httpx more) would cap a dispatcher below the 5,000 deliveries/s it is built for
(docs/alerts.md, "Throughput"). A request that fails on a reused connection before any answer
arrived (the server closed it while idle) is sent once more on a new connection: deliveries are
idempotent by their id.
"""
from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from meters.errors import MetersError

MAX_HEAD = 64 * 1024
MAX_BODY = 1024 * 1024


class HttpError(Exception):
    """The request failed before an answer: refused, reset, cut off, or a malformed answer."""


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


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    def close(self) -> None:
        self.writer.close()

    async def request(self, head: bytes, body: bytes) -> tuple[Response, bool]:
        """(the answer, whether the connection may be reused)."""
        self.writer.write(head + body)
        try:
            raw = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            raise HttpError("answer header too long") from None
        lines = raw[:-4].decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        code, _, reason = rest.partition(" ")
        if not version.startswith("HTTP/1.") or not code.isdigit():
            raise HttpError(f"not an HTTP/1.1 answer: {lines[0][:80]!r}")
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        keep = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body_ = await self._chunked()
        elif "content-length" in headers:
            n = int(headers["content-length"])
            if n > MAX_BODY:
                raise HttpError(f"answer body of {n} bytes is too long")
            body_ = await self.reader.readexactly(n)
        elif int(code) in (204, 304) or 100 <= int(code) < 200:
            body_ = b""
        else:
            body_, keep = await self.reader.read(MAX_BODY), False
        return Response(int(code), reason, headers, body_), keep

    async def _chunked(self) -> bytes:
        out = bytearray()
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while (await self.reader.readuntil(b"\r\n")) != b"\r\n":   # trailers
                    pass
                return bytes(out)
            out += await self.reader.readexactly(size)
            await self.reader.readexactly(2)
            if len(out) > MAX_BODY:
                raise HttpError("answer body too long")


class Client:
    """POST to many URLs with keep-alive connections; ``timeout_s`` bounds a whole request."""

    def __init__(self, timeout_s: float = 10.0, ssl_context: ssl.SSLContext | None = None):
        self.timeout_s = timeout_s
        self._ssl = ssl_context
        self._origins: dict[str, _Origin] = {}
        self._idle: dict[tuple, list[_Conn]] = {}

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

    async def _connect(self, o: _Origin) -> _Conn:
        if o.scheme == "https":
            ctx = self._ssl or ssl.create_default_context()
            r, w = await asyncio.open_connection(o.host, o.port, ssl=ctx, limit=MAX_HEAD)
        else:
            r, w = await asyncio.open_connection(o.host, o.port, limit=MAX_HEAD)
        return _Conn(r, w)

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> Response:
        """POST ``body``; raises :class:`TimeoutError` or :class:`HttpError`."""
        o = self._origin(url)
        key = (o.scheme, o.host, o.port)
        head = (f"POST {o.path} HTTP/1.1\r\nhost: {o.host_header}\r\ncontent-length: {len(body)}\r\n"
                + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode()
        async with asyncio.timeout(self.timeout_s):
            for attempt in (0, 1):
                idle = self._idle.get(key)
                conn, reused = (idle.pop(), True) if idle else (None, False)
                try:
                    if conn is None:
                        conn = await self._connect(o)
                    resp, keep = await conn.request(head, body)
                except (asyncio.IncompleteReadError, ConnectionResetError, BrokenPipeError) as e:
                    if conn is not None:
                        conn.close()
                    if reused and attempt == 0 and not getattr(e, "partial", b""):
                        continue        # the server closed the idle connection: once more on a new one
                    raise HttpError(f"{type(e).__name__}: the connection closed before an answer") from None
                except (OSError, ValueError, asyncio.LimitOverrunError) as e:
                    if conn is not None:
                        conn.close()
                    raise HttpError(f"{type(e).__name__}: {e}") from None
                except BaseException:    # a timeout or cancellation mid-request: the connection is unusable
                    if conn is not None:
                        conn.close()
                    raise
                if keep:
                    self._idle.setdefault(key, []).append(conn)
                else:
                    conn.close()
                return resp
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        for conns in self._idle.values():
            for c in conns:
                c.close()
        self._idle.clear()
