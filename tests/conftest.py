from __future__ import annotations

import secrets
from urllib.parse import urlsplit

import pytest

from tests.services import MYSQL_URL, POSTGRES_URL, REDIS_URL, port_open, unavailable


@pytest.fixture
def secret() -> str:
    """A fresh strong secret for each test."""
    return secrets.token_urlsafe(32)


@pytest.fixture
def redis_url() -> str:
    """The shared Redis (COATCHECK_REDIS_URL, default 127.0.0.1:6379)."""
    parts = urlsplit(REDIS_URL)
    if not port_open(parts.hostname or "127.0.0.1", parts.port or 6379):
        unavailable("Redis", f"nothing listens at {parts.hostname}:{parts.port or 6379}")
    return REDIS_URL


@pytest.fixture
def postgres_url() -> str:
    parts = urlsplit(POSTGRES_URL)
    if not port_open(parts.hostname or "127.0.0.1", parts.port or 5432):
        unavailable("PostgreSQL", f"nothing listens at {parts.hostname}:{parts.port or 5432}")
    return POSTGRES_URL


@pytest.fixture
def mysql_url() -> str:
    """The shared MySQL/MariaDB (COATCHECK_MYSQL_URL, default root@127.0.0.1:3306/test)."""
    parts = urlsplit(MYSQL_URL)
    if not port_open(parts.hostname or "127.0.0.1", parts.port or 3306):
        unavailable("MySQL/MariaDB", f"nothing listens at {parts.hostname}:{parts.port or 3306}")
    return MYSQL_URL
