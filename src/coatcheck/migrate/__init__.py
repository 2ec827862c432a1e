"""Readers of other libraries' sessions, for switching to coatcheck without logging anyone out.

A reader looks at a request's Cookie header for the session the old library left, verifies
it exactly as that library would, and returns its data as a `Legacy`. The middleware then
starts a new coatcheck session (a fresh id, never the legacy one) holding that data, expires
the legacy cookie and calls `forget` to delete the legacy record. See docs/migrating.md.

Every reader follows one contract: forged, expired, oversized or garbage input gives None,
never an exception, in time linear in its size; pickle is never loaded; legacy data that the
chosen serializer cannot write, or that serializes to more than `max_data_bytes`, is
skipped with a log line. Log lines never contain a session id, key, token or secret.
"""

from __future__ import annotations

from ._base import MAX_DATA_BYTES, MAX_RECORD_BYTES, Legacy, LegacyReader, expire_legacy_cookie, read_first
from .cookie_sessions import FlaskCookie, StarletteCookie
from .flask_session import FlaskSessionRedis

__all__ = [
    "MAX_DATA_BYTES",
    "MAX_RECORD_BYTES",
    "FlaskCookie",
    "FlaskSessionRedis",
    "Legacy",
    "LegacyReader",
    "StarletteCookie",
    "expire_legacy_cookie",
    "read_first",
]
