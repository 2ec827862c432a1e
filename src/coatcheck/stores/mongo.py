"""MongoStore: sessions in MongoDB, through pymongo's native asyncio client (pymongo >= 4.9).

One document per session::

    {_id: <storage key>,
     data: {<escaped key>: <JSON text of the value>, ...},
     meta: {created, last_seen, idle_deadline, ...},     # as Meta.to_dict()
     user_id: <str or null>,                             # indexed: the user index
     expires_at: <date or null>,                         # TTL index: MongoDB reaps the document
     last_seen: <date>}

Each top-level value is kept as its JSON text (like connect-mongo's `stringify`), so any
JSON value round-trips exactly: nested keys with '.' or '$', NUL characters and 64-bit
unsigned integers need no BSON translation. Top-level keys become field names under
`data`, so '%', '.', '$' and NUL in them are percent-escaped (reversibly) and the empty key
is stored as '%'. A delta commit is one `update_one` with `$set`/`$unset` on
`data.<escaped key>`, filtered on the record being live, so it is atomic and never
resurrects a destroyed session. MongoDB's TTL monitor runs only once a minute, so every
read filters on the deadline itself.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Collection
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

try:
    from pymongo import ASCENDING, DESCENDING, AsyncMongoClient
    from pymongo.asynchronous.collection import AsyncCollection
    from pymongo.errors import ConfigurationError as MongoConfigurationError
    from pymongo.errors import InvalidURI, PyMongoError
except ModuleNotFoundError as exc:  # keep the missing module's name for from_url
    raise ModuleNotFoundError(
        f"MongoStore needs the {exc.name!r} package: pip install 'coatcheck[mongo]'", name=exc.name
    ) from exc

from ..audit import revoked
from ..codec import DEFAULT_SERIALIZER, Serializer
from ..errors import ConfigurationError, SessionStoreError
from ..record import Meta, Record, SessionInfo
from ._toolkit import SerializerChoice, guarded
from .url import register_scheme

__all__ = ["MongoStore", "escape_field", "unescape_field"]

T = TypeVar("T")
Document = dict[str, Any]

DEFAULT_DATABASE = "coatcheck"
DEFAULT_COLLECTION = "coatcheck_sessions"
_STORE_OPTIONS = ("collection", "timeout")
_NEEDS_ESCAPE = re.compile(r"[%.$\x00]")
_ESCAPED = re.compile(r"%(25|2E|24|00)")
_ESCAPES = {"%": "%25", ".": "%2E", "$": "%24", "\x00": "%00"}


def escape_field(name: str) -> str:
    """A session key as a MongoDB field name: '%', '.', '$' and NUL percent-escaped, the
    empty key as '%' (a lone '%' cannot come from escaping, since '%' itself is escaped)."""
    if not name:
        return "%"
    if not _NEEDS_ESCAPE.search(name):
        return name
    return _NEEDS_ESCAPE.sub(lambda m: _ESCAPES[m.group(0)], name)


def unescape_field(name: str) -> str:
    """Inverse of `escape_field`."""
    if name == "%":
        return ""
    if "%" not in name:
        return name
    return _ESCAPED.sub(lambda m: chr(int(m.group(1), 16)), name)


def _when(timestamp: float | None) -> datetime | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, UTC)


class MongoStore(SerializerChoice):
    """Sessions in a MongoDB collection; implements Store, PatchingStore, UserIndex and Inventory.

    `client` is a connection string (`mongodb://host/db`, `mongodb+srv://...`) or an existing
    `pymongo.AsyncMongoClient`, which the store uses but never closes. The database is
    `database`, else the one in the connection string, else "coatcheck"; the collection
    `collection`. Indexes (TTL on the deadline, user id) are created on first use or by
    `await store.create_indexes()`. With a connection string, `timeout` seconds bound every
    operation (pymongo's own `timeoutMS`, server selection and connecting, unless the string
    sets them); a given client keeps its own settings. Every failure raises SessionStoreError.
    """

    def __init__(
        self,
        client: str | AsyncMongoClient[Document],
        *,
        database: str | None = None,
        collection: str = DEFAULT_COLLECTION,
        timeout: float = 5.0,
        serializer: Serializer = DEFAULT_SERIALIZER,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not timeout > 0:
            raise ConfigurationError(
                f"MongoStore timeout must be a positive number of seconds, got {timeout!r}"
            )
        if not collection or "$" in collection or "\x00" in collection or collection.startswith("system."):
            raise ConfigurationError(
                f"MongoStore collection name {collection!r} is not allowed (e.g. 'coatcheck_sessions')"
            )
        if isinstance(client, str):
            self._client: AsyncMongoClient[Document] = _make_client(client, timeout)
            self._owns_client = True
        elif isinstance(client, AsyncMongoClient):
            self._client, self._owns_client = client, False
        else:
            raise ConfigurationError(
                "MongoStore needs a connection string ('mongodb://localhost/app') or a "
                f"pymongo.AsyncMongoClient, got {type(client).__name__}"
            )
        try:
            db = self._client.get_default_database(default=database or DEFAULT_DATABASE)
            if database is not None:
                db = self._client[database]
        except (MongoConfigurationError, InvalidURI) as exc:
            raise ConfigurationError(f"MongoStore cannot pick a database: {exc}") from None
        self._collection: AsyncCollection[Document] = db[collection]
        self.database_name, self.collection_name = db.name, collection
        self._timeout = float(timeout)
        self._serializer = serializer
        self._clock = clock
        self._ready = False
        self._ready_lock: asyncio.Lock | None = None

    def __repr__(self) -> str:
        return f"MongoStore(database={self.database_name!r}, collection={self.collection_name!r})"

    @property
    def client(self) -> AsyncMongoClient[Document]:
        """The pymongo client the store runs on."""
        return self._client

    @property
    def clock(self) -> Callable[[], float]:
        """The store's clock (Unix seconds), for layouts built on this store."""
        return self._clock

    # ---- plumbing -----------------------------------------------------------------------
    async def _run(self, what: str, work: Callable[[], Awaitable[T]], key: str | None = None) -> T:
        async def ensure_then_work() -> T:
            if not self._ready:
                await self._ensure_indexes()
            return await work()

        return await guarded(
            f"MongoDB store ({self!r})", what, ensure_then_work, errors=(PyMongoError, OSError), key=key
        )

    async def create_indexes(self) -> None:
        """Create the TTL index on `expires_at` and the `user_id` index (idempotent)."""
        await self._run("creating indexes", self._ensure_indexes)

    async def _ensure_indexes(self) -> None:
        if self._ready_lock is None:
            self._ready_lock = asyncio.Lock()
        async with self._ready_lock:
            if self._ready:
                return
            # documents whose expires_at is null (no deadline) are never reaped by the TTL index
            await self._collection.create_index(
                [("expires_at", ASCENDING)], expireAfterSeconds=0, name="coatcheck_expires_at"
            )
            await self._collection.create_index([("user_id", ASCENDING)], name="coatcheck_user_id")
            self._ready = True

    def _live(self, now: float) -> Document:
        return {"$or": [{"expires_at": None}, {"expires_at": {"$gt": _when(now)}}]}

    def _value(self, value: Any) -> str:
        return self._serializer.dumps(value).decode()

    def _meta_fields(self, meta: Meta) -> Document:
        return {
            "meta": meta.to_dict(),
            "user_id": meta.user_id,
            "expires_at": _when(meta.expires),
            "last_seen": _when(meta.last_seen),
        }

    def _decode(self, doc: Document) -> Record:
        loads = self._serializer.loads
        try:
            data = {unescape_field(k): loads(v.encode()) for k, v in (doc.get("data") or {}).items()}
            return Record(data=data, meta=Meta.from_dict(doc["meta"]))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise SessionStoreError(f"corrupt session document in {self!r}: {exc}") from None

    @staticmethod
    def _meta(doc: Document) -> Meta:
        try:
            return Meta.from_dict(doc["meta"])
        except (ValueError, TypeError, KeyError) as exc:
            raise SessionStoreError(f"corrupt session metadata: {exc}") from None

    # ---- Store --------------------------------------------------------------------------
    async def get(self, key: str) -> Record | None:
        now = self._clock()
        query = {"_id": key, **self._live(now)}
        doc = await self._run("loading a session", lambda: self._collection.find_one(query), key)
        if doc is None:
            return None
        record = self._decode(doc)
        # expires_at has millisecond precision; the exact deadline is in meta
        return None if record.meta.is_expired(now) else record

    async def set(self, key: str, record: Record) -> None:
        doc = {
            "_id": key,
            "data": {escape_field(k): self._value(v) for k, v in record.data.items()},
            **self._meta_fields(record.meta),
        }
        await self._run(
            "saving a session", lambda: self._collection.replace_one({"_id": key}, doc, upsert=True), key
        )

    async def patch(self, key: str, changed: dict[str, Any], removed: Collection[str], meta: Meta) -> bool:
        update: Document = {
            "$set": {
                **{f"data.{escape_field(k)}": self._value(v) for k, v in changed.items()},
                **self._meta_fields(meta),
            }
        }
        gone = {f"data.{escape_field(k)}": "" for k in removed if k not in changed}
        if gone:
            update["$unset"] = gone
        query = {"_id": key, **self._live(self._clock())}
        result = await self._run("saving a session", lambda: self._collection.update_one(query, update), key)
        return result.matched_count == 1

    async def touch(self, key: str, meta: Meta) -> None:
        query = {"_id": key, **self._live(self._clock())}
        update = {"$set": self._meta_fields(meta)}
        await self._run("touching a session", lambda: self._collection.update_one(query, update), key)

    async def destroy(self, key: str) -> None:
        await self._run("destroying a session", lambda: self._collection.delete_one({"_id": key}), key)

    # ---- user index ---------------------------------------------------------------------
    async def sessions_for(self, user_id: str) -> list[SessionInfo]:
        query = {"user_id": str(user_id), **self._live(self._clock())}
        docs = await self._run("listing a user's sessions", lambda: self._find(query, None))
        return [SessionInfo.from_meta(doc["_id"], self._meta(doc)) for doc in docs]

    async def destroy_user(self, user_id: str) -> int:
        result = await self._run(
            "destroying a user's sessions", lambda: self._collection.delete_many({"user_id": str(user_id)})
        )
        revoked(self, user_id, int(result.deleted_count))
        return int(result.deleted_count)

    # ---- inventory ----------------------------------------------------------------------
    async def count(self) -> int:
        query = self._live(self._clock())
        return int(await self._run("counting sessions", lambda: self._collection.count_documents(query)))

    async def purge_expired(self) -> int:
        """Delete expired documents now, without waiting for the TTL monitor."""
        query = {"expires_at": {"$ne": None, "$lte": _when(self._clock())}}
        result = await self._run("purging expired sessions", lambda: self._collection.delete_many(query))
        return int(result.deleted_count)

    async def list_sessions(self, *, limit: int | None = None) -> list[SessionInfo]:
        query = self._live(self._clock())
        docs = await self._run("listing sessions", lambda: self._find(query, limit))
        return [SessionInfo.from_meta(doc["_id"], self._meta(doc)) for doc in docs]

    async def _find(self, query: Document, limit: int | None) -> list[Document]:
        cursor = self._collection.find(query, {"meta": 1}).sort("last_seen", DESCENDING)
        if limit is not None:
            cursor = cursor.limit(limit)
        return await cursor.to_list(None)

    async def close(self) -> None:
        if self._owns_client:
            await self._client.close()


