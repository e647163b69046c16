"""A lean MQTT publisher at QoS 1 on an asyncio event loop (MQTT 5 or 3.1.1, TCP or TLS, user name and
password: a :class:`~meters.mqtt.BrokerURL`).

:meth:`Publisher.publish` returns a future that is done when the broker acknowledged the message
(PUBACK: result None) or gave it up (the reason, a string). The packets of one event-loop turn go
out in one socket write and every PUBACK a read brings is handled in one pass, with no per-message
client object, lock or callback (paho's QoS 1 publish costs several times the CPU). At most the
broker's Receive Maximum are in flight; more wait their turn. A lost connection is re-established
every ``reconnect_s`` and the messages still awaiting their PUBACK are sent again (flagged DUP: at
least once); one not acknowledged within ``timeout_s`` of its publish is given up (its future says
so; the caller retries it later)."""
from __future__ import annotations

import asyncio
import collections
import contextlib
import ssl
import struct

from .mqtt import BrokerURL, ProtocolError, read_varint, varint

CONNECT, CONNACK, PUBLISH, PUBACK, PINGREQ, PINGRESP, DISCONNECT = 1, 2, 3, 4, 12, 13, 14
PUBLISH_QOS1 = 0x32
DUP = 0x08
MAX_PACKET_ID = 65535
_H = struct.Struct(">H")

# MQTT 5 property identifiers by value encoding (what a CONNACK, PUBACK or DISCONNECT may carry)
_BYTE = {0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A}
_TWO = {0x13, 0x21, 0x22, 0x23}
_FOUR = {0x02, 0x11, 0x18, 0x27}
_VARINT = {0x0B}
_STRING = {0x03, 0x08, 0x09, 0x12, 0x15, 0x16, 0x1A, 0x1C, 0x1F}
_PAIR = {0x26}
RECEIVE_MAXIMUM, MAXIMUM_PACKET_SIZE, SERVER_KEEP_ALIVE, REASON_STRING = 0x21, 0x27, 0x13, 0x1F

CONNACK_REASONS = {1: "unacceptable protocol version", 2: "client id rejected", 3: "server unavailable",
                   4: "bad user name or password", 5: "not authorised", 0x80: "unspecified error",
                   0x84: "unsupported protocol version", 0x85: "client id not valid",
                   0x86: "bad user name or password", 0x87: "not authorised", 0x88: "server unavailable",
                   0x89: "server busy", 0x8A: "banned", 0x8C: "bad authentication method",
                   0x95: "packet too large", 0x97: "quota exceeded", 0x9F: "connection rate exceeded"}
PUBACK_REASONS = {0x80: "unspecified error", 0x83: "implementation specific error", 0x87: "not authorised",
                  0x90: "topic name invalid", 0x91: "packet identifier in use", 0x97: "quota exceeded",
                  0x99: "payload format invalid"}


