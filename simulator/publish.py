"""A QoS 1 publisher for many senders (data concentrators) without a thread per sender.

Each sender has its own paho 2.x client (the broker's ACL lets username X publish only to
``meters/v1/X/readings``) with a fixed client id and a persistent session. All clients are driven by
one selector loop (``loop_read`` / ``loop_write`` / ``loop_misc``); each keeps at most ``window``
unacknowledged messages. When the broker goes away the clients reconnect with back-off and paho
re-sends every unacknowledged message, so nothing is lost (at-least-once, as QoS 1 promises).

    pub = Publisher("mqtt://sender:pw@127.0.0.1:1883")            # one sender URL, or
    pub = Publisher(url, passwords={"dcu-000001": "…"})           # per-sender credentials
    pub.publish_batch("dcu-000001", meter_id, ts, register_milli)  # binary batch (meters.wire.FORMATS)
    pub.flush(); pub.close()
"""
from __future__ import annotations

import datetime as dt
import selectors
import time
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt

from meters import wire
from meters.errors import MetersError
from meters.mqtt import BrokerURL, make_client, parse_broker_url, readings_topic


@dataclass
class _Conn:
    sender: str
    client: mqtt.Client
    connect_kw: dict
    topic: str
    inflight: int = 0
    connected: bool = False
    sock: object = None
    events: int = 0                     # selector events registered (0 = not registered)
    retry_at: float = 0.0
    refused: str | None = None
    published: int = 0
    acked: int = 0
    pending_mids: set = field(default_factory=set)


