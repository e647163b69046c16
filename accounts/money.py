"""Money at the service's edge: amounts in, integer cents inside, ``"12.34"`` strings out."""
from __future__ import annotations

from decimal import Decimal, InvalidOperation

from .errors import Invalid

MAX_PAYMENT_CENTS = 100_000_000  # 1,000,000.00 in one payment: more is a typo or an attack


def to_cents(value, what: str = "amount", *, positive: bool = True, maximum: int | None = MAX_PAYMENT_CENTS) -> int:
    """A number or numeric string with at most 2 decimals → integer cents; :class:`Invalid` naming
    ``what`` otherwise (bool, NaN, 3 decimals, ≤ 0 when ``positive``, above ``maximum``)."""
    if isinstance(value, bool) or value is None:
        raise Invalid(f"{what} {value!r} is not a number")
    try:
        d = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise Invalid(f"{what} {value!r} is not a number") from None
    if not d.is_finite():
        raise Invalid(f"{what} {value!r} is not a finite number")
    if abs(d) >= Decimal(10) ** 16:
        raise Invalid(f"{what} {value!r} is too large")
    if d != d.quantize(Decimal("0.01")):
        raise Invalid(f"{what} {value!r} has more than 2 decimal places")
    c = int(d * 100)
    if positive and c <= 0:
        raise Invalid(f"{what} {value!r} must be positive")
    if maximum is not None and abs(c) > maximum:
        raise Invalid(f"{what} {value!r} exceeds the maximum {fmt(maximum)}")
    return c


def fmt(cents: int | None) -> str | None:
    """Cents → ``"-12.34"`` (None stays None)."""
    if cents is None:
        return None
    sign = "-" if cents < 0 else ""
    return f"{sign}{abs(cents) // 100}.{abs(cents) % 100:02d}"


def decimal(cents: int | None) -> Decimal | None:
    """Cents → a 2-decimal :class:`Decimal` (for Arrow ``decimal128(18, 2)`` columns)."""
    return None if cents is None else Decimal(cents).scaleb(-2)
