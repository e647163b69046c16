"""Reproducible measurements: `python -m benchmarks [NAME ...] [--quick]`."""
