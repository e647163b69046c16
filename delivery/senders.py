"""The delivery targets: a webhook (HTTP POST, Standard Webhooks signed, :mod:`delivery.http`), the MQTT broker
(QoS 1 to ``meters/v1/alerts/<channel>``, PUBACK = delivered) and apprise URLs. Each returns an
:class:`~delivery.retry.Outcome`."""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time

from meters import webhooks
from meters.mqtt import BrokerURL
from meters.mqtt_publisher import Publisher
from meters.outbox import Target

from . import http
from .retry import Outcome, Policy, http_outcome, transient

ALERTS_TOPIC = "meters/v1/alerts/{channel}"
SENT = Outcome("sent")


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
    """One connection to the broker publishing alerts at QoS 1 (:class:`meters.mqtt_publisher.Publisher`
    on the dispatcher's event loop: the packets of a loop turn in one socket write, the PUBACKs of a
    read handled together); :meth:`publish` returns when the broker acknowledged (PUBACK). A lost
    connection is re-established every second until it is back (the deliveries awaiting their
    PUBACK are sent again; one without a PUBACK within ``timeout_s`` is retried later)."""

    def __init__(self, url: BrokerURL, client_id: str = "meters-notify", timeout_s: float = 30.0):
        self.timeout_s = timeout_s
        self.publisher = Publisher(url, client_id, timeout_s=timeout_s)
        self.publisher.start()

    async def publish(self, channel: str, body: bytes, row: dict, policy: Policy) -> Outcome:
        p = self.publisher
        if not p.connected.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.timeout_s):
                    await p.connected.wait()
            if not p.connected.is_set():
                why = f" ({p.last_error})" if p.last_error else ""
                return transient(f"MQTT broker not connected{why}", row["attempts"], row["queued_at"], _now(), policy)
        error = await p.publish(alerts_topic(channel), body)   # None: PUBACK; else why not
        if error:
            return transient(f"MQTT: {error}", row["attempts"], row["queued_at"], _now(), policy)
        return SENT

    async def close(self) -> None:
        await self.publisher.close()


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