class Publisher:
    """Publish payloads for many senders over one selector loop (see the module docstring).

    ``passwords``: sender id → password (per-sender credentials, e.g. from
    :meth:`meters.broker.ManagedBroker.add_senders`); without it every sender connects with the
    URL's credentials. ``window``: in-flight messages per client (20–100 keeps paho fast).
    ``max_unacked``: unacknowledged messages over all senders (bounds memory: paho keeps each
    payload until its PUBACK). ``stall_timeout``: seconds without any acknowledgement (broker
    down) before giving up."""

    def __init__(self, broker: str | BrokerURL, passwords: dict[str, str] | None = None, *,
                 window: int = 50, qos: int = 1, client_prefix: str = "meters-sim",
                 session_expiry: int = 3600, stall_timeout: float = 60.0, tz: dt.tzinfo | None = None,
                 max_unacked: int = 4000):
        self.url = parse_broker_url(broker) if isinstance(broker, str) else broker
        self.passwords = passwords
        self.window = int(window)
        if not 1 <= self.window <= 65535:
            raise MetersError(f"in-flight window {window} must be 1..65535")
        self.qos = qos
        self.max_unacked = max(int(max_unacked), self.window)
        self.client_prefix = client_prefix
        self.session_expiry = session_expiry
        self.stall_timeout = stall_timeout
        self.tz = tz or dt.timezone.utc
        self.conns: dict[str, _Conn] = {}
        self.sel = selectors.DefaultSelector()
        self.messages = 0
        self.acked = 0
        self.reconnects = 0
        self._last_misc = 0.0
        self._last_progress = time.monotonic()

    # -- connections ----------------------------------------------------------------------------
    def _conn(self, sender: str) -> _Conn:
        c = self.conns.get(sender)
        if c is None:
            c = self._open(sender)
        return c

    def _open(self, sender: str) -> _Conn:
        if self.passwords is not None:
            if sender not in self.passwords:
                raise MetersError(f"no credentials for sender {sender!r}")
            url = self.url.with_credentials(sender, self.passwords[sender])
        else:
            url = self.url
        client, kw = make_client(url, f"{self.client_prefix}-{sender}", clean_start=False,
                                 session_expiry=self.session_expiry)
        client.max_inflight_messages_set(self.window)
        client.max_queued_messages_set(0)
        conn = _Conn(sender, client, kw, readings_topic(sender))
        client.user_data_set(conn)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        self.conns[sender] = conn
        try:
            client.connect(**kw)
        except OSError as e:
            raise MetersError(f"cannot connect to {self.url.redacted()} as {url.username!r}: {e}") from None
        self._register(conn)
        return conn

    def connect_all(self, senders, timeout: float = 30.0) -> None:
        """Open connections for ``senders`` at once and wait until each is accepted."""
        for s in senders:
            if s not in self.conns:
                self._open(s)
        deadline = time.monotonic() + timeout
        while not all(c.connected for c in self.conns.values()):
            self._check_refused()
            if time.monotonic() > deadline:
                n = sum(not c.connected for c in self.conns.values())
                raise MetersError(f"{n} sender connection(s) to {self.url.redacted()} not accepted within {timeout}s")
            self._pump(0.05)

    def _register(self, conn: _Conn) -> None:
        sock = conn.client.socket()
        if conn.sock is not sock:  # a reconnect gave the client a new socket
            self._unregister(conn)
        conn.sock = sock
        if sock is None:
            return
        want = selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.client.want_write() else 0)
        if conn.events == 0:
            try:
                self.sel.register(sock, want, conn)
                conn.events = want
            except (ValueError, OSError):
                conn.events = 0
        elif conn.events != want:
            self.sel.modify(sock, want, conn)
            conn.events = want

    def _unregister(self, conn: _Conn) -> None:
        if conn.sock is not None and conn.events:
            try:
                self.sel.unregister(conn.sock)
            except (KeyError, ValueError, OSError):
                pass
        conn.events = 0
        conn.sock = None

    @staticmethod
    def _on_connect(client, conn: _Conn, flags, reason, properties):
        if reason.is_failure:
            conn.refused = str(reason)
            conn.connected = False
        else:
            conn.connected = True

    def _on_disconnect(self, client, conn: _Conn, flags, reason, properties):
        conn.connected = False
        conn.retry_at = time.monotonic() + 0.2

    def _on_publish(self, client, conn: _Conn, mid, reason, properties):
        conn.inflight -= 1
        conn.acked += 1
        self.acked += 1
        self._last_progress = time.monotonic()

    def _check_refused(self) -> None:
        for c in self.conns.values():
            if c.refused:
                raise MetersError(f"broker {self.url.redacted()} refused sender {c.sender!r}: {c.refused}")

    # -- the loop -------------------------------------------------------------------------------
    def _pump(self, timeout: float) -> None:
        """Wait up to ``timeout`` for socket events and process them; reconnect lost clients."""
        for key, mask in self.sel.select(timeout):
            conn: _Conn = key.data
            c = conn.client
            if mask & selectors.EVENT_READ:
                rc = c.loop_read()
                if rc != mqtt.MQTT_ERR_SUCCESS:
                    self._lost(conn)
                    continue
            if mask & selectors.EVENT_WRITE:
                rc = c.loop_write()
                if rc != mqtt.MQTT_ERR_SUCCESS:
                    self._lost(conn)
                    continue
            self._register(conn)
        now = time.monotonic()
        if now - self._last_misc > 0.5:
            self._last_misc = now
            for conn in self.conns.values():
                if conn.sock is not None:
                    if conn.client.loop_misc() != mqtt.MQTT_ERR_SUCCESS:
                        self._lost(conn)
                    elif conn.client.want_write():
                        self._register(conn)
                elif now >= conn.retry_at:
                    self._reconnect(conn)
            if self.stall_timeout and now - self._last_progress > self.stall_timeout and \
                    any(c.inflight or not c.connected for c in self.conns.values()):
                raise MetersError(f"broker {self.url.redacted()}: no acknowledgement for {self.stall_timeout:.0f}s "
                                  f"({self.messages - self.acked} message(s) unacknowledged)")

    def _lost(self, conn: _Conn) -> None:
        self._unregister(conn)
        conn.connected = False
        conn.retry_at = time.monotonic() + 0.2

    def _reconnect(self, conn: _Conn) -> None:
        try:
            conn.client.reconnect()
        except OSError:
            conn.retry_at = time.monotonic() + 0.5
            conn.sock = None
            return
        self.reconnects += 1
        self._register(conn)

    # -- publishing -----------------------------------------------------------------------------
    def publish(self, sender: str, payload: bytes) -> None:
        """Publish one payload to ``sender``'s readings topic at QoS 1 (waits while the sender's
        window is full)."""
        conn = self._conn(sender)
        while self.messages - self.acked >= self.max_unacked:
            self._check_refused()
            self._pump(0.05)
        while conn.inflight >= self.window or (not conn.connected and conn.inflight):
            if conn.refused:
                self._check_refused()
            self._pump(0.05)
        conn.inflight += 1
        conn.published += 1
        self.messages += 1
        conn.client.publish(conn.topic, payload, qos=self.qos)
        if conn.sock is not None and conn.client.want_write():
            self._register(conn)

    def publish_batch(self, sender: str, meter_id, ts, register_milli, fmt: str | wire.Codec = wire.DEFAULT) -> int:
        """Encode readings (``ts`` Unix seconds, registers in thousandths) in the wire format ``fmt``
        (a name of :data:`meters.wire.FORMATS`, or a codec) and publish; returns messages sent."""
        codec = fmt if isinstance(fmt, wire.Codec) else wire.lookup(fmt)
        payloads = codec.encode(meter_id, ts, register_milli, self.tz)
        for p in payloads:
            self.publish(sender, p)
        return len(payloads)

    def poll(self, seconds: float = 0.0) -> None:
        """Process network events (acknowledgements, reconnects) for up to ``seconds``."""
        end = time.monotonic() + seconds
        self._pump(0)
        while (left := end - time.monotonic()) > 0:
            self._pump(min(left, 0.2))

    def abort(self) -> None:
        """Drop every connection without waiting for acknowledgements."""
        for conn in self.conns.values():
            self._unregister(conn)
            try:
                conn.client._sock_close()
            except OSError:
                pass
        self.sel.close()

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every published message is acknowledged (reconnecting as needed)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self._last_progress = time.monotonic()
        while any(c.inflight for c in self.conns.values()):
            self._check_refused()
            if deadline is not None and time.monotonic() > deadline:
                raise MetersError(f"{self.messages - self.acked} message(s) not acknowledged within {timeout}s")
            self._pump(0.05)

    def close(self) -> None:
        """Flush, then disconnect every client, ending its session (MQTT 5)."""
        try:
            self.flush()
        finally:
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties

            for conn in self.conns.values():
                if conn.sock is None:
                    continue
                props = None
                if self.url.version == "5":
                    props = Properties(PacketTypes.DISCONNECT)
                    props.SessionExpiryInterval = 0
                try:
                    conn.client.disconnect(properties=props)
                    conn.client.loop_write()
                except OSError:
                    pass
                self._unregister(conn)
            self.sel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if exc[0] is None:
            self.close()
        else:
            self.abort()
