"""The middleware constructors' keyword-only options, written once for every adapter.

Each parameter is a field of `coatcheck.config.Settings`, with the same default
(tests/test_options.py checks names and defaults). Adding an option: a field in `Settings`
and a parameter here (plus the Flask extension's signature, which defaults to its config).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from .config import Compat, Cookie, Duration, Secret, Settings, Unset

if TYPE_CHECKING:
    from .codec import Serializer
    from .events import OnEvent
    from .migrate import LegacyReader
    from .stores.base import ClientSideStore, Store


class SessionOptions:
    """Base of the session middlewares: validates the options into `self.settings`, then
    lets the adapter build its runtime (`_start`)."""

    settings: Settings

    def __init__(
        self,
        app: Any,
        *,
        secret: Secret,
        store: Store | ClientSideStore | str | None = None,
        name: str | None = None,
        cookie: Cookie = Cookie(),
        resave: bool = False,
        save_uninitialized: bool = False,
        rolling: bool = False,
        unset: Unset = "keep",
        trust_proxy: bool = False,
        idle_timeout: Duration | None = timedelta(days=1),
        absolute_timeout: Duration | None = timedelta(days=30),
        touch_after: Duration = timedelta(seconds=60),
        client_hints: bool = False,
        store_timeout: Duration | None = timedelta(seconds=5),
        insecure_dev_secret: bool = False,
        serializer: Serializer | str = "json",
        clock: Callable[[], float] = time.time,
        compat: Compat | None = None,
        on_event: OnEvent | None = None,
        migrate_from: Sequence[LegacyReader] = (),
    ) -> None:
        options = dict(locals())  # exactly the parameters above, by name
        del options["self"], options["app"]
        self.app = app
        self.settings = Settings(**options)
        self._start(self.settings)

    def _start(self, settings: Settings) -> None:
        raise NotImplementedError
