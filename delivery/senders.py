"""The delivery targets: a webhook (HTTP POST, Standard Webhooks signed, httpx), the MQTT broker
(QoS 1 to ``meters/v1/alerts/<channel>``, PUBACK = delivered) and apprise URLs. Each returns an
:class:`~delivery.retry.Outcome`."""
from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time

import httpx

from meters import webhooks
from meters.mqtt import BrokerURL, make_client
from meters.outbox import Target

from .retry import Outcome, Policy, http_outcome, transient

ALERTS_TOPIC = "meters/v1/alerts/{channel}"


def alerts_topic(channel: str) -> str:
    return ALERTS_TOPIC.format(channel=channel)


async def webhook(client: httpx.AsyncClient, target: Target, row: dict, body: bytes, policy: Policy) -> Outcome:
    """POST ``body`` to the channel's webhook, signed; the alert id is the idempotency key."""
    headers = {"content-type": "application/json",
               **webhooks.headers(target.webhook_secret, row["alert_id"], int(time.time()), body)}
    try:
        r = await client.post(target.webhook_url, content=body, headers=headers)
    except httpx.TimeoutException:
        return transient("timed out", row["attempts"], row["queued_at"], _now(), policy)
    except httpx.HTTPError as e:
        return transient(f"{type(e).__name__}: {e}"[:300] or type(e).__name__, row["attempts"], row["queued_at"],
                         _now(), policy)
    reason = r.reason_phrase
    if 400 <= r.status_code < 600 and r.text:
        reason = f"{reason}: {r.text.strip()[:200]}"
    return http_outcome(r.status_code, reason, r.headers, row["attempts"], row["queued_at"], _now(), policy)


class Mqtt:
    """One connection to the broker publishing alerts at QoS 1; :meth:`publish` returns when the
    broker acknowledged (PUBACK)."""

    def __init__(self, url: BrokerURL, client_id: str = "meters-notify", timeout_s: float = 30.0):
        self.timeout_s = timeout_s
        self._loop = asyncio.get_running_loop()
        self._pending: dict[int, asyncio.Future] = {}
        self._early: dict[int, str | None] = {}
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self.client, kwargs = make_client(url, client_id)
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.client.on_publish = self._on_publish
        self.client.on_connect = lambda c, u, f, rc, p=None: self._connected.set() if not rc.is_failure else None
        self.client.connect(**kwargs)
        self.client.loop_start()

    def _on_publish(self, client, userdata, mid, reason_code=None, properties=None):
        failed = reason_code is not None and getattr(reason_code, "is_failure", False)
        error = str(reason_code) if failed else None
        with self._lock:
            fut = self._pending.pop(mid, None)
            if fut is None:              # acknowledged before publish() returned its mid
                self._early[mid] = error
                return
        self._loop.call_soon_threadsafe(_settle, fut, error)

    async def publish(self, channel: str, body: bytes, row: dict, policy: Policy) -> Outcome:
        if not await asyncio.to_thread(self._connected.wait, self.timeout_s):
            return transient("MQTT broker not connected", row["attempts"], row["queued_at"], _now(), policy)
        fut = self._loop.create_future()
        # never hold our lock across publish(): paho calls on_publish under its own message lock
        info = self.client.publish(alerts_topic(channel), body, qos=1)
        if info.rc != 0:
            return transient(f"MQTT publish refused (rc {info.rc})", row["attempts"], row["queued_at"], _now(), policy)
        with self._lock:
            if info.mid in self._early:
                fut.set_result(self._early.pop(info.mid))
            else:
                self._pending[info.mid] = fut
        try:
            error = await asyncio.wait_for(fut, self.timeout_s)
        except asyncio.TimeoutError:
            with self._lock:
                self._pending.pop(info.mid, None)
            error = "no PUBACK in time"
        if error:
            return transient(f"MQTT: {error}", row["attempts"], row["queued_at"], _now(), policy)
        return Outcome("sent")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _settle(fut: asyncio.Future, error: str | None) -> None:
    if not fut.done():
        fut.set_result(error)


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
