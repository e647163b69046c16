"""Prometheus metrics of the API (``GET /metrics``)."""
from prometheus_client import Counter, Histogram

REQUESTS = Histogram("meters_http_request_seconds", "HTTP requests by route and status",
                     ["method", "route", "status"],
                     buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
PAYMENTS = Counter("meters_payments_total", "Payment requests by outcome (applied, duplicate, conflict, …)",
                   ["outcome"])
PAID_CENTS = Counter("meters_payments_cents_total", "Cents credited by applied payments")
