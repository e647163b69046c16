"""The dispatcher: claims due deliveries from the outbox, sends many at once (asyncio: httpx for
webhooks, one MQTT connection, apprise in threads) and records each outcome.

Each round leases a batch (:func:`meters.outbox.claim`), sends it with at most ``concurrency`` in
flight, and writes the outcomes in one transaction. SIGTERM (or :meth:`Dispatcher.stop`) lets the
deliveries in flight finish and their outcomes be written; a dispatcher killed outright loses
nothing: the leased deliveries are due again when their lease runs out (at-least-once; receivers
deduplicate by the alert id).
"""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import signal
import time
from dataclasses import dataclass, field

import httpx
import sqlalchemy as sa

from meters import outbox
from meters.mqtt import BrokerURL

from . import senders
from .messages import render
from .metrics import Metrics
from .payload import payload
from .retry import Outcome, Policy, transient


@dataclass
class Settings:
    concurrency: int = 256           # deliveries in flight at once
    batch: int = 2000                # deliveries claimed per round
    lease_s: float = 120.0           # a claimed delivery is due again after this (dispatcher died)
    timeout_s: float = 10.0          # per HTTP request / PUBACK
    poll_s: float = 1.0              # wait between rounds when nothing is due
    until_idle_s: float | None = None  # stop after this long without a delivery sent or given up
    policy: Policy = field(default_factory=Policy)


class Dispatcher:
    def __init__(self, engine: sa.Engine, settings: Settings | None = None, *, broker: BrokerURL | None = None,
                 metrics: Metrics | None = None, log=None):
        self.engine, self.settings = engine, settings or Settings()
        self.broker, self.metrics = broker, metrics or Metrics()
        self.log = log or (lambda msg: None)
        self.totals = {"sent": 0, "failed": 0, "dead": 0}
        self._stop = asyncio.Event()
        self._mqtt: senders.Mqtt | None = None

    def stop(self) -> None:
        """Finish the deliveries in flight, record them, and return from :meth:`run`."""
        self._stop.set()

    async def run(self) -> dict:
        """Deliver until stopped (or idle for ``until_idle_s``); returns the totals."""
        s = self.settings
        limits = httpx.Limits(max_connections=s.concurrency, max_keepalive_connections=s.concurrency)
        idle_since = time.monotonic()
        async with httpx.AsyncClient(timeout=s.timeout_s, limits=limits) as client:
            try:
                while not self._stop.is_set():
                    before = self.totals["sent"] + self.totals["dead"]
                    n = await self.round(client)
                    if self.totals["sent"] + self.totals["dead"] > before:
                        idle_since = time.monotonic()
                    if n:
                        continue
                    if s.until_idle_s is not None and time.monotonic() - idle_since >= s.until_idle_s:
                        break
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), s.poll_s)
            finally:
                if self._mqtt is not None:
                    self._mqtt.close()
        return dict(self.totals)

    async def round(self, client: httpx.AsyncClient) -> int:
        """One batch: claim, send, record; returns how many were claimed."""
        s = self.settings
        rows = await asyncio.to_thread(outbox.claim, self.engine, s.batch, s.lease_s)
        st = await asyncio.to_thread(outbox.stats, self.engine)
        self.metrics.oldest_pending.set(st["oldest_pending_s"])
        self.metrics.pending.set(st["states"]["pending"] + st["states"]["failed"])
        if not rows:
            return 0
        targets = await asyncio.to_thread(outbox.targets, self.engine)
        gate = asyncio.Semaphore(s.concurrency)

        async def one(row):
            async with gate:
                self.metrics.in_flight.inc()
                try:
                    return await self.deliver(client, targets.get(row["channel"]), row)
                except Exception as e:   # a bug in one delivery must not lose the batch's outcomes
                    return transient(f"{type(e).__name__}: {e}", row["attempts"], row["queued_at"],
                                             _now(), s.policy)
                finally:
                    self.metrics.in_flight.dec()

        outcomes = await asyncio.gather(*(one(r) for r in rows))
        await asyncio.to_thread(outbox.record, self.engine, [o.as_record(r["alert_id"]) for r, o in zip(rows, outcomes)])
        for r, o in zip(rows, outcomes):
            self.totals[o.state] += 1
            self.metrics.count(r["channel"], o.state, o.retried)
            if o.state == "dead":
                self.log(f"dead {r['alert_id']} ({r['kind']} to {r['recipient']}): {o.error}")
        return len(rows)

    async def deliver(self, client: httpx.AsyncClient, target: outbox.Target | None, row: dict) -> Outcome:
        p = self.settings.policy
        if target is None:
            return transient(f"channel {row['channel']!r} has no delivery target (meters channels target)",
                                     row["attempts"], row["queued_at"], _now(), p)
        if target.kind == "webhook":
            return await senders.webhook(client, target, row, payload(row), p)
        if target.kind == "mqtt":
            if self.broker is None:
                return transient("no MQTT broker for this dispatcher (start the managed broker or give "
                                         "--broker)", row["attempts"], row["queued_at"], _now(), p)
            if self._mqtt is None:
                self._mqtt = senders.Mqtt(self.broker, timeout_s=self.settings.timeout_s)
            return await self._mqtt.publish(row["channel"], payload(row), row, p)
        text = render(row["kind"], row["language"], outbox.values(row), corrects=row["corrects"])
        return await senders.apprise(target, text, row, p)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def run(engine: sa.Engine, settings: Settings | None = None, *, broker: BrokerURL | None = None,
        metrics: Metrics | None = None, log=None) -> dict:
    """Run a dispatcher in this thread until SIGTERM/SIGINT (or idle, with ``until_idle_s``)."""

    async def main():
        d = Dispatcher(engine, settings, broker=broker, metrics=metrics, log=log)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, d.stop)
        return await d.run()

    return asyncio.run(main())
