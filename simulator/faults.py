"""Fault rates (all off by default) and their parsing from ``--faults lost=0.01,duplicate=0.01,…``.

Per reading: ``lost`` (never published), ``duplicate`` (published again with the next upload),
``late`` (published 1–4 uploads later, out of order), ``spike`` (a transient misread: the published
register is too high by 20–200 days of use; the true register is unchanged).
Per meter: ``rollover`` (starts just below its register maximum so it wraps during the run),
``replacement`` (replaced once during the run: its register restarts at 0–5 units), ``skew`` (its
clock is off by 10–600 s either way for the whole run).
Per upload (one concentrator, one batch): ``malformed`` (an extra garbage payload: random bytes,
truncated binary batch or broken JSON; it carries no reading).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from meters.errors import MetersError

MAX_LATE_UPLOADS = 4


@dataclass(frozen=True)
class Faults:
    lost: float = 0.0
    duplicate: float = 0.0
    late: float = 0.0
    spike: float = 0.0
    rollover: float = 0.0
    replacement: float = 0.0
    skew: float = 0.0
    malformed: float = 0.0

    @property
    def any(self) -> bool:
        return any(getattr(self, f.name) > 0 for f in fields(self))

    @property
    def per_reading(self) -> bool:
        return self.lost + self.duplicate + self.late + self.spike + self.skew > 0

    def to_dict(self) -> dict:
        return asdict(self)


def parse_faults(spec: str | None) -> Faults:
    """``"lost=0.01,duplicate=0.005"`` → :class:`Faults`; ``None``/``""``/``"none"`` → no faults."""
    if not spec or spec.strip().lower() in ("none", "off"):
        return Faults()
    names = [f.name for f in fields(Faults)]
    values: dict[str, float] = {}
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep:
            raise MetersError(f"--faults: {item!r} must be name=rate (e.g. lost=0.01)")
        if name not in names:
            raise MetersError(f"--faults: unknown fault {name!r}; known: {', '.join(names)}")
        try:
            rate = float(value)
        except ValueError:
            raise MetersError(f"--faults: rate of {name} must be a number, got {value!r}") from None
        if not 0.0 <= rate <= 1.0:
            raise MetersError(f"--faults: rate of {name} must be between 0 and 1, got {rate}")
        values[name] = rate
    f = Faults(**values)
    if f.lost + f.duplicate + f.late > 1.0:
        raise MetersError("--faults: lost + duplicate + late must not exceed 1")
    return f
