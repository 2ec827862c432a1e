"""connect-mongo's layout on a MongoStore's client (`SessionMiddleware(compat="express")`).

One document per session in the collection ``sessions`` (connect-mongo's default), as
connect-mongo writes it::

    {_id: <session id>, expires: <Date>, session: <express-session's JSON, as a string>}

``session`` is a sub-document instead when connect-mongo runs with ``stringify: false``;
both forms are read, a delta commit keeps the form it finds, and new sessions are written
in the form `stringify` chooses. ``expires`` is the deadline (connect-mongo's TTL index,
``{expires: 1}``, ``expireAfterSeconds: 0``, reaps the document; every read here also
filters on it, as connect-mongo's do). Other fields of the document (``lastModified`` with
connect-mongo's ``touchAfter``, ``createdAt``/``updatedAt`` with ``timestamps``) are left alone.

A delta commit reads the document and writes the merged ``session`` back only if it is
still the value that was read (compare-and-set in the update's filter), retrying on
conflict, so Node's fields and concurrent Python commits are never lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection
from typing import Any, TypeVar

from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import OperationFailure, PyMongoError

from ..errors import SessionStoreError
from ..express import ExpressFormat, loads, mongo_date, mongo_fields, mongo_session
from ..record import Meta, Record
from ._toolkit import guarded
from .mongo import DEFAULT_COLLECTION, MongoStore

T = TypeVar("T")
Document = dict[str, Any]

COLLECTION = "sessions"  # connect-mongo's collectionName default
_INDEX_EXISTS = (85, 86)  # IndexOptionsConflict, IndexKeySpecsConflict
MAX_ATTEMPTS = 50  # a commit loses a round only to another commit that won: enough for 50 at once


class ExpressMongoStore:
    """Sessions in connect-mongo's layout, using `mongo`'s client and database.

    Built by `coatcheck.stores.compat.adopt_store`, which `SessionMiddleware(compat="express")` calls.
    The collection is `collection`, else the MongoStore's if it was given one, else
    connect-mongo's "sessions". `stringify` (default True, like connect-mongo) picks the form
    of new documents. Implements Store and PatchingStore.
    """

    def __init__(self, mongo: MongoStore, *, collection: str | None = None, stringify: bool = True) -> None:
        if collection is None:
            collection = COLLECTION if mongo.collection_name == DEFAULT_COLLECTION else mongo.collection_name
        self.mongo = mongo
        self.collection_name = collection
        self.stringify = stringify
        self._collection: AsyncCollection[Document] = mongo.client[mongo.database_name][collection]
        self._clock = mongo.clock
        self._format: ExpressFormat | None = None
        self._ready = False
        self._ready_lock: asyncio.Lock | None = None

    def with_format(self, record_format: ExpressFormat) -> ExpressMongoStore:
        """Adopt the middleware's `ExpressFormat` (one middleware per store)."""
        self._format = record_format
        return self

    def __repr__(self) -> str:
        return (
            f"ExpressMongoStore(database={self.mongo.database_name!r}, collection={self.collection_name!r})"
        )

    @property
    def format(self) -> ExpressFormat:
        if self._format is None:
            raise RuntimeError(
                "this ExpressMongoStore has no format: pass it to SessionMiddleware(compat='express')"
            )
        return self._format

    # ---- plumbing -----------------------------------------------------------------------
    async def _run(self, what: str, work: Callable[[], Awaitable[T]], key: str) -> T:
        """Run `work` after ensuring the TTL index; failures become SessionStoreError whose
        message never quotes `key`, the session id itself in this layout (MongoDB's E11000
        duplicate key error quotes the `_id`)."""

        async def ensure_then_work() -> T:
            if not self._ready:
                await self._ensure_index()
            return await work()

        return await guarded(
            f"MongoDB ({self!r})", what, ensure_then_work, errors=(PyMongoError, OSError), key=key
        )

    async def _ensure_index(self) -> None:
        """connect-mongo's TTL index (`{expires: 1}`, default name), so either side may create it
        first; one that exists with other options (created by hand) is left as it is."""
        if self._ready_lock is None:
            self._ready_lock = asyncio.Lock()
        async with self._ready_lock:
            if not self._ready:
                try:
                    await self._collection.create_index([("expires", ASCENDING)], expireAfterSeconds=0)
                except OperationFailure as exc:
                    if exc.code not in _INDEX_EXISTS:
                        raise
                self._ready = True

    def _live(self, key: str) -> Document:
        now = mongo_date(self._clock())
        return {"_id": key, "$or": [{"expires": {"$exists": False}}, {"expires": {"$gt": now}}]}

    def _deadline_update(self, deadline: float | None, fields: Document) -> Document:
        update: Document = {"$set": fields}
        if deadline is None:
            update["$unset"] = {"expires": ""}
        return update

    # ---- Store --------------------------------------------------------------------------
    async def get(self, key: str) -> Record | None:
        doc = await self._run("loading a session", lambda: self._collection.find_one(self._live(key)), key)
        if doc is None or "session" not in doc:
            return None
        return mongo_session(doc["session"], self.format, now=self._clock(), expires=doc.get("expires"))

    async def set(self, key: str, record: Record) -> None:
        fmt = self.format
        deadline = fmt.deadline(record.meta)
        if deadline is not None and deadline <= self._clock():
            await self.destroy(key)
            return
        fields = mongo_fields(
            fmt.session_object(record.data, record.meta), deadline, stringify=self.stringify
        )
        update = self._deadline_update(deadline, fields)
        await self._run(
            "saving a session", lambda: self._collection.update_one({"_id": key}, update, upsert=True), key
        )

    async def patch(self, key: str, changed: dict[str, Any], removed: Collection[str], meta: Meta) -> bool:
        fmt = self.format
        for _ in range(MAX_ATTEMPTS):
            doc = await self._run("saving a session", lambda: self._collection.find_one(self._live(key)), key)
            if doc is None or "session" not in doc:
                return False  # destroyed or expired meanwhile: never resurrected
            deadline = fmt.deadline(meta)
            if deadline is not None and deadline <= self._clock():
                await self.destroy(key)
                return True
            seen = doc["session"]
            merged = fmt.merge(_as_object(seen), changed, removed, meta)
            update = self._deadline_update(
                deadline, mongo_fields(merged, deadline, stringify=isinstance(seen, str))
            )
            if await self._replace_if_unchanged(key, seen, update):
                return True
        raise SessionStoreError(
            f"MongoDB ({self!r}): a session changed under {MAX_ATTEMPTS} consecutive delta commits; giving up"
        )

    async def _replace_if_unchanged(self, key: str, seen: Any, update: Document) -> bool:
        """Apply `update` only if the document's session is still `seen` (compare-and-set)."""
        result = await self._run(
            "saving a session",
            lambda: self._collection.update_one({"_id": key, "session": seen}, update),
            key,
        )
        return result.matched_count == 1

    async def touch(self, key: str, meta: Meta) -> None:
        deadline = self.format.deadline(meta)
        if deadline is not None and deadline <= self._clock():
            await self.destroy(key)
            return
        update = self._deadline_update(
            deadline, {} if deadline is None else {"expires": mongo_date(deadline)}
        )
        if not update["$set"]:
            del update["$set"]
        await self._run(
            "touching a session", lambda: self._collection.update_one(self._live(key), update), key
        )

    async def destroy(self, key: str) -> None:
        await self._run("destroying a session", lambda: self._collection.delete_one({"_id": key}), key)

    async def close(self) -> None:
        await self.mongo.close()


def _as_object(stored: Any) -> dict[str, Any]:
    """The stored session as an object to merge into, keeping a sub-document's BSON values
    (Dates stay Dates) for every field the commit does not change."""
    if isinstance(stored, str):
        return loads(stored)
    if not isinstance(stored, dict):
        raise SessionStoreError("corrupt connect-mongo document: session is neither a string nor an object")
    return dict(stored)
