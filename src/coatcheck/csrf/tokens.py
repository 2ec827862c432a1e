"""What CSRF needs from a session: its secret, its `trust_proxy` setting, and `get_token`
(a freshly masked token for forms, headers and templates). Public accessors only."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from ..masking import mask_token, new_secret
from ..session import CSRF_KEY, Session


def session_secret(session: MutableMapping[str, Any]) -> str | None:
    """The session's raw synchronizer secret, or None if it has none yet."""
    secret = session.get(CSRF_KEY)
    return secret if isinstance(secret, str) and secret else None


def session_trusts_proxy(session: object) -> bool:
    """The session middleware's `trust_proxy` (False for a session that is not coatcheck's)."""
    return isinstance(session, Session) and session.settings.trust_proxy


def get_token(session: MutableMapping[str, Any]) -> str:
    """A freshly masked token for this session, for a form field or the X-CSRF-Token header.

    Creates the session's secret on first use (which saves the session). Call it once per
    render: every call returns different bytes that all verify. Works with a coatcheck
    `Session` and with any mutable mapping.
    """
    secret = session_secret(session)
    if secret is None:
        secret = new_secret()
        session[CSRF_KEY] = secret
    return mask_token(secret)