def _make_client(url: str, timeout: float) -> AsyncMongoClient[Document]:
    # pymongo's own deadlines are the store's timeout: they bound a call made outside the
    # middleware (a script, the CLI) as well, and leave the connection pool consistent
    ms = max(1, round(timeout * 1000))
    given = {k.lower() for k, _ in parse_qsl(urlsplit(url).query)}
    options: dict[str, Any] = {}
    # fail fast when the server is unreachable, unless the URL says otherwise
    for name in ("serverSelectionTimeoutMS", "connectTimeoutMS", "timeoutMS"):
        if name.lower() not in given:
            options[name] = ms
    try:
        return AsyncMongoClient(url, **options)
    except (MongoConfigurationError, InvalidURI, ValueError, TypeError) as exc:
        raise ConfigurationError(
            f"malformed MongoDB connection string: {exc} (expected e.g. 'mongodb://localhost:27017/app')"
        ) from None


@register_scheme("mongodb", "mongodb+srv")
def _from_url(url: str) -> MongoStore:
    """mongodb://host/db?collection=sessions&timeout=5 (other options go to pymongo)."""
    parts = urlsplit(url)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    options = {k: v for k, v in pairs if k in _STORE_OPTIONS}
    kwargs: dict[str, Any] = {}
    if "collection" in options:
        kwargs["collection"] = options["collection"]
    if "timeout" in options:
        try:
            kwargs["timeout"] = float(options["timeout"])
        except ValueError:
            raise ConfigurationError(
                f"MongoDB URL option timeout must be seconds (e.g. 5), got {options['timeout']!r}"
            ) from None
    rest = urlencode([(k, v) for k, v in pairs if k not in _STORE_OPTIONS])
    return MongoStore(urlunsplit(parts._replace(query=rest)), **kwargs)
