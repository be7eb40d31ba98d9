"""Benchmarks of sccm-package-exporter: `python benchmarks/run.py`; results in benchmarks/RESULTS.md."""
