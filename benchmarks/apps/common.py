"""Settings shared by every benchmark app, read from the environment the harness sets."""

from __future__ import annotations

import os

# One fixed, random-looking secret (43 chars, 256 bits) for every implementation, so no app
# pays for a different key size and coatcheck's weak-secret check is satisfied.
SECRET = "pp99Z7mCRCmFiT3S2vc5jBD1Ka6FbXFKO9hiIhfi4_o"

# The session key each route touches.
COUNTER = "n"
FIRST_KEY = "user"
FIRST_VALUE = "bench"


def redis_url() -> str:
    """The private Redis the harness started (``redis://127.0.0.1:PORT/0``)."""
    return os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


def sqlite_path() -> str:
    """Where the coatcheck SQLite case keeps its database."""
    return os.environ.get("BENCH_SQLITE_PATH", "coatcheck-bench.db")
