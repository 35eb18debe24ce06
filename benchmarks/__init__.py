"""Measured comparisons (not tests): ``python -m benchmarks.run_all`` runs them all.

See ``benchmarks/README.md`` for what each one measures and how to read its figures.
"""
