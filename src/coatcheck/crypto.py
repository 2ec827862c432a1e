"""Session ids, the keyring of secrets, id signing in express-session's format, key derivation."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import math
import re
import secrets
import string
from collections.abc import Sequence
from urllib.parse import quote, unquote_to_bytes

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .errors import ConfigurationError

logger = logging.getLogger("coatcheck")
ID_BYTES = 32
MIN_SECRET_BITS = 256
MAX_SIGNED_ID = 512  # longest signed-id cookie value we will even look at
_URI_SAFE = "-_.!~*'()"  # what JavaScript's encodeURIComponent leaves alone
_PLAIN_ID = re.compile(r"[A-Za-z0-9_-]+")  # ids encodeURIComponent leaves unchanged (ours all are)

HOW_TO_MAKE_ONE = (
    'make one with `coatcheck secret` or `python -c "import secrets; print(secrets.token_urlsafe(32))"`'
)


def new_session_id(nbytes: int = ID_BYTES) -> str:
    """A fresh session id: `nbytes` (32) bytes from `secrets`, base64url without padding (43 chars)."""
    return secrets.token_urlsafe(nbytes)


def storage_key(session_id: str) -> str:
    """What stores key a record by: SHA-256 of the id, so a store dump yields no live cookie."""
    return hashlib.sha256(session_id.encode()).hexdigest()


def estimated_bits(secret: bytes) -> float:
    """A conservative estimate of a secret's entropy from its length and alphabet."""
    try:
        text = secret.decode("ascii")
    except UnicodeDecodeError:
        return 8.0 * len(secret)
    if not text.isprintable():
        return 8.0 * len(secret)
    if all(c in string.hexdigits for c in text):
        pool = 16
    else:
        pool = 0
        for alphabet in (
            string.ascii_lowercase,
            string.ascii_uppercase,
            string.digits,
            string.punctuation + " ",
        ):
            if any(c in alphabet for c in text):
                pool += len(alphabet)
    pool = min(pool, len(set(text)) * 4)  # few distinct characters: not random
    period = (text + text).find(text, 1)  # "abab...ab" is worth no more than "ab"
    return min(len(text), period) * math.log2(max(pool, 1))


class Keyring:
    """The configured secrets: the first signs and seals, every one verifies and opens."""

    def __init__(
        self, secret: str | bytes | Sequence[str | bytes], *, insecure_dev_secret: bool = False
    ) -> None:
        self.keys = as_secret_list(secret)
        for position, key in enumerate(self.keys):
            bits = estimated_bits(key)
            if bits >= MIN_SECRET_BITS:
                continue
            where = "secret" if len(self.keys) == 1 else f"secret #{position + 1}"
            if not insecure_dev_secret:
                raise ConfigurationError(
                    f"{where} is too weak (about {bits:.0f} bits; at least {MIN_SECRET_BITS} are required): "
                    f"{HOW_TO_MAKE_ONE}, or pass insecure_dev_secret=True for local development only"
                )
            logger.warning(
                "coatcheck: %s is weak (insecure_dev_secret=True); never use it in production",
                where,
            )

    def _mac(self, key: bytes, value: str) -> str:
        digest = hmac.digest(key, value.encode(), "sha256")  # one-shot: no HMAC object per call
        return base64.b64encode(digest).decode().rstrip("=")

    def sign_id(self, session_id: str) -> str:
        """The cookie value for an id, byte for byte what express-session sends."""
        mac = self._mac(self.keys[0], session_id)
        if _PLAIN_ID.fullmatch(session_id):  # the same bytes as quote() below, without its cost
            return "s%3A" + session_id + "." + mac.replace("+", "%2B").replace("/", "%2F")
        return quote(f"s:{session_id}.{mac}", safe=_URI_SAFE)

    def unsign_id(self, cookie_value: bytes) -> str | None:
        """The id inside a signed cookie value, or None if it is malformed or forged.

        Every secret is tried in constant time per comparison; nothing here touches a store.
        """
        verified = self.verify_id(cookie_value)
        return None if verified is None else verified[0]

    def verify_id(self, cookie_value: bytes) -> tuple[str, bool] | None:
        """(id, signed with the current secret?) for a valid signed cookie value, else None.
        An id signed with an older secret is re-signed on the next response (rotation)."""
        if len(cookie_value) > MAX_SIGNED_ID:
            return None
        try:
            text = _unquote_signed(cookie_value)
        except (UnicodeDecodeError, ValueError):
            return None
        if not text.startswith("s:"):
            return None
        session_id, dot, mac = text[2:].rpartition(".")
        if not dot or not session_id:
            return None
        expected = mac.encode()
        matches = [hmac.compare_digest(self._mac(key, session_id).encode(), expected) for key in self.keys]
        if not any(matches):
            return None
        return session_id, matches[0]

    def derive(self, purpose: str, length: int = 32) -> list[bytes]:
        """One key per secret for `purpose` (HKDF-SHA256), in keyring order."""
        return [
            HKDF(
                algorithm=hashes.SHA256(),
                length=length,
                salt=None,
                info=f"coatcheck/{purpose}".encode(),
            ).derive(key)
            for key in self.keys
        ]


def _unquote_signed(value: bytes) -> str:
    """`unquote_to_bytes(value).decode("ascii")`, quicker for what `sign_id` sends: a value
    whose only escapes are the %3A, %2B and %2F of "s:" and a base64 signature."""
    if value.startswith(b"s%3A"):
        text = value[4:].decode("ascii")
        if "%" in text:
            text = text.replace("%2B", "+").replace("%2F", "/")
        if "%" not in text:
            return "s:" + text
    return unquote_to_bytes(value).decode("ascii")


def as_secret_list(secret: str | bytes | Sequence[str | bytes]) -> list[bytes]:
    """Normalise the `secret` option to a non-empty list of byte strings."""
    items: Sequence[str | bytes] = [secret] if isinstance(secret, str | bytes) else secret
    keys = [s.encode() if isinstance(s, str) else bytes(s) for s in items]
    if not keys:
        raise ConfigurationError("secret must be a string, bytes, or a non-empty list of them")
    for key in keys:
        if not key:
            raise ConfigurationError("secret must not be empty")
    return keys
