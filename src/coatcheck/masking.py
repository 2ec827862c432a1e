"""Synchronizer-token masking (standard library only, so `session.py` can use it).

A session holds one raw secret (`new_secret`). Pages never carry it as is: each render gets
`mask_token(secret)`, the secret XOR a fresh random pad, pad first, base64url. No two
renders share bytes (against BREACH-style compression attacks), and every one of them
unmasks to the same secret (`tokens_match`, constant time).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
import secrets

MAX_MASKED_LENGTH = 1024  # a masked token is ~115 characters; longer input is not looked at

_TOKEN_CHARS = re.compile(r"^[A-Za-z0-9_-]+\Z")


def new_secret() -> str:
    """A new raw synchronizer secret (256 bits, base64url): stored in the session, never sent."""
    return secrets.token_urlsafe(32)


def mask_token(secret: str) -> str:
    """`secret` XOR a fresh random pad, pad first, base64url: different bytes on every call."""
    raw = secret.encode()
    pad = secrets.token_bytes(len(raw))
    return base64.urlsafe_b64encode(pad + _xor(raw, pad)).rstrip(b"=").decode("ascii")


def unmask_token(masked: str) -> bytes | None:
    """The secret inside a masked token, or None if the value is not a masked token."""
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


def tokens_match(secret: str | None, submitted: str | None) -> bool:
    """True if `submitted` is a masked form of `secret` (constant-time compare)."""
    if not secret or not submitted:
        return False
    raw = unmask_token(submitted)
    return raw is not None and hmac.compare_digest(raw, secret.encode())


def _xor(a: bytes, b: bytes) -> bytes:
    """Bytewise XOR of two equal-length strings (one big-integer operation, not a loop)."""
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")


__all__ = ["MAX_MASKED_LENGTH", "mask_token", "new_secret", "tokens_match", "unmask_token"]
