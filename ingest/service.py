"""The ingest service: MQTT (QoS 1, persistent session) → Parquet lake.

One worker holds the plain subscription ``meters/v1/+/readings``; several workers (``--workers N``,
or ``shared=True``) share ``$share/ingest/meters/v1/+/readings`` (MQTT 5). A session switching
between the two forms subscribes to the new one before it unsubscribes the old one.

At least once, never lost: a message is acknowledged (PUBACK, paho manual ack) only after every
reading and dead letter it produced is in a fsynced Parquet file. After a crash or a broker restart
the broker re-sends what was not acknowledged; the duplicates this writes are removed by every reader
(:mod:`meters.readings`) and by compaction.

Threads: paho's network loop decodes the messages (the PUBLISH packets it holds split in bulk,
:func:`split_publishes`; others through ``on_message``) and appends them to the current batch; the calling thread cuts batches (by rows, by pending messages, by time) and builds their Arrow
tables; a writer thread writes and fsyncs each built batch's files and only then acknowledges its
messages, batches in the order they were cut (so PUBACKs keep the order of the PUBLISHes). Building
the next batch overlaps writing the previous one; at most one built batch waits for the writer. A
message received on an earlier connection is written but never acknowledged (its packet id may now
name another message); the broker re-sends it. A failed write stops the writer before it acknowledges
anything more, and the worker exits.
"""
from __future__ import annotations

import contextlib
import logging
import os
import queue
import random
import signal
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import paho.mqtt.client as mqtt

from meters.errors import MetersError
from meters.lake import Lake
from meters.logs import setup_logging
from meters.mqtt import SHARE_GROUP, TOPIC_FILTER, BrokerURL, ProtocolError, make_client, read_varint

from . import sessions
from .batch import Batch, BufferPool
from .decode import Limits, decode_message, internal_error, sender_of, single_reading

log = logging.getLogger("meters.ingest")
_PUBACK = struct.Struct("!BBH")
_paho_clock = getattr(mqtt, "time_func", time.monotonic)  # paho's clock of the last bytes received

DEFAULT_CLIENT_ID = "meters-ingest"
SESSION_EXPIRY_S = 7 * 86400
# arrival-order files: zstd level 1 and no dictionaries on the numeric columns (8M rows/s, 2.2 B/row
# measured; dictionary attempts on 500k distinct registers cost 30 % and are dropped anyway)
IDLE_FLUSH_S = 0.05  # default: a batch is also flushed when no message came for this long
BACKOFF_FIRST_S, BACKOFF_MAX_S = 0.5, 30.0  # reconnect back-off while the broker cannot be reached
RAW_PARQUET = dict(compression="zstd", compression_level=1, use_dictionary=["sender", "quality"])
# readings are found by meter and time: statistics on those two columns only (the others cost time
# on every page and no reader prunes by them)
STATS = {"readings": ["meter_id", "ts"], "heat_readings": ["meter_id", "ts"]}


@dataclass
class Counters:
    """What the service did; exposed as Prometheus metrics ``meters_ingest_<name>``."""

    received: int = 0          # messages received (including redeliveries)
    readings: int = 0          # valid readings decoded
    written: int = 0           # readings written to fsynced files
    deadlettered: int = 0      # dead-letter rows written
    acked: int = 0             # messages acknowledged
    not_acked: int = 0         # messages written but left for redelivery (received before a reconnect)
    files: int = 0             # Parquet files written
    flushes: int = 0
    connects: int = 0
    connect_failures: int = 0  # attempts that did not reach the broker (it is retried with back-off)
    connected: int = 0         # 1 while connected to the broker
    stale_sessions: int = 0    # share-group sessions that no worker runs (ingest.sessions), at start
    lag_seconds: float = 0.0   # age of the oldest message not yet acknowledged
    elapsed_seconds: float = 0.0
    worker: str = ""
    errors: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}

    def prometheus(self) -> str:
        """The counters in Prometheus text format (HELP and TYPE lines, units in the names)."""
        lines = []
        for field_name, metric, kind, text in METRICS:
            lines.append(f"# HELP {metric} {text}")
            lines.append(f"# TYPE {metric} {kind}")
            lines.append(f'{metric}{{worker="{self.worker}"}} {getattr(self, field_name)}')
        return "\n".join(lines) + "\n"


