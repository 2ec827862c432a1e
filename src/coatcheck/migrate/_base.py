"""What the legacy readers share: the result type, the reader protocol, the data check."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol, runtime_checkable

from ..codec import Serializer, serializer_for
from ..cookies import MAX_COOKIE_BYTES, first_cookie, is_valid_name, render_set_cookie
from ..errors import ConfigurationError

log = logging.getLogger("coatcheck.migrate")

MAX_DATA_BYTES = 64 * 1024
"""Default cap on legacy data, measured as the bytes our serializer writes for it."""

MAX_RECORD_BYTES = 256 * 1024
"""Largest legacy server-side record read at all; larger ones are skipped unread."""

Key = str | bytes


@dataclass(frozen=True, slots=True)
class Legacy:
    """A verified legacy session: its data and how to expire the cookie that carried it.

    `record_key` is the legacy store's key, for `forget`; it is secret and kept out of repr.
    """

    data: dict[str, Any]
    source: str
    cookie_name: str
    cookie_path: str = "/"
    cookie_domain: str | None = None
    record_key: str | None = field(default=None, repr=False)


@runtime_checkable
class LegacyReader(Protocol):
    """What `migrate_from=[...]` accepts."""

    cookie_name: str

    async def read(self, cookie_header: bytes | None) -> Legacy | None:
        """The legacy session in this Cookie header, or None. Never raises on bad input;
        a legacy store that cannot answer raises SessionStoreError."""
        ...

    async def forget(self, legacy: Legacy) -> None:
        """Delete the legacy record `read` returned (nothing for cookie-only sessions)."""
        ...

    def bind(self, serializer: Serializer) -> None:
        """Check legacy data with this serializer from now on (the middleware's own)."""
        ...


async def read_first(
    readers: Sequence[LegacyReader], cookie_header: bytes | None
) -> tuple[LegacyReader, Legacy] | None:
    """Ask each reader in order; the first legacy session found, with its reader, or None.

    Readers never raise on bad input; SessionStoreError from a legacy store propagates.
    """
    if not cookie_header:
        return None
    for reader in readers:
        legacy = await reader.read(cookie_header)
        if legacy is not None:
            return reader, legacy
    return None


def expire_legacy_cookie(legacy: Legacy, *, now: float, secure: bool = False) -> bytes:
    """A Set-Cookie value that deletes the legacy cookie (same name, path and domain).

    Do not send it when the new coatcheck cookie has the same name, path and domain: the
    new cookie already replaces the legacy one.
    """
    return render_set_cookie(
        legacy.cookie_name,
        "",
        max_age=0,
        path=legacy.cookie_path,
        domain=legacy.cookie_domain,
        secure=secure,
        http_only=True,
        same_site=None,
        now=now,
    )


def itsdangerous_module() -> Any:
    try:
        import itsdangerous
    except ImportError as exc:  # pragma: no cover - itsdangerous is in the migrate extra
        raise ConfigurationError(
            "coatcheck.migrate needs itsdangerous: pip install 'coatcheck[migrate]'"
        ) from exc
    return itsdangerous


def seconds(max_age: float | timedelta | None) -> int | None:
    if isinstance(max_age, timedelta):
        return int(max_age.total_seconds())
    return None if max_age is None else int(max_age)


def secret_list(secret_key: Key | Sequence[Key], what: str) -> list[Key]:
    if isinstance(secret_key, str | bytes):
        keys: list[Any] = [secret_key]
    else:
        keys = list(secret_key) if isinstance(secret_key, list | tuple) else []
    if not keys or not all(isinstance(k, str | bytes) and k for k in keys):
        raise ConfigurationError(f"{what}: secret_key must be the old app's non-empty secret (or a list)")
    return keys


def cookie_value(header: bytes | None, name: str) -> bytes | None:
    if not header:
        return None
    value = first_cookie(header, name.encode("latin-1"))
    if value is None or not value or len(value) > MAX_COOKIE_BYTES:
        return None
    return value


class Reader:
    """What every reader shares: the cookie's place, the data check, `bind`."""

    source = "legacy"

    def __init__(
        self,
        cookie_name: str,
        path: str,
        domain: str | None,
        serializer: str | Serializer,
        max_data_bytes: int,
    ) -> None:
        if not is_valid_name(cookie_name):
            raise ConfigurationError(
                f"{type(self).__name__}: cookie_name {cookie_name!r} is not a cookie name"
            )
        if max_data_bytes < 1:
            raise ConfigurationError(f"{type(self).__name__}: max_data_bytes must be positive")
        self.cookie_name, self.path, self.domain = cookie_name, path, domain
        self.serializer, self.max_data_bytes = serializer_for(serializer), max_data_bytes

    def bind(self, serializer: Serializer) -> None:
        """Check legacy data with the middleware's own serializer (called at start-up)."""
        self.serializer = serializer

    def _legacy(self, data: Any, record_key: str | None = None) -> Legacy | None:
        """A Legacy if `data` is a str-keyed dict our serializer writes within the limit."""
        if not isinstance(data, dict) or not all(isinstance(key, str) for key in data):
            log.warning("legacy %s session skipped: its data is not a mapping with string keys", self.source)
            return None
        try:
            size = len(self.serializer.dumps(data))
        except (TypeError, ValueError) as exc:
            log.warning(
                "legacy %s session skipped: its data cannot be serialized (%s)",
                self.source,
                type(exc).__name__,
            )
            return None
        if size > self.max_data_bytes:
            log.warning(
                "legacy %s session skipped: %d bytes of data, over the %d-byte limit",
                self.source,
                size,
                self.max_data_bytes,
            )
            return None
        return Legacy(data, self.source, self.cookie_name, self.path, self.domain, record_key)


class CookieReader(Reader):
    """Shared by the cookie-only readers: nothing to forget."""

    async def forget(self, legacy: Legacy) -> None:
        return None
