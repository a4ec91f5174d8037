"""Benchmarks for fci: timings printed beside straightforward reference implementations.

Run a benchmark as a module, e.g. ``python -m benchmarks.codes --quick``.
"""
