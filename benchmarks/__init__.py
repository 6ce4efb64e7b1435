"""Benchmarks of the KPI engine (not part of the test suite): ``python -m benchmarks``."""
