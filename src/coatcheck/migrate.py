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

import base64
import binascii
import hashlib
import inspect
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .codec import Serializer, serializer_for
from .cookies import MAX_COOKIE_BYTES, first_cookie
from .errors import ConfigurationError, SessionStoreError
from .tagged import TaggedSerializer

if TYPE_CHECKING:  # pragma: no cover
    import redis.asyncio as aredis

log = logging.getLogger("coatcheck.migrate")

MAX_DATA_BYTES = 64 * 1024
"""Default cap on legacy data, measured as the bytes our serializer writes for it."""

MAX_RECORD_BYTES = 256 * 1024
"""Largest legacy server-side record read at all; larger ones are skipped unread."""

Secret = str | bytes


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


def _itsdangerous() -> Any:
    try:
        import itsdangerous
    except ImportError as exc:  # pragma: no cover - itsdangerous is in the migrate extra
        raise ConfigurationError(
            "coatcheck.migrate needs itsdangerous: pip install 'coatcheck[migrate]'"
        ) from exc
    return itsdangerous


def _seconds(max_age: float | timedelta | None) -> int | None:
    if isinstance(max_age, timedelta):
        return int(max_age.total_seconds())
    return None if max_age is None else int(max_age)


def _secrets(secret_key: Secret | Sequence[Secret], what: str) -> list[Secret]:
    if isinstance(secret_key, str | bytes):
        keys: list[Any] = [secret_key]
    else:
        keys = list(secret_key) if isinstance(secret_key, list | tuple) else []
    if not keys or not all(isinstance(k, str | bytes) and k for k in keys):
        raise ConfigurationError(f"{what}: secret_key must be the old app's non-empty secret (or a list)")
    return keys


def _cookie_value(header: bytes | None, name: str) -> bytes | None:
    if not header:
        return None
    value = first_cookie(header, name.encode("latin-1"))
    if value is None or not value or len(value) > MAX_COOKIE_BYTES:
        return None
    return value


class _Reader:
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


class _CookieReader(_Reader):
    """Shared by the cookie-only readers: nothing to forget."""

    async def forget(self, legacy: Legacy) -> None:
        return None


class StarletteCookie(_CookieReader):
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
        itsdangerous = _itsdangerous()
        # Starlette signs with str(secret_key) (also for its Secret wrapper); a list is for keys
        # rotated before the switch.
        keys = [str(key) for key in _secrets(_unwrap_starlette_secret(secret_key), "StarletteCookie")]
        self._signer = itsdangerous.TimestampSigner(keys)
        self._bad = itsdangerous.BadData
        self.max_age = _seconds(max_age)
        super().__init__(cookie_name, path, domain, serializer, max_data_bytes)

    async def read(self, cookie_header: bytes | None) -> Legacy | None:
        value = _cookie_value(cookie_header, self.cookie_name)
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


class FlaskCookie(_CookieReader):
    """Reads Flask's own signed cookie session (`SecureCookieSessionInterface`).

    `secret_key` is the app's SECRET_KEY, or a list of it and SECRET_KEY_FALLBACKS;
    `max_age` is PERMANENT_SESSION_LIFETIME (Flask checks it for every session cookie).
    `serializer` both decodes Flask's tagged payload (give a TaggedSerializer with your
    tags if the app registered its own) and checks the data; "tagged" by default.
    """

    source = "flask"

    def __init__(
        self,
        secret_key: Secret | Sequence[Secret],
        cookie_name: str = "session",
        max_age: float | timedelta | None = timedelta(days=31),
        *,
        path: str = "/",
        domain: str | None = None,
        salt: str = "cookie-session",
        serializer: str | Serializer = "tagged",
        max_data_bytes: int = MAX_DATA_BYTES,
    ) -> None:
        itsdangerous = _itsdangerous()
        super().__init__(cookie_name, path, domain, serializer, max_data_bytes)
        decoder = self.serializer if isinstance(self.serializer, TaggedSerializer) else TaggedSerializer()
        # itsdangerous signs with the last key and verifies with all; Flask lists fallbacks first.
        keys = list(reversed(_secrets(secret_key, "FlaskCookie")))
        self._reader = itsdangerous.URLSafeTimedSerializer(
            keys,
            salt=salt,
            serializer=decoder,
            signer_kwargs={"key_derivation": "hmac", "digest_method": hashlib.sha1},
        )
        self._bad = itsdangerous.BadData
        self.max_age = _seconds(max_age)

    async def read(self, cookie_header: bytes | None) -> Legacy | None:
        value = _cookie_value(cookie_header, self.cookie_name)
        if value is None:
            return None
        try:
            data = self._reader.loads(value, max_age=self.max_age)
        except (self._bad, ValueError, TypeError, RecursionError):
            return None
        return self._legacy(data)


_SID = re.compile(rb"^[A-Za-z0-9_-]{1,256}$")


