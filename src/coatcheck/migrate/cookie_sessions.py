"""Readers of signed-cookie sessions: Starlette's SessionMiddleware and Flask's own session."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from ..codec import Serializer
from ..tagged import TaggedSerializer
from ._base import (
    MAX_DATA_BYTES,
    CookieReader,
    Key,
    Legacy,
    cookie_value,
    itsdangerous_module,
    seconds,
    secret_list,
)


class StarletteCookie(CookieReader):
    """Reads Starlette's `SessionMiddleware` cookie: base64 JSON signed by itsdangerous'
    TimestampSigner with `secret_key`, valid for `max_age` seconds (None: no limit)."""

    source = "starlette"

    def __init__(
        self,
        secret_key: str | Sequence[str] | Any,
        cookie_name: str = "session",
        max_age: float | timedelta | None = 14 * 24 * 3600,
        *,
        path: str = "/",
        domain: str | None = None,
        serializer: str | Serializer = "json",
        max_data_bytes: int = MAX_DATA_BYTES,
    ) -> None:
        itsdangerous = itsdangerous_module()
        # Starlette signs with str(secret_key) (also for its Secret wrapper); a list is for keys
        # rotated before the switch.
        keys = [str(key) for key in secret_list(_unwrap_starlette_secret(secret_key), "StarletteCookie")]
        self._signer = itsdangerous.TimestampSigner(keys)
        self._bad = itsdangerous.BadData
        self.max_age = seconds(max_age)
        super().__init__(cookie_name, path, domain, serializer, max_data_bytes)

    async def read(self, cookie_header: bytes | None) -> Legacy | None:
        value = cookie_value(cookie_header, self.cookie_name)
        if value is None:
            return None
        try:
            payload = self._signer.unsign(value, max_age=self.max_age)
            data = json.loads(base64.b64decode(payload))
        except (self._bad, ValueError, TypeError, binascii.Error, RecursionError):
            return None
        return self._legacy(data)


def _unwrap_starlette_secret(secret_key: Any) -> Any:
    try:
        from starlette.datastructures import Secret
    except ImportError:  # pragma: no cover - then nobody holds a Secret
        return secret_key
    if isinstance(secret_key, Secret):
        return str(secret_key)
    if isinstance(secret_key, list | tuple):
        return [str(key) if isinstance(key, Secret) else key for key in secret_key]
    return secret_key


class FlaskCookie(CookieReader):
    """Reads Flask's own signed cookie session (`SecureCookieSessionInterface`).

    `secret_key` is the app's SECRET_KEY, or a list of it and SECRET_KEY_FALLBACKS;
    `max_age` is PERMANENT_SESSION_LIFETIME (Flask checks it for every session cookie).
    `serializer` both decodes Flask's tagged payload (give a TaggedSerializer with your
    tags if the app registered its own) and checks the data; "tagged" by default.
    """

    source = "flask"

    def __init__(
        self,
        secret_key: Key | Sequence[Key],
        cookie_name: str = "session",
        max_age: float | timedelta | None = timedelta(days=31),
        *,
        path: str = "/",
        domain: str | None = None,
        salt: str = "cookie-session",
        serializer: str | Serializer = "tagged",
        max_data_bytes: int = MAX_DATA_BYTES,
    ) -> None:
        itsdangerous = itsdangerous_module()
        super().__init__(cookie_name, path, domain, serializer, max_data_bytes)
        decoder = self.serializer if isinstance(self.serializer, TaggedSerializer) else TaggedSerializer()
        # itsdangerous signs with the last key and verifies with all; Flask lists fallbacks first.
        keys = list(reversed(secret_list(secret_key, "FlaskCookie")))
        self._reader = itsdangerous.URLSafeTimedSerializer(
            keys,
            salt=salt,
            serializer=decoder,
            signer_kwargs={"key_derivation": "hmac", "digest_method": hashlib.sha1},
        )
        self._bad = itsdangerous.BadData
        self.max_age = seconds(max_age)

    async def read(self, cookie_header: bytes | None) -> Legacy | None:
        value = cookie_value(cookie_header, self.cookie_name)
        if value is None:
            return None
        try:
            data = self._reader.loads(value, max_age=self.max_age)
        except (self._bad, ValueError, TypeError, RecursionError):
            return None
        return self._legacy(data)