# counter field -> Prometheus metric (docs/ingest.md)
METRICS = [
    ("received", "meters_ingest_messages_received_total", "counter", "MQTT messages received (with redeliveries)."),
    ("readings", "meters_ingest_readings_decoded_total", "counter", "Valid readings decoded from the messages."),
    ("written", "meters_ingest_readings_written_total", "counter", "Readings written to fsynced lake files."),
    ("deadlettered", "meters_ingest_deadletters_written_total", "counter", "Dead-letter rows written."),
    ("acked", "meters_ingest_messages_acked_total", "counter", "Messages acknowledged after their fsync."),
    ("not_acked", "meters_ingest_messages_not_acked_total", "counter",
     "Messages written but left for redelivery (received before a reconnect)."),
    ("files", "meters_ingest_files_written_total", "counter", "Parquet files written."),
    ("flushes", "meters_ingest_flushes_total", "counter", "Batches flushed."),
    ("connects", "meters_ingest_connects_total", "counter", "Successful connections to the broker."),
    ("connect_failures", "meters_ingest_connect_failures_total", "counter",
     "Connection attempts that did not reach the broker (retried with back-off)."),
    ("connected", "meters_ingest_connected", "gauge", "1 while connected to the broker, else 0."),
    ("lag_seconds", "meters_ingest_lag_seconds", "gauge", "Age of the oldest message not yet acknowledged."),
    ("stale_sessions", "meters_ingest_stale_sessions", "gauge",
     "Sessions of the share group that no worker runs (they hold a share of new messages)."),
]


def serve_metrics(counters: Counters, port: int, bind: str = "127.0.0.1") -> ThreadingHTTPServer:
    """Prometheus text on http://bind:port/metrics (stdlib HTTP server in a daemon thread)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server API
            body = counters.prometheus().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    try:
        server = ThreadingHTTPServer((bind, port), Handler)
    except OSError as e:
        raise MetersError(f"cannot serve metrics on {bind}:{port}: {e.strerror}") from None
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server


def _buffered_recv(client: mqtt.Client, chunk: int = 1 << 16):
    """paho reads each packet with three or more ``recv`` calls (its first byte, its length, the
    rest): this reads up to ``chunk`` bytes at once and serves paho's reads from them. Returns the
    ``_sock_recv`` replacement, ``pending()``: bytes of the current connection not yet handed to
    paho (they are invisible to ``select``, so the reader must not wait for the socket while any
    remain), and ``take(limit, v5)``: the complete PUBLISH packets at the head of those bytes
    (:func:`split_publishes`, the buffer refilled first when it is empty), consumed. A new
    connection drops what the old one left."""
    recv = client._sock_recv  # paho's own: TLS "want read/write" become BlockingIOError
    state = {"sock": None, "buf": b"", "pos": 0}

    def sock_recv(bufsize: int) -> bytes:
        if state["sock"] is not client._sock:
            state.update(sock=client._sock, buf=b"", pos=0)
        buf, pos = state["buf"], state["pos"]
        if pos >= len(buf):
            buf, pos = recv(max(chunk, bufsize)), 0  # BlockingIOError when the socket holds nothing
            if not buf:
                return buf  # the connection is closed
        out = buf[pos:pos + bufsize]
        state["buf"], state["pos"] = buf, pos + len(out)
        return out

    def pending() -> bool:
        return state["sock"] is client._sock and state["pos"] < len(state["buf"])

    def take(limit: int, v5: bool) -> list[tuple[bytes, int, int, bytes]]:
        if not pending():
            try:
                data = recv(chunk)
            except OSError:  # BlockingIOError included: paho's own read reports it
                return []
            if not data:  # closed: paho's own read finds it out
                return []
            state.update(sock=client._sock, buf=data, pos=0)
        got, state["pos"] = split_publishes(state["buf"], state["pos"], v5, limit)
        return got
    return sock_recv, pending, take


def split_publishes(buf: bytes, pos: int, v5: bool, limit: int) -> tuple[list[tuple[bytes, int, int, bytes]], int]:
    """The complete QoS 0/1 PUBLISH packets from ``buf[pos:]`` (at most ``limit``), as ``(topic
    bytes, packet id, qos, payload)``, and the position after them. Stops at anything else (another
    packet type, QoS 2, a packet not complete yet, an empty topic, a malformed length): paho's own
    reader takes that one."""
    out = []
    end_buf = len(buf)
    while pos < end_buf and len(out) < limit:
        first = buf[pos]
        qos = (first >> 1) & 3
        if first >> 4 != 3 or qos >= 2:
            break
        try:
            head = read_varint(buf, pos + 1)
        except ProtocolError:
            break
        if head is None:
            break
        length, i = head
        end = i + length
        topic_len = int.from_bytes(buf[i:i + 2], "big")
        j = i + 2 + topic_len
        if end > end_buf or topic_len == 0 or j > end:
            break
        mid = 0
        if qos:
            mid, j = int.from_bytes(buf[j:j + 2], "big"), j + 2
        if v5:  # skip the properties (ingest reads none; a topic alias would have an empty topic)
            try:
                props = read_varint(buf, j, end)
            except ProtocolError:
                break
            if props is None:
                break
            j = props[1] + props[0]
        if j > end:
            break
        out.append((buf[i + 2:i + 2 + topic_len], mid, qos, buf[j:end]))
        pos = end
    return out, pos


def _read_until_empty(client: mqtt.Client, max_packets: int = 1000, pending=lambda: False,
                      take=None, on_publishes=None):
    """paho's ``loop_read`` reads one incoming packet per ``select`` when no QoS 2 is in flight;
    at thousands of small messages per second the ``select`` calls cost as much as the decoding.
    This reads what the socket holds (up to ``max_packets``, and then on while ``pending()``: bytes
    already read from the socket) before returning to ``select``. With ``take`` and
    ``on_publishes``, the complete PUBLISH packets buffered between two of paho's packets go to
    ``on_publishes(packets)`` in one call, bypassing paho's per-message objects (its ``on_message``
    is not called for them); paho reads every other packet.
    Uses paho 2.x internals; :func:`fast_read` falls back to paho's own method without them."""
    v5 = getattr(client, "_protocol", None) == mqtt.MQTTv5

    def loop_read(max_packets_ignored: int = 1) -> mqtt.MQTTErrorCode:
        if client._sock is None:
            return mqtt.MQTTErrorCode.MQTT_ERR_NO_CONN
        k = 0
        while k < max_packets or pending():
            if client._sock is None:
                return mqtt.MQTTErrorCode.MQTT_ERR_NO_CONN
            if on_publishes is not None and client._in_packet["command"] == 0:
                got = take(max_packets, v5)
                if got:
                    k += len(got)
                    client._last_bytes_received = _paho_clock()
                    on_publishes(got)
                    continue
            k += 1
            rc = client._packet_read()
            if rc > 0:
                return client._loop_rc_handle(rc)
            if rc == mqtt.MQTTErrorCode.MQTT_ERR_AGAIN:
                break
        return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS
    return loop_read