def _string(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return _H.pack(len(b)) + b


def connect_packet(client_id: str, username: str | None, password: str | None, keepalive: int, v5: bool,
                   clean_start: bool = True) -> bytes:
    """A CONNECT packet (no will)."""
    flags = (0x02 if clean_start else 0) | (0x80 if username is not None else 0) | (
        0x40 if password is not None and username is not None else 0)
    body = _string("MQTT") + bytes([5 if v5 else 4, flags]) + _H.pack(keepalive) + (b"\x00" if v5 else b"")
    body += _string(client_id)
    if username is not None:
        body += _string(username)
        if password is not None:
            body += _string(password)
    return bytes([CONNECT << 4]) + varint(len(body)) + body


def properties(buf, pos: int) -> tuple[dict[int, object], int]:
    """The MQTT 5 properties at ``pos`` (values: int, bytes or pairs) and the position after them."""
    got = read_varint(buf, pos)
    if got is None:
        raise ProtocolError("truncated properties")
    length, pos = got
    end, props = pos + length, {}
    while pos < end:
        pid = buf[pos]
        pos += 1
        if pid in _BYTE:
            props[pid], pos = buf[pos], pos + 1
        elif pid in _TWO:
            props[pid], pos = _H.unpack_from(buf, pos)[0], pos + 2
        elif pid in _FOUR:
            props[pid], pos = int.from_bytes(buf[pos:pos + 4], "big"), pos + 4
        elif pid in _VARINT:
            got = read_varint(buf, pos)
            if got is None:
                raise ProtocolError("truncated property")
            props[pid], pos = got
        elif pid in _STRING:
            n = _H.unpack_from(buf, pos)[0]
            props[pid], pos = bytes(buf[pos + 2:pos + 2 + n]), pos + 2 + n
        elif pid in _PAIR:
            n = _H.unpack_from(buf, pos)[0]
            m = _H.unpack_from(buf, pos + 2 + n)[0]
            props.setdefault(pid, []).append((bytes(buf[pos + 2:pos + 2 + n]), bytes(buf[pos + 4 + n:pos + 4 + n + m])))
            pos += 4 + n + m
        else:
            raise ProtocolError(f"unknown property 0x{pid:02x}")
    if pos != end:
        raise ProtocolError("properties overrun their length")
    return props, end


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection: bytes in are split into packets for :class:`Publisher`."""

    def __init__(self, publisher: "Publisher"):
        self.p = publisher
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        acks, pos, n = [], 0, len(buf)
        try:
            while pos < n:
                first = buf[pos]
                if first == 0x40 and pos + 1 < n and buf[pos + 1] == 2:      # PUBACK, success, no properties
                    if pos + 4 > n:
                        break
                    acks.append((buf[pos + 2] << 8 | buf[pos + 3], 0, None))
                    pos += 4
                    continue
                got = read_varint(buf, pos + 1)
                if got is None:
                    break
                length, start = got
                end = start + length
                if end > n:
                    break
                self.p._packet(first, buf, start, end, acks)
                pos = end
        except (ProtocolError, IndexError, struct.error, UnicodeDecodeError) as e:
            self.p._error = f"protocol error: {e}"
            self.transport.close()
            return
        finally:
            del buf[:pos]
            if acks:
                self.p._acked(acks)

    def connection_lost(self, exc) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)
        self.p._lost(self)


class Publisher:
    """QoS 1 publishes to one broker (see the module's docstring). Create it on the running loop,
    :meth:`start` it (connects in the background; :attr:`connected` says when), :meth:`close`
    at the end."""

    def __init__(self, url: BrokerURL, client_id: str = "", *, timeout_s: float = 30.0, keepalive: int = 30,
                 reconnect_s: float = 1.0, connect_timeout_s: float = 10.0):
        self.url, self.client_id = url, client_id
        self.timeout_s, self.keepalive, self.reconnect_s = timeout_s, keepalive, reconnect_s
        self.connect_timeout_s = connect_timeout_s
        self.v5 = url.version == "5"
        self.connected = asyncio.Event()
        self.last_error: str | None = None      # why the last connection attempt failed or ended
        self.connects = 0                        # connections the broker accepted
        self._loop = asyncio.get_running_loop()
        self._conn: _Connection | None = None
        self._error: str | None = None
        self._inflight: dict[int, list] = {}     # packet id -> [future, packet, deadline], oldest first
        self._abandoned: set[int] = set()        # ids given up on this connection: not reused before their PUBACK
        self._waiting: collections.deque = collections.deque()   # (future, topic bytes, payload, deadline)
        self._window = MAX_PACKET_ID             # the broker's Receive Maximum
        self._max_packet: int | None = None
        self._next_id = 0
        self._out: list[bytes] = []
        self._flush_handle: asyncio.Handle | None = None
        self._connack: asyncio.Future | None = None
        self._ping_sent: float | None = None
        self._last_out = 0.0
        self._task: asyncio.Task | None = None
        self._closed = False
        self._ssl = ssl.create_default_context(cafile=url.cafile) if url.tls else None

    def start(self) -> None:
        """Start connecting (and keep the connection up until :meth:`close`)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    @property
    def in_flight(self) -> int:
        """Messages awaiting their PUBACK or their turn."""
        return len(self._inflight) + len(self._waiting)

    # -- publishing --------------------------------------------------------------------------------------
    def publish(self, topic: str, payload: bytes) -> asyncio.Future:
        """Publish ``payload`` to ``topic`` at QoS 1; the future's result is None once the broker
        acknowledged it, else the reason it was not."""
        fut = self._loop.create_future()
        if not topic or "+" in topic or "#" in topic:
            fut.set_result(f"topic {topic!r} is not a topic name")
            return fut
        if self._closed:
            fut.set_result("publisher closed")
            return fut
        head = _string(topic)
        deadline = self._loop.time() + self.timeout_s
        if self._room():
            self._send(fut, head, payload, deadline)
        else:
            self._waiting.append((fut, head, payload, deadline))
        return fut

    def _room(self) -> bool:
        """Whether one more message may go out now (connected, within the broker's window)."""
        n = len(self._inflight)
        return n < self._window and n + len(self._abandoned) < MAX_PACKET_ID and self.connected.is_set()

    def _send(self, fut: asyncio.Future, head: bytes, payload: bytes, deadline: float) -> None:
        mid = self._packet_id()
        props = b"\x00" if self.v5 else b""
        body_len = len(head) + 2 + len(props) + len(payload)
        packet = b"".join((bytes((PUBLISH_QOS1,)), varint(body_len), head, _H.pack(mid), props, payload))
        if self._max_packet is not None and len(packet) > self._max_packet:
            fut.set_result(f"message of {len(packet)} bytes exceeds the broker's maximum packet size "
                           f"{self._max_packet}")
            return
        self._inflight[mid] = [fut, packet, deadline]
        self._write(packet)

    def _packet_id(self) -> int:
        mid = self._next_id
        while True:
            mid = mid + 1 if mid < MAX_PACKET_ID else 1
            if mid not in self._inflight and mid not in self._abandoned:
                self._next_id = mid
                return mid

    def _write(self, packet: bytes) -> None:
        self._out.append(packet)
        if self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Everything published in this loop turn in one socket write."""
        self._flush_handle = None
        out, self._out = self._out, []
        conn = self._conn
        if out and conn is not None and conn.transport is not None and not conn.transport.is_closing():
            conn.transport.write(b"".join(out))
            self._last_out = self._loop.time()

    def _acked(self, acks: list[tuple[int, int, str | None]]) -> None:
        inflight = self._inflight
        for mid, reason, text in acks:
            entry = inflight.pop(mid, None)
            if entry is None:
                self._abandoned.discard(mid)     # given up already (or a broker's stray PUBACK)
                continue
            fut = entry[0]
            if not fut.done():
                if reason >= 0x80:
                    why = PUBACK_REASONS.get(reason, f"reason 0x{reason:02x}")
                    fut.set_result(f"PUBACK {why}" + (f": {text}" if text else ""))
                else:
                    fut.set_result(None)
        self._fill()

    def _fill(self) -> None:
        """Send waiting messages while the broker's window has room."""
        waiting = self._waiting
        while waiting and self._room():
            fut, head, payload, deadline = waiting.popleft()
            if not fut.done():
                self._send(fut, head, payload, deadline)

    # -- incoming packets --------------------------------------------------------------------------------
    def _packet(self, first: int, buf, start: int, end: int, acks: list) -> None:
        kind = first >> 4
        if kind == PUBACK:
            mid = _H.unpack_from(buf, start)[0]
            reason, text = 0, None
            if end - start > 2:
                reason = buf[start + 2]
                if end - start > 3 and reason >= 0x80:
                    props, _ = properties(buf, start + 3)
                    text = props.get(REASON_STRING, b"").decode(errors="replace") or None
            acks.append((mid, reason, text))
        elif kind == PINGRESP:
            self._ping_sent = None
        elif kind == CONNACK:
            self._on_connack(buf, start, end)
        elif kind == DISCONNECT:
            reason = buf[start] if end > start else 0
            self._error = f"the broker disconnected (reason 0x{reason:02x})"
            if self._conn is not None and self._conn.transport is not None:
                self._conn.transport.close()
        # anything else (a PUBLISH: this client subscribes to nothing) is ignored

    def _on_connack(self, buf, start: int, end: int) -> None:
        reason = buf[start + 1]
        props = properties(buf, start + 2)[0] if self.v5 and end - start > 2 else {}
        if self._connack is not None and not self._connack.done():
            self._connack.set_result((reason, props))

    # -- the connection ----------------------------------------------------------------------------------
    async def _run(self) -> None:
        while not self._closed:
            try:
                await self._connect()
            except (OSError, asyncio.TimeoutError, ConnectionError, ssl.SSLError) as e:
                self.last_error = f"cannot connect to {self.url.redacted()}: {e}"
            if self._conn is not None:
                await self._serve(self._conn)
            self._expire()                       # messages waiting for a connection give up in time too
            if not self._closed:
                await asyncio.sleep(self.reconnect_s)

    async def _connect(self) -> None:
        url = self.url
        self._error = None
        async with asyncio.timeout(self.connect_timeout_s):
            _, conn = await self._loop.create_connection(
                lambda: _Connection(self), url.host, url.port, ssl=self._ssl,
                server_hostname=url.host if self._ssl else None)
            self._conn = conn
            self._connack = self._loop.create_future()
            conn.transport.write(connect_packet(self.client_id, url.username, url.password, self.keepalive, self.v5))
            try:
                reason, props = await self._connack
            except BaseException:
                conn.transport.close()
                raise
        if reason != 0:
            self.last_error = f"the broker refused the connection: {CONNACK_REASONS.get(reason, reason)}"
            conn.transport.close()
            return
        self._window = props.get(RECEIVE_MAXIMUM, MAX_PACKET_ID)
        self._max_packet = props.get(MAXIMUM_PACKET_SIZE)
        self.keepalive = props.get(SERVER_KEEP_ALIVE, self.keepalive)
        self._ping_sent = None
        self._last_out = self._loop.time()
        self._abandoned.clear()                  # a new session: the broker holds none of them
        self.last_error = None
        self.connects += 1
        self.connected.set()
        resend = self._inflight              # unacknowledged on the last connection: again, DUP
        self._inflight = {}
        for mid, entry in resend.items():
            if not entry[0].done() and len(self._inflight) >= self._window:   # the broker's window shrank
                entry[0].set_result("not sent again: beyond the broker's Receive Maximum")
            elif not entry[0].done():
                packet = entry[1]
                entry[1] = bytes((packet[0] | DUP,)) + packet[1:]
                self._inflight[mid] = entry
                self._write(entry[1])
        self._fill()

    async def _serve(self, conn: _Connection) -> None:
        """Until the connection is lost: keep-alive pings, and the messages without a PUBACK in
        time given up (one timer for all, not one per message)."""
        tick = min(1.0, self.timeout_s / 10, self.keepalive / 4 if self.keepalive else 1.0)
        while not conn.lost.done():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(conn.lost), tick)
            self._expire()
            if conn.lost.done() or not self.connected.is_set():
                break
            now = self._loop.time()
            if self.keepalive:
                if self._ping_sent is not None and now - self._ping_sent > self.keepalive:
                    self._error = "no PINGRESP from the broker"
                    conn.transport.close()
                elif self._ping_sent is None and now - self._last_out >= self.keepalive / 2:
                    self._ping_sent = now
                    self._write(bytes((PINGREQ << 4, 0)))
        self._expire()

    def _lost(self, conn: _Connection) -> None:
        if conn is not self._conn:
            return
        self._conn = None
        if self.connected.is_set() or self._error:
            self.last_error = self._error or "connection lost"
        self.connected.clear()
        if self._connack is not None and not self._connack.done():
            self._connack.set_exception(ConnectionError(self._error or "connection closed before CONNACK"))

    def _expire(self) -> None:
        now = self._loop.time()
        late = []
        for mid, entry in self._inflight.items():
            if entry[2] > now:
                break
            late.append(mid)
        for mid in late:
            fut = self._inflight.pop(mid)[0]
            self._abandoned.add(mid)
            if not fut.done():
                fut.set_result("no PUBACK in time")
        while self._waiting and self._waiting[0][3] <= now:
            fut = self._waiting.popleft()[0]
            if not fut.done():
                fut.set_result("no PUBACK in time" if self.connected.is_set() else
                               f"not connected ({self.last_error or 'connecting'})")
        if late:
            self._fill()

    async def close(self) -> None:
        """Disconnect (a DISCONNECT packet out first); messages still in flight are given up."""
        self._closed = True
        conn = self._conn
        if conn is not None and conn.transport is not None and not conn.transport.is_closing():
            self._flush()
            conn.transport.write(bytes((DISCONNECT << 4, 0)))
            conn.transport.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for fut, *_ in list(self._inflight.values()) + list(self._waiting):
            if not fut.done():
                fut.set_result("publisher closed")
        self._inflight.clear()
        self._waiting.clear()
