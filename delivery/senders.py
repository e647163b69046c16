"""The delivery targets: a webhook (HTTP POST, Standard Webhooks signed, :mod:`delivery.http`), the MQTT broker
(QoS 1 to ``meters/v1/alerts/<channel>``, PUBACK = delivered) and apprise URLs. Each returns an
:class:`~delivery.retry.Outcome`."""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time

from meters import webhooks
from meters.mqtt import BrokerURL, make_client
from meters.outbox import Target

from . import http
from .retry import Outcome, Policy, http_outcome, transient

ALERTS_TOPIC = "meters/v1/alerts/{channel}"


def alerts_topic(channel: str) -> str:
    return ALERTS_TOPIC.format(channel=channel)


async def webhook(client: http.Client, target: Target, row: dict, body: bytes, policy: Policy) -> Outcome:
    """POST ``body`` to the channel's webhook, signed; the alert id is the idempotency key."""
    headers = {"content-type": "application/json",
               **webhooks.headers(target.webhook_secret, row["alert_id"], int(time.time()), body)}
    try:
        r = await client.post(target.webhook_url, body, headers)
    except TimeoutError:
        return transient("timed out", row["attempts"], row["queued_at"], _now(), policy)
    except http.HttpError as e:
        return transient(str(e)[:300], row["attempts"], row["queued_at"], _now(), policy)
    reason = r.reason
    if 400 <= r.status < 600 and r.body:
        reason = f"{reason}: {r.text.strip()[:200]}"
    return http_outcome(r.status, reason, r.headers, row["attempts"], row["queued_at"], _now(), policy)


class Mqtt:
    """One connection to the broker publishing alerts at QoS 1; :meth:`publish` returns when the
    broker acknowledged (PUBACK). paho runs on the dispatcher's event loop (its socket watched by
    the loop, no network thread: a thread handing every PUBACK over costs ≈ 8 times the CPU per
    message), with up to ``max_inflight`` publishes awaiting their PUBACK (0: as many as the
    dispatcher has in flight; paho scans every message in flight on each PUBACK otherwise); a lost connection is
    re-established every second until it is back (unacknowledged deliveries time out and are
    retried)."""

    def __init__(self, url: BrokerURL, client_id: str = "meters-notify", timeout_s: float = 30.0,
                 max_inflight: int = 0):
        self.timeout_s = timeout_s
        self._loop = asyncio.get_running_loop()
        self._pending: dict[int, tuple[asyncio.Future, float]] = {}   # mid -> (PUBACK, deadline), oldest first
        self._connected = asyncio.Event()
        self.client, kwargs = make_client(url, client_id)
        c = self.client
        c.max_inflight_messages_set(max_inflight)      # 0: no limit in paho (and no O(in flight) scan per PUBACK)
        c.max_queued_messages_set(0)
        c.on_publish = self._on_publish
        c.on_connect = lambda cl, u, f, rc, p=None: self._connected.set() if not rc.is_failure else None
        c.on_disconnect = lambda *a: self._connected.clear()
        c.on_socket_open = lambda cl, u, sock: self._loop.add_reader(sock, cl.loop_read)
        c.on_socket_close = lambda cl, u, sock: self._loop.remove_reader(sock)
        c.on_socket_register_write = lambda cl, u, sock: self._loop.add_writer(sock, cl.loop_write)
        c.on_socket_unregister_write = lambda cl, u, sock: self._loop.remove_writer(sock)
        try:
            c.connect(**kwargs)
        except OSError:
            pass                         # not reachable now: the housekeeping task tries again
        self._misc = asyncio.create_task(self._housekeeping())

    async def _housekeeping(self) -> None:
        """Every second keep-alive pings and reconnecting; every tenth of ``timeout_s`` the publishes
        without a PUBACK in time given up (one timer for all, not one per message)."""
        tick = min(1.0, self.timeout_s / 10)
        last = self._loop.time()
        while True:
            await asyncio.sleep(tick)
            now = self._loop.time()
            late = []
            for mid, (fut, deadline) in self._pending.items():
                if deadline > now:
                    break
                late.append(mid)
            for mid in late:
                fut, _ = self._pending.pop(mid)
                if not fut.done():
                    fut.set_result("no PUBACK in time")
            if now - last >= 1.0:
                last = now
                if self.client.loop_misc() != 0 and not self._connected.is_set():   # keep-alive pings; reconnect
                    with contextlib.suppress(OSError):
                        self.client.reconnect()

    def _on_publish(self, client, userdata, mid, reason_code=None, properties=None):
        fut = self._pending.pop(mid, (None,))[0]
        if fut is not None and not fut.done():    # None: given up waiting (no PUBACK in time)
            failed = reason_code is not None and getattr(reason_code, "is_failure", False)
            fut.set_result(str(reason_code) if failed else None)

    async def publish(self, channel: str, body: bytes, row: dict, policy: Policy) -> Outcome:
        if not self._connected.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.timeout_s):
                    await self._connected.wait()
            if not self._connected.is_set():
                return transient("MQTT broker not connected", row["attempts"], row["queued_at"], _now(), policy)
        fut = self._loop.create_future()
        info = self.client.publish(alerts_topic(channel), body, qos=1)
        if info.rc != 0:
            return transient(f"MQTT publish refused (rc {info.rc})", row["attempts"], row["queued_at"], _now(), policy)
        if info.is_published():           # acknowledged already (in publish itself)
            return Outcome("sent")
        self._pending[info.mid] = (fut, self._loop.time() + self.timeout_s)
        try:
            error = await fut              # None: PUBACK; else why not (given up by _housekeeping)
        except asyncio.CancelledError:
            self._pending.pop(info.mid, None)
            raise
        if error:
            return transient(f"MQTT: {error}", row["attempts"], row["queued_at"], _now(), policy)
        return Outcome("sent")

    def close(self) -> None:
        self._misc.cancel()
        self.client.disconnect()
        with contextlib.suppress(Exception):
            self.client.loop_write()      # the DISCONNECT packet out before the socket closes


async def apprise(target: Target, text: str, row: dict, policy: Policy) -> Outcome:
    """Notify through the channel's apprise URL (the recipient's address is not used: apprise URLs
    name their destination); apprise is optional."""
    try:
        import apprise as apprise_lib
    except ImportError:
        return Outcome("dead", "apprise is not installed (pip install apprise)")
    ap = apprise_lib.Apprise()
    if not ap.add(target.apprise_url):
        return Outcome("dead", f"apprise cannot use URL {target.apprise_url!r}")
    ok = await asyncio.to_thread(ap.notify, body=text, title=f"meters: {row['kind']}")
    return Outcome("sent") if ok else transient("apprise: the service did not accept the message",
                                                row["attempts"], row["queued_at"], _now(), policy)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)
