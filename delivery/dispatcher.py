"""The dispatcher: claims due deliveries from the outbox, sends many at once (asyncio: the lean
HTTP/1.1 client of :mod:`delivery.http` for webhooks, one MQTT connection, apprise in threads) and
records the outcomes.

Three kinds of task run side by side: the claimer leases batches of due deliveries
(:func:`meters.outbox.claim`, one transaction per batch) while fewer than two batches wait; ``concurrency``
senders take one delivery at a time each (as many in flight, on keep-alive connections); the
recorder writes the outcomes gathered every ``flush_s`` (or every batch) in one transaction
(:func:`meters.outbox.record`). SIGTERM (or :meth:`Dispatcher.stop`) lets the deliveries in flight
finish, gives back the claimed ones not started (:func:`meters.outbox.release`) and writes the
outcomes; a dispatcher killed outright loses nothing: the leased deliveries are due again when their
lease runs out (at-least-once; receivers deduplicate by the alert id).
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import signal
import time
from dataclasses import dataclass, field

import sqlalchemy as sa

from meters import outbox
from meters.mqtt import BrokerURL

from . import http, senders
from .messages import render
from .metrics import Metrics
from .payload import payload
from .retry import Outcome, Policy, transient


@dataclass
class Settings:
    concurrency: int = 512           # deliveries in flight at once
    pipeline: int = 16               # webhook requests awaiting their answer per connection (1: no pipelining)
    batch: int = 2000                # deliveries claimed per transaction
    lease_s: float = 120.0           # a claimed delivery is due again after this (dispatcher died)
    timeout_s: float = 10.0          # per HTTP request / PUBACK
    poll_s: float = 1.0              # wait between claims when nothing is due
    flush_s: float = 0.2             # outcomes are written at least this often
    stats_s: float = 5.0             # the pending/oldest gauges are refreshed this often
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
        self._targets: dict[str, outbox.Target] = {}
        self._done: list[tuple[dict, Outcome]] = []
        self._flush = asyncio.Event()
        self._closing = False
        self._in_flight = 0
        self.metrics.in_flight.set_function(lambda: self._in_flight)   # read when scraped, not set per delivery
        self._last_progress = time.monotonic()

    def stop(self) -> None:
        """Finish the deliveries in flight, record them, and return from :meth:`run`."""
        self._stop.set()

    async def run(self) -> dict:
        """Deliver until stopped (or idle for ``until_idle_s``); returns the totals."""
        s = self.settings
        client = http.Client(timeout_s=s.timeout_s, connections=max(1, -(-s.concurrency // max(1, s.pipeline))))
        queue: asyncio.Queue = asyncio.Queue()
        senders_ = [asyncio.create_task(self._sender(client, queue)) for _ in range(s.concurrency)]
        recorder = asyncio.create_task(self._recorder())
        gauges = asyncio.create_task(self._gauges())
        try:
            await self._claimer(queue)
        finally:
            left = []
            while not queue.empty():
                left.append(queue.get_nowait()["alert_id"])
            if left:
                await asyncio.to_thread(outbox.release, self.engine, left)
            for _ in senders_:
                queue.put_nowait(None)
            await asyncio.gather(*senders_, return_exceptions=True)
            self._closing = True
            self._flush.set()
            gauges.cancel()
            await asyncio.gather(recorder, gauges, return_exceptions=True)
            await self._record()
            await client.aclose()
            if self._mqtt is not None:
                await self._mqtt.close()
        return dict(self.totals)

    async def _claimer(self, queue: asyncio.Queue) -> None:
        s = self.settings
        while not self._stop.is_set():
            if queue.qsize() >= s.batch:     # enough waiting: let the senders catch up
                await self._wait(min(s.flush_s, s.poll_s))
                continue
            rows = await asyncio.to_thread(outbox.claim, self.engine, s.batch, s.lease_s)
            if rows:
                self._targets = await asyncio.to_thread(outbox.targets, self.engine)
                for r in rows:
                    queue.put_nowait(r)
                continue
            idle = queue.empty() and self._in_flight == 0
            if (s.until_idle_s is not None and idle and not self._done
                    and time.monotonic() - self._last_progress >= s.until_idle_s):
                return
            await self._wait(s.poll_s)

    async def _wait(self, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    async def _gauges(self) -> None:
        while True:
            st = await asyncio.to_thread(outbox.stats, self.engine)
            self.metrics.oldest_pending.set(st["oldest_pending_s"])
            self.metrics.pending.set(st["states"]["pending"] + st["states"]["failed"])
            await asyncio.sleep(self.settings.stats_s)

    async def _sender(self, client: http.Client, queue: asyncio.Queue) -> None:
        s = self.settings
        while (row := await queue.get()) is not None:
            self._in_flight += 1
            try:
                o = await self.deliver(client, self._targets.get(row["channel"]), row)
            except Exception as e:   # a bug in one delivery must not lose the others' outcomes
                o = transient(f"{type(e).__name__}: {e}", row["attempts"], row["queued_at"], _now(), s.policy)
            finally:
                self._in_flight -= 1
            self._done.append((row, o))
            if len(self._done) >= s.batch:
                self._flush.set()

    async def _recorder(self) -> None:
        while not self._closing:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._flush.wait(), self.settings.flush_s)
            self._flush.clear()
            try:
                await self._record()
            except Exception as e:   # the store is busy or gone: those deliveries are due again after their lease
                self.log(f"outcomes not recorded ({type(e).__name__}: {e}); they are retried after their lease")

    async def _record(self) -> None:
        """Write the outcomes gathered so far (one transaction) and count them."""
        done, self._done = self._done, []
        if not done:
            return
        await asyncio.to_thread(outbox.record, self.engine, [o.as_record(r["alert_id"]) for r, o in done])
        counts = collections.Counter((r["channel"], o.state, o.retried) for r, o in done)
        for (channel, state, retried), n in counts.items():
            self.totals[state] += n
            self.metrics.count(channel, state, retried, n)
        for r, o in done:
            if o.state == "dead":
                self.log(f"dead {r['alert_id']} ({r['kind']} to {r['recipient']}): {o.error}")
        if any(state != "failed" for _, state, _ in counts):
            self._last_progress = time.monotonic()

    async def deliver(self, client: http.Client, target: outbox.Target | None, row: dict) -> Outcome:
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


def broker_for(engine: sa.Engine, url: str | None, state_dir: str | None) -> BrokerURL | None:
    """The MQTT broker of the channels delivered by MQTT: ``url``, or the managed broker's ``notify``
    user (provisioned with the channels' gateways); None when no channel needs one."""
    from meters.broker import ManagedBroker
    from meters.errors import MetersError
    from meters.mqtt import parse_broker_url

    if url:
        return parse_broker_url(url)
    channels = [t.name for t in outbox.targets(engine).values() if t.kind == "mqtt"]
    if not channels:
        return None
    broker = ManagedBroker(state_dir)
    if not broker.is_running():
        raise MetersError(f"channels {', '.join(channels)} deliver by MQTT but no managed broker is running: "
                          f"start one with `meters broker start` or give --broker mqtt://notify:pass@host:port")
    broker.add_alert_users(channels)
    return parse_broker_url(broker.url("notify"))


def notifier(engine: sa.Engine, *, broker_url: str | None = None, broker_dir: str | None = None,
             concurrency: int = 512, log=None) -> Dispatcher:
    """The ``meters.notifiers`` entry point (:mod:`meters.notifier`): a dispatcher for ``meters serve``."""
    return Dispatcher(engine, Settings(concurrency=concurrency), broker=broker_for(engine, broker_url, broker_dir),
                      log=log)


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

    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main())


def loop_factory():
    """uvloop's event loop when it is installed (less CPU per delivery), else None: asyncio's."""
    try:
        from uvloop import new_event_loop
    except ImportError:
        return None
    return new_event_loop