def fast_read(client: mqtt.Client, on_publishes=None) -> bool:
    """Install :func:`_buffered_recv` and :func:`_read_until_empty` on ``client`` when this paho
    has the internals they need (with ``on_publishes``, PUBLISH packets go to it in bulk)."""
    needed = ("_sock", "_sock_recv", "_packet_read", "_loop_rc_handle", "_in_packet", "_protocol")
    if all(hasattr(client, a) for a in needed):
        client._sock_recv, pending, take = _buffered_recv(client)
        client.loop_read = _read_until_empty(client, pending=pending, take=take, on_publishes=on_publishes)
        return True
    return False


def send_acks(client: mqtt.Client, acks: list[tuple[int, int]]) -> None:
    """Acknowledge ``(mid, qos)`` messages. The QoS 1 ones go as one queued packet holding every
    PUBACK (the bytes paho's ``ack`` writes, ``40 02 <mid>``): one wake-up of paho's network thread
    and one socket write, not one of each per message. Uses paho 2.x internals; without them, and for
    QoS 2, paho's ``ack``."""
    ones = [mid for mid, qos in acks if qos == 1]
    if ones and getattr(client, "_manual_ack", False) and hasattr(client, "_packet_queue"):
        client._packet_queue(0x40, b"".join([_PUBACK.pack(0x40, 2, mid) for mid in ones]), 0, 0)
        acks = [a for a in acks if a[1] != 1]
    for mid, qos in acks:
        client.ack(mid, qos)


def _file_token(worker: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in worker)
    return f"{safe}-{time.time_ns() // 1_000_000:x}{os.getpid():x}"


_WATCHED: dict[threading.Thread, "Ingest"] = {}
_previous_hook = None


def _thread_died(args) -> None:
    """``threading.excepthook``: the exception that ends a watched network thread is kept for the
    watchdog's one-line error (no traceback); other threads go to the previous hook."""
    ing = _WATCHED.pop(args.thread, None) if args.thread is not None else None
    if ing is None:
        return _previous_hook(args)
    ing.network_error = f"{args.exc_type.__name__}: {args.exc_value}"[:500]


def _watch_thread(thread: threading.Thread, ing: "Ingest") -> None:
    global _previous_hook
    if threading.excepthook is not _thread_died:
        _previous_hook, threading.excepthook = threading.excepthook, _thread_died
    _WATCHED[thread] = ing


