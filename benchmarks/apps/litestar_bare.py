"""Bare Litestar, no middleware: the baseline for the Litestar case."""

from litestar import Litestar

from benchmarks.apps.litestar_common import plain

app = Litestar(route_handlers=[plain], logging_config=None)
