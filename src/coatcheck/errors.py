"""Exception types raised by coatcheck."""

from __future__ import annotations


class CoatcheckError(Exception):
    """Base class of every error coatcheck raises on purpose."""


class ConfigurationError(CoatcheckError, ValueError):
    """The middleware or a store was configured wrongly; the message says what to change."""


class SessionStoreError(CoatcheckError):
    """The store could not answer (server down, timeout, corrupt record).

    Never raised for "not found": a missing or expired session is a normal result.
    The adapters turn it into a 503 response.
    """


class SessionTooLarge(CoatcheckError):
    """A client-side session does not fit in the configured number of cookies."""
