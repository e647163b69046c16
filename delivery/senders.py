"""The delivery targets: a webhook (HTTP POST, Standard Webhooks signed, :mod:`delivery.http`), the MQTT broker
(QoS 1 to ``meters/v1/alerts/<channel>``, PUBACK = delivered) and apprise URLs. Each returns an
:class:`~delivery.retry.Outcome`."""
from __future__ import annotations

import asyncio
import datetime as dt
import threading
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
    broker acknowledged (PUBACK). Up to ``max_inflight`` publishes await their PUBACK at once; the
    network thread hands acknowledgements to the event loop in bulk (one wake-up for all that
    arrived together, not one per message)."""

    def __init__(self, url: BrokerURL, client_id: str = "meters-notify", timeout_s: float = 30.0,
                 max_inflight: int = 20_000):
        self.timeout_s = timeout_s
        self._loop = asyncio.get_running_loop()
        self._pending: dict[int, asyncio.Future] = {}
        self._acks: list[tuple[int, str | None]] = []
        self._woken = False
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self.client, kwargs = make_client(url, client_id)
        self.client.max_inflight_messages_set(max_inflight)
        self.client.max_queued_messages_set(0)
        self.client.on_publish = self._on_publish
        self.client.on_connect = lambda c, u, f, rc, p=None: self._connected.set() if not rc.is_failure else None
        self.client.connect(**kwargs)
        self.client.loop_start()

    def _on_publish(self, client, userdata, mid, reason_code=None, properties=None):
        failed = reason_code is not None and getattr(reason_code, "is_failure", False)
        with self._lock:
            self._acks.append((mid, str(reason_code) if failed else None))
            if self._woken:
                return
            self._woken = True
        self._loop.call_soon_threadsafe(self._settle)

    def _settle(self) -> None:
        """Resolve every acknowledgement that arrived (in the event loop)."""
        with self._lock:
            acks, self._acks, self._woken = self._acks, [], False
        for mid, error in acks:   # publish() registers its mid before the loop can run this
            fut = self._pending.pop(mid, None)
            if fut is not None and not fut.done():   # None: given up waiting (no PUBACK in time)
                fut.set_result(error)

    async def publish(self, channel: str, body: bytes, row: dict, policy: Policy) -> Outcome:
        if not self._connected.is_set() and not await asyncio.to_thread(self._connected.wait, self.timeout_s):
            return transient("MQTT broker not connected", row["attempts"], row["queued_at"], _now(), policy)
        fut = self._loop.create_future()
        info = self.client.publish(alerts_topic(channel), body, qos=1)
        if info.rc != 0:
            return transient(f"MQTT publish refused (rc {info.rc})", row["attempts"], row["queued_at"], _now(), policy)
        self._pending[info.mid] = fut
        try:
            async with asyncio.timeout(self.timeout_s):
                error = await fut
        except TimeoutError:
            self._pending.pop(info.mid, None)
            error = "no PUBACK in time"
        if error:
            return transient(f"MQTT: {error}", row["attempts"], row["queued_at"], _now(), policy)
        return Outcome("sent")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


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