class Ingest:
    """One ingest worker (one MQTT session). Use :func:`run_ingest`."""

    def __init__(self, url: BrokerURL, lake: Lake, *, client_id: str, batch_rows: int,
                 flush_seconds: float, receive_maximum: int, limits: Limits,
                 session_expiry: int = SESSION_EXPIRY_S, drain: bool = False,
                 idle_flush: float = IDLE_FLUSH_S, shared: bool = False):
        self.url, self.lake, self.client_id = url, lake, client_id
        self.batch_rows, self.flush_seconds = batch_rows, flush_seconds
        self.receive_maximum, self.limits = receive_maximum, limits
        self.drain, self.idle_flush = drain, idle_flush
        self.counters = Counters(worker=client_id)
        self.token = _file_token(client_id)
        self.seq = 0
        self.lock = threading.Lock()          # guards batch and generation
        # day buffers of written batches, reused; twice the batch size: the network thread goes on adding
        # until the flush loop cuts a full batch
        self.pool = BufferPool(2 * min(batch_rows, 1 << 21) + 1024)
        self.batch = Batch(tz=lake.tz, pool=self.pool)
        self.generation = 0                   # +1 on every connect / disconnect
        self.wake = threading.Event()
        self.stop = threading.Event()
        self.connected = threading.Event()
        self.connect_error: str | None = None
        self.subscribe_error: str | None = None
        self.last_message = time.monotonic()
        self.network: threading.Thread | None = None
        self.network_error = ""  # the exception that ended the network thread, if one did
        self.built: queue.Queue = queue.Queue(maxsize=1)   # built batches waiting for the writer
        self.in_flight = 0                    # messages handed to the writer, not yet acknowledged
        self.writer: threading.Thread | None = None
        self.write_error: str | None = None   # set by the writer: nothing after it is acknowledged
        self.session_ended = False            # drained: the broker deleted the session
        v5 = url.version == "5"
        if shared and not v5:
            raise MetersError("a shared subscription needs MQTT 5 (remove ?version=3.1.1)")
        shared_topic = f"$share/{SHARE_GROUP}/{TOPIC_FILTER}"
        self.topic = shared_topic if shared else TOPIC_FILTER
        # the other form, left from an earlier run with another worker count (MQTT 5 only: a 3.1.1
        # broker need not know $share)
        self.stale_topics = [TOPIC_FILTER if shared else shared_topic] if v5 else []
        self.client, self.connect_kwargs = make_client(url, client_id, clean_start=False,
                                                       session_expiry=session_expiry if v5 else None)
        if v5:
            self.connect_kwargs["properties"].ReceiveMaximum = receive_maximum
        self.client.manual_ack_set(True)
        fast_read(self.client, self._on_publishes)
        self.client.reconnect_delay_set(0.1, 2)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe

    # -- paho callbacks (network thread) ---------------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            self.connect_error = str(reason_code)
            self.connected.set()
            return
        with self.lock:
            self.generation += 1
        self.counters.connects += 1
        self.counters.connected = 1
        if self.drain:  # scale down: take only what is already queued for this session
            client.unsubscribe([self.topic, *self.stale_topics])
        else:
            client.subscribe(self.topic, qos=1)
            if self.stale_topics:
                client.unsubscribe(self.stale_topics)
        log.info("%s connected to %s (session present: %s), %s %s", self.client_id,
                 self.url.redacted(), flags.session_present,
                 "draining, unsubscribed from" if self.drain else "subscribed to", self.topic,
                 extra={"worker": self.client_id, "event": "connected"})
        self.connected.set()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        refused = [str(rc) for rc in reason_codes if rc.is_failure]
        if refused:  # e.g. a sender's credentials: waiting would only idle
            self.subscribe_error = (f"broker {self.url.redacted()} refused the subscription to {self.topic} "
                                    f"({', '.join(refused)}); use the broker's ingest role")
            self.stop.set()
            self.wake.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        with self.lock:
            self.generation += 1
        self.counters.connected = 0
        if not self.stop.is_set():
            log.warning("%s disconnected (%s); reconnecting", self.client_id, reason_code,
                        extra={"worker": self.client_id, "event": "disconnected"})

    def _on_message(self, client, userdata, msg):
        """Nothing raises out of here (an exception would end paho's network thread): a message that
        fails unexpectedly is dead-lettered with reason ``internal``."""
        now = time.time()
        try:
            topic = msg.topic
        except UnicodeDecodeError:  # paho decodes the topic bytes strictly
            topic = msg._topic.decode("utf-8", "replace")
        decoded = decode_message(topic, msg.payload, int(now), self.limits)
        with self.lock:
            self._add_decoded(topic, msg.payload, msg.mid, msg.qos, decoded, now)
            full = self._full()
        self.counters.received += 1
        self.last_message = time.monotonic()
        if full:
            self.wake.set()

    def _on_publishes(self, packets: list[tuple[bytes, int, int, bytes]]) -> None:
        """PUBLISH packets read in bulk (:func:`split_publishes`), decoded before the lock is taken:
        the runs of messages of one valid JSON reading each (:func:`single_reading`) enter the batch
        in one step, every other message as :meth:`_on_message` adds it; arrival order is kept.
        Nothing raises out of here."""
        now = time.time()
        now_s = int(now)
        # in arrival order: a run (a list) of one-reading messages (topic, payload, mid, qos, sender, row),
        # or another message (topic, payload, mid, qos, Decoded)
        items, run = [], None
        for topic_bytes, mid, qos, payload in packets:
            try:
                topic = topic_bytes.decode("utf-8")
            except UnicodeDecodeError:  # as paho's msg.topic would refuse it (see _on_message)
                topic = topic_bytes.decode("utf-8", "replace")
            sender = sender_of(topic)
            row = single_reading(payload, now_s, self.limits) if sender is not None else None
            if row is None:
                items.append((topic, payload, mid, qos, decode_message(topic, payload, now_s, self.limits)))
                run = None
            else:
                if run is None:
                    run = []
                    items.append(run)
                run.append((topic, payload, mid, qos, sender, row))
        with self.lock:
            for item in items:
                if type(item) is list:
                    self._add_run(item, now)
                else:
                    self._add_decoded(*item, now)
            full = self._full()
        self.counters.received += len(packets)
        self.last_message = time.monotonic()
        if full:
            self.wake.set()

    def _add_run(self, run: list, now: float) -> None:
        """Messages of one valid reading each into the batch at once (should that fail, one by one
        as :meth:`_on_message` adds them). Under the lock."""
        gen = self.generation
        try:
            self.batch.add_readings([r[5] for r in run], [r[4] for r in run], int(now * 1000),
                                    [(r[2], r[3], gen) if r[3] > 0 else None for r in run], time.monotonic())
        except Exception:  # the batch is unchanged (Batch.add_readings)
            for topic, payload, mid, qos, _sender, _row in run:
                self._add_decoded(topic, payload, mid, qos, decode_message(topic, payload, int(now), self.limits), now)
            return
        self.counters.readings += len(run)

    def _add_decoded(self, topic: str, payload: bytes, mid: int, qos: int, decoded, now: float) -> None:
        """One decoded message into the batch (should that fail, dead-lettered ``internal``). Under the lock."""
        ack = (mid, qos, self.generation) if qos > 0 else None
        received_ms = int(now * 1000)
        try:
            self.batch.add(decoded, topic, sender_of(topic), received_ms, ack, time.monotonic())
        except Exception as e:  # the batch is unchanged (Batch.add)
            decoded = internal_error(payload, e, "batching")
            self.batch.add(decoded, topic, None, received_ms, ack, time.monotonic())
        self.counters.readings += decoded.n

    # -- flushing (caller's thread) --------------------------------------------------------------
    def _next_name(self) -> str:
        self.seq += 1
        return f"part-{self.token}-{self.seq:08d}.parquet"

    def _full(self) -> bool:
        """The current batch is due now: ``batch_rows`` readings, or the broker's window of
        ``receive_maximum`` unacknowledged messages is full (this batch's and the writer's). Under the lock."""
        return (self.batch.rows >= self.batch_rows
                or len(self.batch.acks) + self.in_flight >= self.receive_maximum)

    def flush(self) -> None:
        """Cut the current batch, build its tables and hand them to the writer (which writes,
        fsyncs, then acknowledges). Waits while the writer still has an earlier built batch waiting."""
        with self.lock:
            batch, self.batch = self.batch, Batch(tz=self.lake.tz, pool=self.pool)
            self.in_flight += len(batch.acks)
        if batch.messages == 0:
            return
        tz = self.lake.tz
        files = [("readings", day, t, "written") for day, t in batch.readings_by_day(tz)]
        files += [("heat_readings", day, t, None) for day, t in batch.heat_by_day()]
        files += [("deadletter", day, t, "deadlettered") for day, t in batch.deadletters_by_day(tz)]
        self._check_writer()
        self.built.put((files, batch))

    def wait_written(self) -> None:
        """Wait until the writer has written and acknowledged every batch handed to it."""
        self.built.join()
        self._check_writer()

    def _check_writer(self) -> None:
        if self.write_error:
            raise MetersError(self.write_error)

    def _write_loop(self) -> None:
        """The writer thread: write + fsync a built batch's files, then acknowledge its messages."""
        while True:
            item = self.built.get()
            try:
                if item is None:
                    return
                if self.write_error is None:
                    self._write(*item)
            except BaseException as e:  # noqa: BLE001 - kept for the flush loop's one-line error
                self.write_error = (f"ingest {self.client_id} stopped: {type(e).__name__}: {e}"[:1000]
                                    if not isinstance(e, MetersError) else str(e))
                self.wake.set()
            finally:
                self.built.task_done()

    def _write(self, files: list, batch: Batch) -> None:
        acks = batch.acks
        try:
            for name, day, table, counter in files:
                self.lake.write(name, table, day, file_name=self._next_name(), **RAW_PARQUET,
                                write_statistics=STATS.get(name, True))
                if counter:
                    setattr(self.counters, counter, getattr(self.counters, counter) + table.num_rows)
                self.counters.files += 1
        except OSError as e:  # nothing of this batch (nor later ones) is acknowledged: the broker keeps it
            raise MetersError(f"cannot write to the lake {self.lake.root}: {e}; "
                              f"{len(acks)} unacknowledged messages stay with the broker") from None
        with self.lock:  # a reconnect cannot slip between the check and the ack
            gen = self.generation
            now = [(mid, qos) for mid, qos, g in acks if g == gen]
            send_acks(self.client, now)
            self.counters.acked += len(now)
            self.counters.not_acked += len(acks) - len(now)
            self.in_flight -= len(acks)
        self.counters.flushes += 1
        files.clear()       # the tables over the batch's buffers are gone: the buffers can be reused
        batch.release()

    def _watchdog(self) -> None:
        """Exit (non-zero) rather than idle when paho's network thread has died: nothing would be
        read, acknowledged or reconnected again. What this worker holds is not acknowledged, so the
        broker re-sends it to the next run."""
        self._check_writer()
        if self.network is not None and not self.network.is_alive() and not self.stop.is_set():
            raise MetersError(f"ingest {self.client_id}: the MQTT network thread died"
                              f"{': ' + self.network_error if self.network_error else ''}; exiting so that "
                              f"a supervisor restarts ingest ({len(self.batch.acks)} unacknowledged "
                              f"messages stay with the broker)")

    def _pending_age(self) -> float:
        first = self.batch.first_monotonic
        return 0.0 if first is None else time.monotonic() - first

    def _disconnect(self, end_session: bool) -> None:
        """Disconnect; with ``end_session`` the broker deletes the session (MQTT 5: session expiry 0
        on DISCONNECT; 3.1.1: a clean-session connect)."""
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        if end_session and self.url.version == "5":
            props = Properties(PacketTypes.DISCONNECT)
            props.SessionExpiryInterval = 0
            self.client.disconnect(properties=props)
        else:
            self.client.disconnect()
        self.client.loop_stop()
        if end_session and self.url.version != "5":
            client, kw = make_client(self.url, self.client_id, clean_start=True)
            with contextlib.suppress(OSError):
                if client.connect(**kw) == 0:
                    client.loop_start()
                    time.sleep(0.2)
                    client.disconnect()
                    client.loop_stop()
        if end_session:
            log.info("%s: session ended (drained)", self.client_id)

    def _connect(self, timeout: float | None) -> bool:
        """Connect, retrying with jittered exponential back-off (0.5 s doubling to 30 s) while the
        broker cannot be reached, for at most ``timeout`` seconds (None: until stopped). Logs when
        the broker becomes unreachable and when it is reached, not every attempt. False: stopped
        (SIGTERM) before the broker was reached."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = BACKOFF_FIRST_S
        while True:
            try:
                self.client.connect(**self.connect_kwargs)
                break
            except OSError as e:
                reason = e.strerror or str(e)
                self.counters.connect_failures += 1
                if deadline is not None and time.monotonic() >= deadline:
                    raise MetersError(f"cannot connect to broker {self.url.redacted()}: {reason}"
                                      + (f" (retried for {timeout:g} s)" if timeout else "")) from None
                if self.counters.connect_failures == 1:
                    log.warning("%s: broker %s not reachable (%s); retrying with back-off",
                                self.client_id, self.url.redacted(), reason,
                                extra={"worker": self.client_id, "event": "broker_unreachable"})
                wait = delay * random.uniform(0.5, 1.0)
                if deadline is not None:
                    wait = max(0.0, min(wait, deadline - time.monotonic()))
                if self.stop.wait(wait):
                    log.info("%s: stopped before the broker was reachable", self.client_id,
                             extra={"worker": self.client_id, "event": "stopped"})
                    return False
                delay = min(delay * 2, BACKOFF_MAX_S)
        if self.counters.connect_failures:
            log.info("%s: broker %s reachable after %d failed attempt(s)", self.client_id,
                     self.url.redacted(), self.counters.connect_failures,
                     extra={"worker": self.client_id, "event": "broker_reachable"})
        return True

    def run(self, until_idle: float | None = None, log_every: float = 10.0,
            connect_timeout: float | None = None) -> Counters:
        Batch.warm_up()
        t0 = time.monotonic()
        if not self._connect(connect_timeout):  # nothing received, nothing to flush
            self.counters.elapsed_seconds = round(time.monotonic() - t0, 3)
            return self.counters
        self.client.loop_start()
        self.network = getattr(self.client, "_thread", None)  # paho's network thread (paho 2.x)
        if self.network is not None:
            _watch_thread(self.network, self)
        self.writer = threading.Thread(target=self._write_loop, name=f"{self.client_id}-writer", daemon=True)
        self.writer.start()
        try:
            if not self.connected.wait(15):
                raise MetersError(f"broker {self.url.redacted()} did not answer CONNECT within 15 s")
            if self.connect_error:
                raise MetersError(f"broker {self.url.redacted()} refused the connection: {self.connect_error}")
            self.last_message = time.monotonic()
            idle_exit = False
            last_log, last_counts = time.monotonic(), (0, 0)
            while not self.stop.is_set():
                self.wake.wait(min(0.05, self.flush_seconds))
                self.wake.clear()
                self._watchdog()
                with self.lock:
                    age = self._pending_age()
                    quiet = time.monotonic() - self.last_message >= self.idle_flush
                    due = self._full() or (self.batch.messages and (age >= self.flush_seconds or quiet))
                if due:
                    self.flush()
                self.counters.lag_seconds = round(self._pending_age(), 3)
                now = time.monotonic()
                if now - last_log >= log_every:
                    if (self.counters.received, self.counters.written) != last_counts:  # idle: no line
                        rate = (self.counters.written - last_counts[1]) / (now - last_log)
                        log.info("%s: received %d msgs, written %d readings (%.0f/s), deadlettered %d, "
                                 "acked %d, lag %.2f s", self.client_id, self.counters.received,
                                 self.counters.written, rate, self.counters.deadlettered,
                                 self.counters.acked, self.counters.lag_seconds,
                                 extra={"worker": self.client_id, "event": "progress",
                                        "received": self.counters.received, "written": self.counters.written,
                                        "acked": self.counters.acked, "lag_seconds": self.counters.lag_seconds})
                    last_log, last_counts = now, (self.counters.received, self.counters.written)
                if until_idle is not None and now - self.last_message >= until_idle:
                    with self.lock:
                        idle = self.batch.messages == 0 and self.in_flight == 0
                    if idle:
                        idle_exit = True
                        break
            self.flush()  # SIGTERM / SIGINT / idle: write and acknowledge what we hold
            self.wait_written()
            if self.subscribe_error:
                raise MetersError(self.subscribe_error)
            # a drained session ends only when it went idle with everything acknowledged
            with self.lock:
                drained = self.drain and idle_exit and self.counters.not_acked == 0 and self.batch.messages == 0
        except BaseException:
            drained = False
            raise
        finally:
            self.stop.set()
            self.built.put(None)  # the writer finishes what it was handed (acknowledging only after fsync)
            self.writer.join()
            _WATCHED.pop(self.network, None)
            self._disconnect(end_session=drained)
            self.session_ended = drained
            self.counters.connected = 0
            self.counters.lag_seconds = 0.0 if self.batch.messages == 0 else self.counters.lag_seconds
            self.counters.elapsed_seconds = round(time.monotonic() - t0, 3)
        return self.counters


def run_ingest(url: BrokerURL, lake: Lake, *, client_id: str = f"{DEFAULT_CLIENT_ID}-0",
               batch_rows: int = 500_000, flush_seconds: float = 1.0, until_idle: float | None = None,
               receive_maximum: int = 1000, limits: Limits = Limits(), metrics_port: int | None = None,
               session_expiry: int = SESSION_EXPIRY_S, handle_signals: bool = True,
               stop_event: threading.Event | None = None, log_every: float = 10.0,
               drain: bool = False, idle_flush: float = IDLE_FLUSH_S, shared: bool = False,
               connect_timeout: float | None = None, metrics_bind: str = "127.0.0.1",
               stale_sessions: int = 0) -> dict:
    """Run one ingest worker until SIGTERM/SIGINT, ``stop_event``, or ``until_idle`` seconds without
    a message; returns its counters. Nothing received is lost: it is flushed and acknowledged first.
    ``shared``: join the share group of several workers instead of the plain subscription.

    A batch is flushed when it holds ``batch_rows`` readings or ``receive_maximum`` messages (the
    broker sends no more until they are acknowledged), ``flush_seconds`` after its first message, or
    when no message came for ``idle_flush`` seconds.

    ``drain`` (scaling down): unsubscribe, take only what the broker already queued for this session,
    write and acknowledge it, then end the session (default ``until_idle`` 2 s). A persistent session
    left behind in the share group would otherwise keep receiving its share of new messages.

    A broker that cannot be reached is retried with back-off for ``connect_timeout`` seconds (None:
    until stopped; a service started before its broker waits for it)."""
    if drain and until_idle is None:
        until_idle = 2.0
    if batch_rows < 1 or flush_seconds <= 0 or not 1 <= receive_maximum <= 65535:
        raise MetersError("--batch-rows must be >= 1, --flush-seconds > 0, --receive-maximum 1..65535")
    ing = Ingest(url, lake, client_id=client_id, batch_rows=batch_rows, flush_seconds=flush_seconds,
                 receive_maximum=receive_maximum, limits=limits, session_expiry=session_expiry,
                 drain=drain, idle_flush=idle_flush, shared=shared)
    ing.counters.stale_sessions = stale_sessions
    server = serve_metrics(ing.counters, metrics_port, metrics_bind) if metrics_port else None
    old = {}
    if handle_signals and threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            old[sig] = signal.signal(sig, lambda *_: (ing.stop.set(), ing.wake.set()))
    watcher = None
    if stop_event is not None:
        def watch():
            stop_event.wait()
            ing.stop.set()
            ing.wake.set()
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
    sessions.record(lake, client_id, shared=shared, running=True)
    try:
        return ing.run(until_idle, log_every, connect_timeout).as_dict()
    except MetersError:
        raise
    except Exception as e:  # the flush loop died: one line, exit non-zero; nothing unwritten was acknowledged
        raise MetersError(f"ingest {client_id} stopped: {type(e).__name__}: {e}"[:1000]) from e
    finally:
        sessions.record(lake, client_id, shared=shared, running=False, ended=ing.session_ended)
        for sig, handler in old.items():
            signal.signal(sig, handler)
        if server:
            server.shutdown()
            server.server_close()


def _worker_main(kwargs: dict, queue) -> None:
    """Entry point of one worker process of :func:`run_workers`."""
    setup_logging(kwargs.pop("log_level", logging.INFO), kwargs.pop("log_format", "text"))
    try:
        result = run_ingest(kwargs.pop("url"), Lake(kwargs.pop("lake_path")), **kwargs)
    except MetersError as e:
        result = {"errors": [str(e)], "worker": kwargs.get("client_id")}
    queue.put(result)


SUMMED = ("received", "readings", "written", "deadlettered", "acked", "not_acked", "files", "flushes",
          "connects", "connect_failures")


def uses_shared_subscription(n: int, first_worker: int = 0, shared: bool = False) -> bool:
    """Whether workers ``first_worker .. first_worker+n-1`` join the share group: several workers,
    a worker other than the first of a group, or ``shared`` asked for (one worker per host)."""
    return shared or n > 1 or first_worker > 0


def run_workers(n: int, url: BrokerURL, lake: Lake, *, client_id: str = DEFAULT_CLIENT_ID,
                metrics_port: int | None = None, first_worker: int = 0, shared: bool = False,
                log_format: str = "text", **kwargs) -> dict:
    """Run ``n`` worker processes (client ids ``<client_id>-<i>``, i from ``first_worker``), each
    writing its own files; returns summed counters plus ``workers`` (each worker's). One worker alone
    holds the plain subscription; see :func:`uses_shared_subscription`. SIGTERM / SIGINT are
    forwarded to every worker, which flushes and acknowledges before exiting."""
    import multiprocessing as mp

    if n < 1:
        raise MetersError("--workers must be >= 1")
    shared = uses_shared_subscription(n, first_worker, shared)
    if shared and url.version != "5":
        raise MetersError("--workers > 1 (and --shared, --first-worker > 0) need MQTT 5 shared "
                          "subscriptions (remove ?version=3.1.1)")
    kwargs["shared"] = shared
    if n == 1:
        out = run_ingest(url, lake, client_id=f"{client_id}-{first_worker}", metrics_port=metrics_port, **kwargs)
        out["workers"] = [dict(out)]
        return out
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = []
    for i in range(n):
        kw = dict(kwargs, url=url, lake_path=lake.url, client_id=f"{client_id}-{first_worker + i}",
                  metrics_port=metrics_port + i if metrics_port else None,
                  log_level=logging.getLogger().level or logging.INFO, log_format=log_format)
        p = ctx.Process(target=_worker_main, args=(kw, queue), name=f"ingest-{i}")
        p.start()
        procs.append(p)

    def forward(sig, frame):
        for p in procs:
            if p.is_alive():
                os.kill(p.pid, signal.SIGTERM)

    old = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            old[sig] = signal.signal(sig, forward)
    results = []
    try:
        while len(results) < n:
            try:
                results.append(queue.get(timeout=0.5))
            except Exception:  # queue.Empty: check the workers are alive
                if not any(p.is_alive() for p in procs) and queue.empty():
                    break
        for p in procs:
            p.join()
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    out = {k: sum(r.get(k, 0) for r in results) for k in SUMMED}
    out["elapsed_seconds"] = max((r.get("elapsed_seconds", 0) for r in results), default=0)
    out["errors"] = [e for r in results for e in r.get("errors", [])]
    missing = n - len(results)
    if missing:
        out["errors"].append(f"{missing} worker(s) exited without a result")
    out["workers"] = results
    return out
