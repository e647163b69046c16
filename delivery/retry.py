"""When to try a delivery again: exponential back-off with full jitter (tenacity's
``wait_random_exponential``) up to one hour between attempts, for at most 24 hours from queuing;
then the delivery is ``dead``. A refusal that will not change (HTTP 4xx other than 408 and 429) is
``dead`` at once; 429 waits as long as its ``Retry-After`` says."""
from __future__ import annotations

import datetime as dt
import email.utils
from dataclasses import dataclass
from types import SimpleNamespace

from tenacity import wait_random_exponential

RETRYABLE_4XX = (408, 429)


@dataclass(frozen=True)
class Policy:
    initial_s: float = 2.0          # the first retry waits up to this long
    max_wait_s: float = 3600.0      # never more than this between attempts (Retry-After aside)
    give_up_s: float = 24 * 3600.0  # dead when the next attempt would fall later than this after queuing

    def wait(self, attempt: int) -> float:
        """Seconds before attempt ``attempt + 1`` (random: full jitter)."""
        w = wait_random_exponential(multiplier=self.initial_s / 2, max=self.max_wait_s)
        return w(SimpleNamespace(attempt_number=attempt))


@dataclass(frozen=True)
class Outcome:
    """A delivery attempt's result: ``sent``, ``failed`` (retry at ``next_attempt_at``) or ``dead``."""

    state: str
    error: str | None = None
    next_attempt_at: dt.datetime | None = None
    retried: bool = False

    def as_record(self, alert_id: str) -> dict:
        return {"alert_id": alert_id, "state": self.state, "error": self.error,
                "next_attempt_at": self.next_attempt_at}


def retry_after(value: str | None, now: dt.datetime) -> float | None:
    """Seconds of a ``Retry-After`` header (delta seconds or an HTTP date; None: absent or bad)."""
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        return max((email.utils.parsedate_to_datetime(value) - now).total_seconds(), 0.0)
    except (TypeError, ValueError):
        return None


def transient(error: str, attempts: int, queued_at: dt.datetime, now: dt.datetime, policy: Policy,
              wait_s: float | None = None) -> Outcome:
    """A failure worth retrying: ``failed`` with the next attempt time, or ``dead`` past the window."""
    wait_s = policy.wait(attempts) if wait_s is None else wait_s
    at = now + dt.timedelta(seconds=wait_s)
    if (at - queued_at).total_seconds() > policy.give_up_s:
        return Outcome("dead", f"gave up after {attempts} attempts in {policy.give_up_s / 3600:g} h: {error}")
    return Outcome("failed", error, at, retried=True)


def http_outcome(status: int, reason: str, headers, attempts: int, queued_at: dt.datetime, now: dt.datetime,
                 policy: Policy) -> Outcome:
    """The outcome of an HTTP answer."""
    error = f"HTTP {status} {reason}".strip()
    if 200 <= status < 300:
        return Outcome("sent")
    if 400 <= status < 500 and status not in RETRYABLE_4XX:
        return Outcome("dead", error)
    wait = retry_after(headers.get("retry-after"), now) if status == 429 else None
    return transient(error, attempts, queued_at, now, policy, wait)
