"""Reader of Flask-Session's Redis sessions (msgpack or JSON records; pickle never loaded)."""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..codec import Serializer
from ..errors import ConfigurationError, SessionStoreError
from ._base import (
    MAX_DATA_BYTES,
    MAX_RECORD_BYTES,
    Key,
    Legacy,
    Reader,
    cookie_value,
    itsdangerous_module,
    log,
    secret_list,
)

if TYPE_CHECKING:  # pragma: no cover
    import redis.asyncio as aredis

_SID = re.compile(rb"^[A-Za-z0-9_-]{1,256}\Z")


class FlaskSessionRedis(Reader):
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
        secret_key: Key | Sequence[Key] | None = None,
        path: str = "/",
        domain: str | None = None,
        serializer: str | Serializer = "tagged",
        max_data_bytes: int = MAX_DATA_BYTES,
        max_record_bytes: int = MAX_RECORD_BYTES,
    ) -> None:
        self._redis = async_redis_client(client)
        from redis.exceptions import ResponseError

        self._wrong_type = ResponseError  # WRONGTYPE: someone else's key under the prefix
        self._msgpack = _msgpack()
        self._signer = None
        if use_signer:
            if secret_key is None:
                raise ConfigurationError("FlaskSessionRedis(use_signer=True) needs the app's secret_key")
            itsdangerous = itsdangerous_module()
            keys = list(reversed(secret_list(secret_key, "FlaskSessionRedis")))
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
        value = cookie_value(cookie_header, self.cookie_name)
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


def async_redis_client(client: str | Any) -> aredis.Redis:
    """An asyncio Redis client for a URL, an asyncio client (as is) or a sync `redis.Redis`
    (same server and options). Raises ConfigurationError."""
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
