"""CSRF token masking: the session's secret XOR a fresh pad per render (against BREACH)."""

from __future__ import annotations

import base64
import binascii
import hmac
import re
import secrets

MAX_MASKED_LENGTH = 1024  # a masked token is ~115 characters; longer input is not looked at
_TOKEN_CHARS = re.compile(r"^[A-Za-z0-9_-]+$")


def mask_token(token: str) -> str:
    """The token XOR a fresh random pad, pad first, base64url: different bytes on every call."""
    raw = token.encode()
    pad = secrets.token_bytes(len(raw))
    return base64.urlsafe_b64encode(pad + _xor(raw, pad)).rstrip(b"=").decode("ascii")


def unmask_token(masked: str) -> bytes | None:
    """The token inside a masked token, or None if the value is not a masked token."""
    if not 0 < len(masked) <= MAX_MASKED_LENGTH or not _TOKEN_CHARS.match(masked):
        return None
    try:
        blob = base64.urlsafe_b64decode(masked + "=" * (-len(masked) % 4))
    except (binascii.Error, ValueError):
        return None
    half, odd = divmod(len(blob), 2)
    if odd or half == 0:
        return None
    return _xor(blob[:half], blob[half:])


def _xor(a: bytes, b: bytes) -> bytes:
    """Bytewise XOR of two equal-length strings (one big-integer operation, not a loop)."""
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")


def tokens_match(session_token: str | None, submitted: str | None) -> bool:
    """True if `submitted` is a masked form of `session_token` (constant-time compare)."""
    if not session_token or not submitted:
        return False
    raw = unmask_token(submitted)
    return raw is not None and hmac.compare_digest(raw, session_token.encode())
