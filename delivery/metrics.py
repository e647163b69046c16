"""The dispatcher's Prometheus metrics (``meters notify --metrics-port``)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.delivered = Counter("meters_alerts_delivered", "Alert deliveries accepted by their target",
                                 ["channel"], registry=r)
        self.retried = Counter("meters_alerts_retried", "Alert delivery attempts that failed and will be retried",
                               ["channel"], registry=r)
        self.dead = Counter("meters_alerts_dead", "Alert deliveries given up", ["channel"], registry=r)
        self.oldest_pending = Gauge("meters_alerts_oldest_pending_seconds",
                                    "Age of the oldest alert delivery not yet sent or dead", registry=r)
        self.pending = Gauge("meters_alerts_pending", "Alert deliveries pending or failed (to retry)", registry=r)
        self.in_flight = Gauge("meters_alerts_in_flight", "Alert deliveries being sent now", registry=r)

    def count(self, channel: str, state: str, retried: bool, n: int = 1) -> None:
        """``n`` outcomes of one channel and state."""
        if state == "sent":
            self.delivered.labels(channel).inc(n)
        elif state == "dead":
            self.dead.labels(channel).inc(n)
        elif retried:
            self.retried.labels(channel).inc(n)
