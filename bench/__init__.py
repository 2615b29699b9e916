"""Benchmarks: each script prints its figures and targets (see bench/README.md)."""
