"""Helpers for the Browsing capability: counting sessions a batch at a time, age buckets
in SQL, and key ranges for prefix lookups."""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable, Sequence

from ..record import SessionInfo
from .base import SessionTally


class Tally:
    """Accumulates `SessionTally` figures from batches of `SessionInfo`. Memory grows with the
    number of distinct users (one counter each), never with the number of sessions."""

    def __init__(self, age_bounds: Sequence[float], now: float) -> None:
        self._bounds = list(age_bounds)
        self._now = now
        self._ages = [0] * len(self._bounds)
        self._users: Counter[str] = Counter()
        self.total = 0
        self.anonymous = 0

    def add(self, infos: Iterable[SessionInfo]) -> None:
        last = len(self._bounds) - 1
        for info in infos:
            self.total += 1
            age = self._now - info.created.timestamp()
            self._ages[min(bisect.bisect_right(self._bounds, age), last)] += 1
            if info.user_id is None:
                self.anonymous += 1
            else:
                self._users[info.user_id] += 1

    def result(self, top: int) -> SessionTally:
        ranked = sorted(self._users.items(), key=lambda item: (-item[1], item[0]))[:top]
        return SessionTally(self.total, self.anonymous, len(self._users), tuple(self._ages), tuple(ranked))


def age_bucket_sql(created: str, now: float, age_bounds: Sequence[float]) -> str:
    """A SQL CASE expression numbering the age bucket of `created` (a column expression giving
    seconds since the epoch). Bounds are numbers, written into the SQL as literals."""
    cases = " ".join(
        f"WHEN {now!r} - {created} < {float(bound)!r} THEN {i}" for i, bound in enumerate(age_bounds[:-1])
    )
    last = len(age_bounds) - 1
    return f"CASE {cases} ELSE {last} END" if cases else "0"


def prefix_end(prefix: str) -> str | None:
    """The least string above every string that starts with `prefix`, so `prefix <= key < end`
    is a range scan on an ordered index (None: no upper bound)."""
    for i in range(len(prefix) - 1, -1, -1):
        if ord(prefix[i]) < 0x10FFFF:
            return prefix[:i] + chr(ord(prefix[i]) + 1)
    return None
