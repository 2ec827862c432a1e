"""The apps under test. Each module exposes ``app`` and serves /plain, /read, /incr, /first.

They are started by the harness in their own processes and configured through environment
variables (see :mod:`benchmarks.apps.common`).
"""
