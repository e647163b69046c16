"""Rounding money at presentation and ledger boundaries (the engine computes in float64).

Rules (docs/tariffs.md):

- A float amount becomes cents by rounding its shortest decimal representation half up (away from
  zero): ``round_half_up(2.675) == Decimal("2.68")``.
- A bill's total is the rounded period cost; its lines are rounded one by one and the few cents by
  which they miss the total go to the lines with the largest rounding loss (largest remainder), so
  the lines always sum to the bill.
- Daily prepaid charges telescope: the day's cents = cents(period cost to date after the day) −
  cents(period cost to date before it), so the days of a period sum exactly to its bill.
"""
from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import numpy as np

CENT = Decimal("0.01")


def round_half_up(x: float) -> Decimal:
    """``x`` rounded half up to 0.01 (as a Decimal with two places)."""
    if isinstance(x, Decimal):
        return x.quantize(CENT, ROUND_HALF_UP)
    if not np.isfinite(x):
        raise ValueError(f"cannot round {x!r} to money")
    return Decimal(repr(float(x))).quantize(CENT, ROUND_HALF_UP)


def to_cents(x) -> np.ndarray:
    """Vectorised :func:`round_half_up` in int64 cents (``x * 100`` first rounded to 6 decimals, which
    removes binary noise such as 267.49999999999997, then half away from zero)."""
    a = np.round(np.asarray(x, np.float64) * 100.0, 6)
    return (np.sign(a) * np.floor(np.abs(a) + 0.5)).astype(np.int64)


def allocate_cents(amounts, total_cents: int | None = None) -> np.ndarray:
    """Round line ``amounts`` to cents so that they sum to ``total_cents`` (default: the rounded sum).

    Each line is rounded half up; the difference (a few cents at most) is spread one cent at a time over
    the lines whose rounding moved them furthest in the other direction (ties: earlier line first).
    """
    a = np.asarray(amounts, np.float64)
    cents = to_cents(a)
    if total_cents is None:
        total_cents = int(to_cents(a.sum()))
    diff = int(total_cents) - int(cents.sum())
    if diff and a.size:
        resid = np.round(a * 100.0, 6) - cents          # > 0: rounded down, wants a cent more
        order = np.argsort(-resid if diff > 0 else resid, kind="stable")
        step = 1 if diff > 0 else -1
        for k in range(abs(diff)):
            cents[order[k % a.size]] += step
    return cents


def allocate_cents_grouped(amounts, group, total_cents) -> np.ndarray:
    """:func:`allocate_cents` of many bills at once: ``amounts`` of lines sorted by ``group`` (bill
    0, 1, …; each bill's lines contiguous, in line order) whose cents must sum to ``total_cents[group]``."""
    a = np.asarray(amounts, np.float64)
    group = np.asarray(group, np.int64)
    cents = to_cents(a)
    if not a.size:
        return cents
    n = len(total_cents)
    size = np.bincount(group, minlength=n)
    diff = (np.asarray(total_cents, np.int64) - np.bincount(group, weights=cents, minlength=n).astype(np.int64))
    d = diff[group]
    if not d.any():
        return cents
    resid = np.round(a * 100.0, 6) - cents
    key = np.where(d > 0, -resid, resid)
    order = np.lexsort((np.arange(a.size), key, group))      # per bill: as allocate_cents' stable argsort
    first = np.concatenate([[0], np.cumsum(size)[:-1]])
    rank = np.empty(a.size, np.int64)
    rank[order] = np.arange(a.size) - first[group[order]]
    k = np.abs(d)
    cents += np.sign(d) * (k // size[group] + (rank < k % size[group]))
    return cents


def daily_cents(period_total_after, before_cents: int = 0) -> np.ndarray:
    """Cents to charge each day from the period-to-date totals after each day of one period
    (``Priced.day_total`` in order): differences of the rounded running totals; ``before_cents`` =
    cents already charged in the period by earlier runs."""
    c = to_cents(period_total_after)
    return np.diff(np.concatenate([[int(before_cents)], c]))