class FlaskSessionRedis(_Reader):
    """Reads Flask-Session's Redis sessions: the cookie holds the sid (signed with
    itsdangerous when SESSION_USE_SIGNER was on), the record is `key_prefix + sid`.

    Records written as msgpack (Flask-Session >= 0.6 default) or JSON are read; pickled
    ones (older Flask-Session) are skipped and logged, never loaded. `client` is a Redis
    URL, a `redis.asyncio.Redis`, or the app's sync `redis.Redis` (its connection settings
    are reused for an asyncio client). A Redis failure raises SessionStoreError.
    """

    source = "flask-session"

    def __init__(
        self,
        client: str | Any,
        key_prefix: str = "session:",
        *,
        cookie_name: str = "session",
        use_signer: bool = False,
        secret_key: Secret | Sequence[Secret] | None = None,
        path: str = "/",
        domain: str | None = None,
        serializer: str | Serializer = "tagged",
        max_data_bytes: int = MAX_DATA_BYTES,
        max_record_bytes: int = MAX_RECORD_BYTES,
    ) -> None:
        self._redis = _async_redis(client)
        from redis.exceptions import ResponseError

        self._wrong_type = ResponseError  # WRONGTYPE: someone else's key under the prefix
        self._msgpack = _msgpack()
        self._signer = None
        if use_signer:
            if secret_key is None:
                raise ConfigurationError("FlaskSessionRedis(use_signer=True) needs the app's secret_key")
            itsdangerous = _itsdangerous()
            keys = list(reversed(_secrets(secret_key, "FlaskSessionRedis")))
            self._signer = itsdangerous.Signer(keys, salt="flask-session", key_derivation="hmac")
            self._bad = itsdangerous.BadData
        self.key_prefix, self._record_limit = key_prefix, max_record_bytes
        super().__init__(cookie_name, path, domain, serializer, max_data_bytes)

    def _sid(self, value: bytes) -> str | None:
        if self._signer is not None:
            try:
                value = self._signer.unsign(value)
            except self._bad:
                return None
        return value.decode("ascii") if _SID.match(value) else None

    async def read(self, cookie_header: bytes | None) -> Legacy | None:
        value = _cookie_value(cookie_header, self.cookie_name)
        sid = None if value is None else self._sid(value)
        if sid is None:
            return None
        key = self.key_prefix + sid
        try:
            # One byte past the limit tells "too large" without fetching a huge value.
            blob = await self._redis.getrange(key, 0, self._record_limit)
        except self._wrong_type:
            log.warning("legacy %s record skipped: the key does not hold a string", self.source)
            return None
        except Exception as exc:  # redis-py raises many types; all mean "store unavailable"
            raise SessionStoreError(f"legacy Flask-Session Redis unavailable: {type(exc).__name__}") from None
        if not isinstance(blob, bytes) or not blob:
            return None
        if len(blob) > self._record_limit:
            log.warning("legacy %s record skipped: over %d bytes", self.source, self._record_limit)
            return None
        data = self._decode(blob)
        return None if data is None else self._legacy(data, record_key=key)

    def _decode(self, blob: bytes) -> Any:
        if _looks_pickled(blob):
            log.warning(
                "legacy %s record skipped: it is pickled, and coatcheck never loads pickle", self.source
            )
            return None
        try:
            return self._msgpack.unpackb(blob, raw=False, strict_map_key=True, timestamp=3)
        except Exception:  # noqa: S110 - msgpack raises many types for non-msgpack input; JSON is next
            pass
        try:
            return json.loads(blob)
        except (ValueError, RecursionError):
            log.warning("legacy %s record skipped: neither msgpack nor JSON", self.source)
            return None

    async def forget(self, legacy: Legacy) -> None:
        if legacy.record_key is None:
            return
        try:
            await self._redis.delete(legacy.record_key)
        except Exception as exc:
            raise SessionStoreError(f"legacy Flask-Session Redis unavailable: {type(exc).__name__}") from None

    async def aclose(self) -> None:
        """Close the Redis connections this reader opened."""
        await self._redis.aclose()


def _looks_pickled(blob: bytes) -> bool:
    # Pickle protocols 2-5 open with PROTO (0x80) and a version byte and end with STOP ('.');
    # 0x80 alone would be an empty msgpack map.
    return len(blob) > 2 and blob[0] == 0x80 and 2 <= blob[1] <= 5 and blob.endswith(b".")


def _msgpack() -> Any:
    try:
        import msgpack
    except ImportError as exc:
        raise ConfigurationError(
            "FlaskSessionRedis needs msgpack to read Flask-Session records: pip install 'coatcheck[migrate]'"
        ) from exc
    return msgpack


def _async_redis(client: str | Any) -> aredis.Redis:
    try:
        import redis
        import redis.asyncio as aredis
    except ImportError as exc:
        raise ConfigurationError("FlaskSessionRedis needs redis-py: pip install 'coatcheck[redis]'") from exc
    if isinstance(client, str):
        return aredis.Redis.from_url(client)
    if isinstance(client, aredis.Redis):
        return client
    if isinstance(client, redis.Redis):
        # The app's own sync client (SESSION_REDIS): same server and options, asyncio transport.
        accepted = inspect.signature(aredis.Redis.__init__).parameters
        kwargs = {
            key: value
            for key, value in client.connection_pool.connection_kwargs.items()
            if key in accepted and key not in ("retry", "connection_pool")
        }
        ssl = issubclass(client.connection_pool.connection_class, redis.SSLConnection)
        try:
            return aredis.Redis(**kwargs, ssl=ssl) if ssl else aredis.Redis(**kwargs)
        except TypeError as exc:
            raise ConfigurationError(
                f"FlaskSessionRedis could not reuse this redis.Redis client's settings ({exc}): pass a URL"
            ) from exc
    raise ConfigurationError(
        f"FlaskSessionRedis(client={type(client).__name__}): pass a redis:// URL, a redis.asyncio.Redis "
        "or a redis.Redis"
    )
