"""The demo app (`coatcheck demo`): log in, fill a cart, and watch the cookie and the store.

Needs the `demo` extra: `pip install 'coatcheck[demo]'`.
"""

from __future__ import annotations

from .app import COOKIE_NAME, DemoApp, create_app

__all__ = ["COOKIE_NAME", "DemoApp", "create_app"]
