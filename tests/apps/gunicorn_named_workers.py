"""gunicorn configuration for the gunicorn tests: every worker gets a port of its own.

Start gunicorn with `--bind` given 1 + W times (W = `-w`): the first address is shared by
all workers, as usual; address k (k >= 1) is kept by worker k alone. A request sent to
worker k's port is therefore answered by worker k and no other, so a test can send one
session's requests to chosen workers instead of hoping the kernel spreads connections.
"""

from __future__ import annotations

from typing import Any


def post_fork(server: Any, worker: Any) -> None:
    """Runs in the new worker before it starts accepting: keep the shared listener and this
    worker's own one, stop listening on the other workers' ports."""
    shared, *named = worker.sockets
    if worker.age > len(named):
        # A replacement worker (a crash) has no port of its own; the test then times out on
        # the dead worker's port and says so instead of silently passing.
        worker.sockets = [shared]
        return
    worker.sockets = [shared, named[worker.age - 1]]
