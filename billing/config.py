"""Billing settings: the metering grid, per-utility plausibility limits, the settlement policy, the
coverage a day needs and the sane bounds of tariff prices; ``<lake>/billing.json`` may override any of
them."""
from __future__ import annotations

import json
from dataclasses import dataclass, field, fields

from meters.errors import MetersError
from meters.lake import Lake

from .settle import Policy

CONFIG_FILE = "billing.json"
# accounts billed at a time (`meters bill --block-size`); measured (peak RSS of the two-night benchmark,
# load 4-5): 10,000 → 0.72 GiB at 250k meters, 0.84 GiB at 1M; 25,000 → 0.91 / 1.02 GiB; CPU per meter
# the same within the noise
BLOCK_SIZE = 10_000


def check_block_size(n) -> int:
    """``n`` as a block size (accounts billed at a time), or a clear error."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise MetersError(f"block size {n!r}: give a number of accounts of at least 1")
    return n


@dataclass(frozen=True)
class Config:
    """Billing settings; ``<lake>/billing.json`` may override any of them."""

    interval_s: int = 900
    # physical limit per utility in units per hour (25 kW for a household electricity supply)
    limit_per_hour: dict = field(default_factory=lambda: {"electricity": 25.0, "water": 5.0,
                                                          "gas": 10.0, "heat": 25.0})
    policy: Policy = Policy()
    # a day is billed only when readings cover this share of the accounts' meters (or --allow-estimates)
    min_coverage: float = 0.95
    # sane tariff bounds (currency units): prices per unit, fixed and minimum charges
    price_max: float = 1000.0
    fixed_max: float = 100_000.0

    @classmethod
    def load(cls, lake: Lake) -> "Config":
        path = lake.root / CONFIG_FILE
        if not path.exists():
            return cls()
        try:
            d = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise MetersError(f"{path}: not valid JSON: {e}") from None
        base = cls()
        pol = {k: v for k, v in d.get("policy", {}).items()}
        unknown = set(pol) - {f.name for f in fields(Policy)}
        if unknown:
            raise MetersError(f"{path}: unknown policy setting(s) {', '.join(sorted(unknown))}")
        cfg = cls(interval_s=int(d.get("interval_s", base.interval_s)),
                  limit_per_hour={**base.limit_per_hour, **d.get("limit_per_hour", {})},
                  policy=Policy(**pol),
                  **{k: float(d[k]) for k in ("min_coverage", "price_max", "fixed_max") if k in d})
        if not 0.0 <= cfg.min_coverage <= 1.0:
            raise MetersError(f"{path}: min_coverage {cfg.min_coverage} must be between 0 and 1")
        if not 0.0 <= cfg.policy.disconnect_max_estimated <= 1.0:
            raise MetersError(f"{path}: disconnect_max_estimated must be between 0 and 1")
        if cfg.interval_s <= 0 or 86400 % cfg.interval_s:
            raise MetersError(f"{path}: interval_s {cfg.interval_s} must divide a day")
        return cfg
