"""Bare Starlette, no middleware: the baseline for every Starlette-based case."""

from starlette.applications import Starlette

from benchmarks.apps.starlette_common import plain_only

app = Starlette(routes=plain_only())
