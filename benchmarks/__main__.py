"""Run every benchmark module (benchmarks/bench_*.py) or the ones named.

    python -m benchmarks                       # all, default sizes
    python -m benchmarks tariff billing --quick
    python -m benchmarks billing --meters 200000

Names come first; everything from the first option on is passed to each benchmark's ``main``.
"""
from __future__ import annotations

import importlib
import pkgutil
import sys
import time

import benchmarks


def main(argv: list[str]) -> int:
    first_option = next((i for i, a in enumerate(argv) if a.startswith("-")), len(argv))
    names, flags = argv[:first_option], argv[first_option:]
    available = sorted(m.name[len("bench_"):] for m in pkgutil.iter_modules(benchmarks.__path__)
                       if m.name.startswith("bench_"))
    unknown = [n for n in names if n not in available]
    if unknown:
        print(f"unknown benchmark(s) {', '.join(unknown)}; available: {', '.join(available)}", file=sys.stderr)
        return 2
    for name in names or available:
        print(f"\n=== benchmark: {name} ===", flush=True)
        t0 = time.perf_counter()
        importlib.import_module(f"benchmarks.bench_{name}").main(flags)
        print(f"=== {name}: {time.perf_counter() - t0:.1f} s ===", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
