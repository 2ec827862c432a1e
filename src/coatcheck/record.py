"""What a store keeps for one session: the data and the metadata the engine needs."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


@dataclass(slots=True)
class Meta:
    """Session metadata. Times are Unix seconds; a deadline of None means "no limit".

    `cookie` holds per-session cookie overrides (only `max_age` today), `hints` the
    optional client hints (user agent, IP) for the operations view.
    """

    created: float
    last_seen: float
    idle_deadline: float | None = None
    absolute_deadline: float | None = None
    user_id: str | None = None
    cookie: dict[str, Any] = field(default_factory=dict)
    hints: dict[str, str] = field(default_factory=dict)

    @property
    def expires(self) -> float | None:
        """The earlier of the two deadlines: when the record dies."""
        idle, absolute = self.idle_deadline, self.absolute_deadline
        if idle is None or (absolute is not None and absolute < idle):
            return absolute
        return idle

    def is_expired(self, now: float) -> bool:
        expires = self.expires
        return expires is not None and now >= expires

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"created": self.created, "last_seen": self.last_seen}
        if self.idle_deadline is not None:
            out["idle_deadline"] = self.idle_deadline
        if self.absolute_deadline is not None:
            out["absolute_deadline"] = self.absolute_deadline
        if self.user_id is not None:
            out["user_id"] = self.user_id
        if self.cookie:
            out["cookie"] = self.cookie
        if self.hints:
            out["hints"] = self.hints
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Meta:
        created, last_seen = float(raw["created"]), float(raw["last_seen"])
        idle, absolute, user = raw.get("idle_deadline"), raw.get("absolute_deadline"), raw.get("user_id")
        cookie, hints = raw.get("cookie"), raw.get("hints")
        return cls(  # positional, no helper calls: every load of every store decodes one
            created,
            last_seen,
            None if idle is None else float(idle),
            None if absolute is None else float(absolute),
            None if user is None else str(user),
            dict(cookie) if cookie else {},
            {str(k): str(v) for k, v in hints.items()} if hints else {},
        )


@dataclass(slots=True)
class Record:
    """One session as stored: JSON-able `data` and its `meta`."""

    data: dict[str, Any]
    meta: Meta

    @property
    def expires(self) -> float | None:
        return self.meta.expires


ID_HINT_CHARS = 12
"""How many leading characters of a storage key the operations view shows as the id hint."""


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """What the operations view may show about a session: never its id, only a hint.

    `storage_key` is the store's key for the record (a hash of the id, not a credential;
    kept out of the repr) so an operator's tool can act on a session it listed (revoke it).
    """

    id_hint: str
    user_id: str | None
    created: datetime
    last_seen: datetime
    expires: datetime | None
    hints: dict[str, str] = field(default_factory=dict)
    storage_key: str = field(default="", repr=False)

    @classmethod
    def from_meta(cls, key: str, meta: Meta) -> SessionInfo:
        expires = meta.expires
        return cls(
            id_hint=key[:ID_HINT_CHARS],
            user_id=meta.user_id,
            created=_dt(meta.created),
            last_seen=_dt(meta.last_seen),
            expires=None if expires is None else _dt(expires),
            hints=dict(meta.hints),
            storage_key=key,
        )


def _dt(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)
