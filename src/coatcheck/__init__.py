"""coatcheck: server-side and client-side HTTP sessions for Python ASGI and WSGI apps."""

from __future__ import annotations

from .asgi import SessionMiddleware
from .config import Cookie
from .crypto import secret_from_env
from .csrf import CSRFMiddleware
from .errors import CoatcheckError, ConfigurationError, SessionStoreError, SessionTooLarge
from .events import AuditEvent
from .record import Meta, Record, SessionInfo
from .session import Flash, Session
from .tagged import Tag, TaggedSerializer

__version__ = "0.1.0"

__all__ = [
    "AuditEvent",
    "CSRFMiddleware",
    "CoatcheckError",
    "ConfigurationError",
    "Cookie",
    "Flash",
    "Meta",
    "Record",
    "Session",
    "SessionInfo",
    "SessionMiddleware",
    "SessionStoreError",
    "SessionTooLarge",
    "Tag",
    "TaggedSerializer",
    "__version__",
    "secret_from_env",
]
