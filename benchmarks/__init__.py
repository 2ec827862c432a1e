"""Load benchmarks: coatcheck against the session libraries users would pick instead.

Run with ``python -m benchmarks`` from the repository root; see ``benchmarks/README.md``.
"""
