"""The flash messages and the CSRF token of a `Session`: its base class, kept apart from the
state and intents in `session.py` (the same object; only the source is split)."""

from __future__ import annotations

from typing import Any

from . import flash as flashing
from .flash import Flash
from .masking import mask_token, new_secret
from .tracked import TrackedDict

CSRF_KEY = "_csrf"


class FlashingDict(TrackedDict):
    """`TrackedDict` plus `flash()`/`flashes()` and `csrf_token`; `Session` is the only subclass."""

    __slots__ = ()
    _host: object  # Session's slot: the runtime that performs its explicit I/O (claims here)

    def flash(self, message: Any, category: str = "info") -> None:
        """Queue a message for the next page that calls `flashes()`."""
        if not isinstance(category, str):
            raise TypeError(f"flash category must be a string, got {type(category).__name__}")
        self[flashing.new_flash_key()] = [category, message]

    def flashes(self, category: str | None = None) -> list[Flash]:
        """Return and clear queued messages (only `category`'s, if given), oldest first.

        Each message is shown once: with a store that claims (SQLite, Redis) across
        processes, the store deciding atomically (this call then waits for one store round
        trip; async code can `await take_flashes()` instead); otherwise once per process
        (`FLASH_CLAIMS`). Either way, never again after the taking request has committed.
        """
        self._accessed = True
        keys = flashing.to_take(self, category)
        stored = [key for key in keys if key in self._loaded_keys]
        return self._took(keys, stored, flashing.claim_now(self._host, self, stored))

    async def take_flashes(self, category: str | None = None) -> list[Flash]:
        """`flashes()` for async code: the store's claim is awaited, never blocking the loop."""
        self._accessed = True
        keys = flashing.to_take(self, category)
        stored = [key for key in keys if key in self._loaded_keys]
        return self._took(keys, stored, await flashing.claim(self._host, self, stored))

    def claim_stored(self, names: list[str]) -> tuple[flashing.Claim, list[str]]:
        """(the store's claim, the names it was asked for) for taking the keys `names` out
        of the stored record atomically (a message queue such as Flask's `_flashes`): only
        names loaded from the store are asked for; see `coatcheck.flash.Claim`."""
        stored = [name for name in names if name in self._loaded_keys]
        return flashing.claim_now(self._host, self, stored), stored

    def _took(self, keys: list[str], stored: list[str], claim: flashing.Claim) -> list[Flash]:
        delete, taken = flashing.take_claimed(self, keys, stored, claim)
        for key in delete:
            del self[key]
        return taken

    @property
    def csrf_token(self) -> str:
        """A freshly masked CSRF token (a new mask on every access; all of them validate).

        The synchronizer secret behind it is created on first use and rotated by
        login/regenerate; it never leaves the session unmasked.
        """
        secret = self.get(CSRF_KEY)
        if not isinstance(secret, str):
            secret = new_secret()
            self[CSRF_KEY] = secret
        return mask_token(secret)
