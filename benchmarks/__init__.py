"""Benchmarks: each module exposes ``measure()`` returning named figures."""
